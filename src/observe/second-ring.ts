// Per-second counters in a ring of slots in shared memory, for rates over the last seconds. Each slot is stamped with
// the second it holds; whichever recorder thread first reaches a new second resets the slot, exactly once.

/** Stamps are seconds since this one (2023-11-14), so an Int32 stamp lasts until 2091. */
const SECOND_BASE = 1_700_000_000;
const LAST_SECOND = SECOND_BASE + 0x7fffffff;
/**
 * The stamp of a slot being reset. Stamps of seconds are positive; an unused slot's is 0, SECOND_BASE itself, a second
 * too old to be read or written again, so new memory needs no filling.
 */
const RESETTING = -1;
/** How long a thread waits for another to finish resetting a slot (a fill of a few thousand Int32s, about a microsecond). */
const SPIN_LIMIT = 4096;

/**
 * Why counts survive several recorders: a slot moves to a later second only through one compare-exchange of its stamp,
 * from the earlier second to RESETTING, so exactly one thread zeroes it; the others see RESETTING and wait until the
 * winner stores the new stamp, which it does after the zeroing, so a count added after seeing the new stamp is never
 * wiped. What is not exact, and is left so on purpose:
 * - The fast path reads the stamp with a plain load (an Int32 never tears). On a weakly ordered CPU a count that
 *   races the reset may still land before the zeroing and be lost: at most one per racing thread at a second boundary.
 * - A thread that read the old stamp, then stalled past the reset, adds its count of the old second to the new one.
 *   This takes a stall of a whole ring, about ten seconds.
 * - A count is left out (the caller keeps its totals) when its slot already holds a later second, or when the thread
 *   resetting it is descheduled for longer than the spin: on two busy cores, about one new second in 20 000 meets
 *   such a stall. Waiting longer would block the waiting thread's event loop for a rate that moves by one. Counts left
 *   out are counted in `leftOut`, so the loss is measured rather than guessed.
 */
export class SecondRing {
  readonly slots: number;
  /** Int32 counters per slot. */
  readonly perSlot: number;
  readonly stamps: Int32Array<SharedArrayBuffer>;
  /** Slot after slot, `perSlot` counters each. */
  readonly counts: Int32Array<SharedArrayBuffer>;
  readonly #leftOut: Int32Array<SharedArrayBuffer>;

  /** Views over a ring `allocate` made, on any thread. */
  constructor(buffer: SharedArrayBuffer, slots: number, perSlot: number) {
    this.slots = slots;
    this.perSlot = perSlot;
    this.#leftOut = new Int32Array(buffer, 0, 1);
    this.stamps = new Int32Array(buffer, Int32Array.BYTES_PER_ELEMENT, slots);
    this.counts = new Int32Array(buffer, (1 + slots) * Int32Array.BYTES_PER_ELEMENT);
    if (this.counts.length !== slots * perSlot) throw new RangeError(`the ring buffer is not sized for ${slots} slots of ${perSlot} counters`);
  }

  static allocate(slots: number, perSlot: number): SharedArrayBuffer {
    return new SharedArrayBuffer((1 + slots + slots * perSlot) * Int32Array.BYTES_PER_ELEMENT);
  }

  /** Claims that returned -1 for a second the stamps can hold, from every thread. */
  get leftOut(): number {
    return Atomics.load(this.#leftOut, 0);
  }

  /**
   * Where the counters of `second` (epoch seconds) start in `counts`, after resetting its slot if it held an earlier
   * second; -1 when the count is to be left out (see above). Add to them with Atomics.
   */
  claim(second: number): number {
    if (!(second > SECOND_BASE && second <= LAST_SECOND)) return -1;
    const slot = second % this.slots;
    const stamp = second - SECOND_BASE;
    const seen = this.stamps[slot];
    return seen === stamp ? slot * this.perSlot : this.#advance(slot, stamp, seen);
  }

  #advance(slot: number, stamp: number, seen: number): number {
    const stamps = this.stamps;
    for (let spins = 0; seen !== stamp; ) {
      if (seen === RESETTING) {
        if (++spins > SPIN_LIMIT) return this.#leaveOut();
        seen = Atomics.load(stamps, slot);
      } else if (seen > stamp) {
        return this.#leaveOut();
      } else {
        const before = Atomics.compareExchange(stamps, slot, seen, RESETTING);
        if (before === seen) {
          const start = slot * this.perSlot;
          this.counts.fill(0, start, start + this.perSlot);
          Atomics.store(stamps, slot, stamp);
          return start;
        }
        seen = before;
      }
    }
    return slot * this.perSlot;
  }

  #leaveOut(): number {
    Atomics.add(this.#leftOut, 0, 1);
    return -1;
  }

  /** A copy of the counters of `second`, or null when the ring does not hold it, or it was being reset while copied. */
  read(second: number): Int32Array | null {
    if (!(second > SECOND_BASE && second <= LAST_SECOND)) return null;
    const slot = second % this.slots;
    const stamp = second - SECOND_BASE;
    if (Atomics.load(this.stamps, slot) !== stamp) return null;
    const copy = this.counts.slice(slot * this.perSlot, (slot + 1) * this.perSlot);
    // A slot moves to another second only through RESETTING, so an unchanged stamp means the copy is of this second.
    return Atomics.load(this.stamps, slot) === stamp ? copy : null;
  }
}
