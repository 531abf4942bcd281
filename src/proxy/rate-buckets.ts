// The per-client rate limits' token buckets, in one SharedArrayBuffer of fixed size: every data-plane thread takes
// from the same buckets, so a burst spread over several workers is limited once for the process.

/**
 * Buckets are kept as GCRA "theoretical arrival times", the single-number form of a token bucket: a bucket of `burst`
 * tokens refilled at `rate` per second is empty as far ahead of now as its TAT lies, at T = 1000 / rate ms a token. A
 * request moves TAT to max(TAT, now) + T and passes while that stays within burst × T of now; a refused one leaves it.
 *
 * Layout, in bytes: a header of one cache line (its first Int32 counts the client groups held), then `capacity` slots
 * of `slotBytes` each:
 *   Int32 LOCK     0 for a slot never written; else even while free, odd while one thread works on it.
 *   Int32 HASH_A, HASH_B   the client group's 64-bit key hash (the key itself is not kept; see rate-limit.ts).
 *   Float64 SEEN   the group's last request, ms since the table's epoch: room for a new group is taken from the least
 *                  recently seen in its probe window.
 *   Float64 TAT[i] rule i's bucket, ms since the epoch; -Infinity for a full bucket never used.
 *
 * Why a lock word and not a compare-exchange of the bucket itself: a bucket needs a time with sub-millisecond steps
 * and a range of hours either side of now (a slow rule's debt runs far ahead; an idle group's TAT falls far behind),
 * which does not fit the 32 bits Atomics swaps without BigInts (which allocate on every read); and a request that
 * matches several rules must take a token from each of them or from none, which one swap per bucket cannot promise.
 * So one compare-exchange takes a slot (all its buckets), plain float arithmetic runs, and one store releases it,
 * moving the word on by two so a writer that scanned the slot earlier sees it changed. Between the two nothing is
 * called and nothing can throw. A thread that finds a slot held spins briefly, then sleeps in steps of 50 µs
 * (Atomics.wait, no notify needed), which hands the core back to a holder the OS preempted; only two threads asking
 * for one client group at the same instant ever wait. Past 50 ms the request passes unchecked rather than stall its
 * event loop further: a holder would have to be stopped mid-update for that long.
 */
const LOCK = 0;
const HASH_A = 1;
const HASH_B = 2;
/** Float64 index within a slot: Int32 words 0-3 are LOCK, HASH_A, HASH_B and padding. */
const SEEN = 2;
const TAT = 3;
const HEADER_BYTES = 64;
const COUNT = 0;

/** Slots looked at from a group's home slot: a group is in one of them, or not in the table. */
export const PROBE_WINDOW = 16;
/** Reads of a busy slot's lock word before sleeping on it: a holder that is running is done within them. */
const SPINS = 200;
/** Then sleeps of this long, each giving the core back to a holder the OS preempted (two workers may share one). */
const SLEEP_MS = 0.05;
/** A slot held this long has a holder stopped mid-update: the request then passes unchecked. */
const MAX_WAIT_MS = 50;
/** Scans of a window before a new group that keeps losing races for a slot passes unchecked. */
const ATTEMPTS = 64;

/** The table's memory, plain and structured-clone-able: what a worker receives inside the snapshot to attach. */
export interface RateBucketsDescriptor {
  readonly buffer: SharedArrayBuffer;
  /** Slots, a power of two. */
  readonly capacity: number;
  /** Buckets per slot: one per rule. */
  readonly rules: number;
  /** What the table was sized for: `capacity` is the next power of two at least twice as large. */
  readonly maxClients: number;
  /** Times count from here, on the clock the callers pass as `now` (milliseconds). */
  readonly epochMs: number;
}

/** The value of `take` when every bucket had a token (or the table could not be checked). */
export const PASSED = -1;

function tableCapacity(maxClients: number, rules: number): number {
  return rules === 0 ? 1 : 2 ** Math.ceil(Math.log2(2 * maxClients));
}

/** The bytes a table for `maxClients` groups and `rules` rules takes: checked at config load, before it is allocated. */
export function rateTableBytes(maxClients: number, rules: number): number {
  return HEADER_BYTES + tableCapacity(maxClients, rules) * slotBytes(rules);
}

export class RateBuckets {
  readonly descriptor: RateBucketsDescriptor;
  /** After `take` refused: ms until the refusing bucket holds a token again. */
  waitMs = 0;
  readonly #words: Int32Array<SharedArrayBuffer>;
  readonly #floats: Float64Array<SharedArrayBuffer>;
  readonly #mask: number;
  readonly #window: number;
  /** Slot size in Float64s (and twice that in Int32s). */
  readonly #stride: number;
  readonly #rules: number;
  readonly #epochMs: number;
  /** A request's new TATs, held until every bucket it matches has agreed. */
  readonly #pending: Float64Array;

  /**
   * Room for `maxClients` groups at half load (the next power of two at least twice as many slots), each with a bucket
   * for each of `rules` rules: the probe windows of a half-full table rarely fill, so a group is replaced only once
   * the table holds well over `maxClients`. Without rules the table is a single slot: nothing will take from it.
   */
  static create(maxClients: number, rules: number, now: number): RateBuckets {
    if (!Number.isInteger(maxClients) || maxClients < 1) throw new RangeError(`maxClients must be a positive integer, not ${maxClients}`);
    if (!Number.isInteger(rules) || rules < 0 || rules > 32) throw new RangeError(`a bucket table holds 0 to 32 rules, not ${rules}`);
    const capacity = tableCapacity(maxClients, rules);
    const buffer = new SharedArrayBuffer(HEADER_BYTES + capacity * slotBytes(rules));
    return new RateBuckets({ buffer, capacity, rules, maxClients, epochMs: Math.floor(now) });
  }

  /** This thread's view of a table another thread created. */
  static attach(descriptor: RateBucketsDescriptor): RateBuckets {
    return new RateBuckets(descriptor);
  }

  private constructor(descriptor: RateBucketsDescriptor) {
    const { buffer, capacity, rules, maxClients, epochMs } = descriptor;
    if (!Number.isInteger(Math.log2(capacity)) || buffer.byteLength !== HEADER_BYTES + capacity * slotBytes(rules)) {
      throw new RangeError(`a bucket table buffer of ${buffer.byteLength} bytes does not hold ${capacity} slots of ${rules} rules`);
    }
    this.descriptor = { buffer, capacity, rules, maxClients, epochMs };
    this.#words = new Int32Array(buffer);
    this.#floats = new Float64Array(buffer);
    this.#mask = capacity - 1;
    this.#window = Math.min(PROBE_WINDOW, capacity);
    this.#stride = slotBytes(rules) / Float64Array.BYTES_PER_ELEMENT;
    this.#rules = rules;
    this.#epochMs = epochMs;
    this.#pending = new Float64Array(Math.max(1, rules));
  }

  /** The memory the table holds, fixed when it was created. */
  get bytes(): number {
    return this.descriptor.buffer.byteLength;
  }

  get rules(): number {
    return this.#rules;
  }

  /** Client groups held: at least `maxClients` fit, and at most `capacity`; past that, new groups replace old ones. */
  get size(): number {
    return Atomics.load(this.#words, COUNT);
  }

  /**
   * One request of the group whose key hashes to (`a`, `b`), against the buckets of the rules in `mask` (bit i: rule
   * i, with `interval[i]` = T and `limit[i]` = burst × T, in ms). When every one of them has a token, one is taken from
   * each and PASSED returned; else nothing is taken, the lowest refusing rule is returned and `waitMs` set.
   *
   * A group not held takes the first slot of its window never written, or when there is none, the slot of the window's
   * least recently seen group, whose buckets start full again for the newcomer. Two threads adding one new group at
   * once race for one slot and the loser scans again; only if a third write changes the window between their scans can
   * the group land twice, when it has twice its burst for a moment.
   */
  take(a: number, b: number, mask: number, interval: Float64Array, limit: Float64Array, now: number): number {
    const words = this.#words;
    const floats = this.#floats;
    const since = now - this.#epochMs;
    scan: for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      let empty = -1;
      let victim = -1;
      let victimState = 0;
      let victimSeen = Infinity;
      for (let probe = 0, slot = a & this.#mask; probe < this.#window; probe++, slot = (slot + 1) & this.#mask) {
        const f = slot * this.#stride + HEADER_BYTES / 8;
        const at = 2 * f;
        // A slot being written may be taking this very group: it is read only once whole, or a second copy could be
        // made past it.
        const state = this.#settled(at);
        if (state === -1) return PASSED;
        if (state === 0) {
          empty = slot;
          break;
        }
        if (words[at + HASH_A] === a && words[at + HASH_B] === b) {
          // Most often nobody else holds it: one compare-exchange from the state just read.
          const held = Atomics.compareExchange(words, at + LOCK, state, (state + 1) | 0) === state ? state : this.#lock(at);
          if (held === -1) return PASSED;
          // Checked again now that nothing can change it: it may have gone to another group since the read above.
          if (words[at + HASH_A] !== a || words[at + HASH_B] !== b) {
            Atomics.store(words, at + LOCK, held);
            continue scan;
          }
          const result = this.#spend(f, mask, interval, limit, since);
          Atomics.store(words, at + LOCK, released(held));
          return result;
        }
        const seen = floats[f + SEEN];
        if (seen < victimSeen) {
          victim = slot;
          victimState = state;
          victimSeen = seen;
        }
      }
      // Slots are written in window order and never emptied, so past a slot never written the group is not either.
      const slot = empty !== -1 ? empty : victim;
      if (slot === -1) continue;
      const f = slot * this.#stride + HEADER_BYTES / 8;
      const at = 2 * f;
      const state = empty !== -1 ? 0 : victimState;
      // The claim fails when anything wrote the slot since the scan read it; then the scan runs again.
      if (Atomics.compareExchange(words, at + LOCK, state, state + 1) !== state) continue;
      words[at + HASH_A] = a;
      words[at + HASH_B] = b;
      floats.fill(-Infinity, f + TAT, f + TAT + this.#rules);
      const result = this.#spend(f, mask, interval, limit, since);
      Atomics.store(words, at + LOCK, released(state));
      if (state === 0) Atomics.add(words, COUNT, 1);
      return result;
    }
    return PASSED;
  }

  /** The lock word at Int32 `at` once no thread holds it (0 for never written), or -1 after MAX_WAIT_MS. */
  #settled(at: number): number {
    const words = this.#words;
    let state = Atomics.load(words, at + LOCK);
    let deadline = 0;
    for (let wait = 0; (state & 1) !== 0; wait++) {
      if (wait >= SPINS) {
        const now = performance.now();
        if (deadline === 0) deadline = now + MAX_WAIT_MS;
        else if (now > deadline) return -1;
        Atomics.wait(words, at + LOCK, state, SLEEP_MS);
      }
      state = Atomics.load(words, at + LOCK);
    }
    return state;
  }

  /**
   * Takes the written slot at Int32 `at`, returning the free state it took it from; -1 after MAX_WAIT_MS. A
   * compare-exchange lost to another thread is simply tried again, as often as it takes within that time: giving up
   * after a few lost races would let the busiest client, whose requests race most, through unchecked.
   */
  #lock(at: number): number {
    const deadline = performance.now() + MAX_WAIT_MS;
    for (;;) {
      const state = this.#settled(at);
      if (state === -1) return -1;
      if (Atomics.compareExchange(this.#words, at + LOCK, state, (state + 1) | 0) === state) return state;
      if (performance.now() > deadline) return -1;
    }
  }

  /** Under the slot's lock: all of `mask`'s buckets agree, then all are spent; or the first that refuses decides. */
  #spend(f: number, mask: number, interval: Float64Array, limit: Float64Array, since: number): number {
    const floats = this.#floats;
    const pending = this.#pending;
    // Seen even when refused: a client that keeps asking keeps its (empty) buckets instead of being replaced.
    floats[f + SEEN] = since;
    for (let bits = mask; bits !== 0; bits &= bits - 1) {
      const rule = 31 - Math.clz32(bits & -bits);
      const tat = Math.max(floats[f + TAT + rule], since) + interval[rule];
      const ahead = tat - since;
      if (ahead > limit[rule]) {
        this.waitMs = ahead - limit[rule];
        return rule;
      }
      pending[rule] = tat;
    }
    for (let bits = mask; bits !== 0; bits &= bits - 1) {
      const rule = 31 - Math.clz32(bits & -bits);
      floats[f + TAT + rule] = pending[rule];
    }
    return PASSED;
  }
}

/** Int32 words 0-3, then SEEN, then a TAT per rule; a multiple of 8 bytes, so the Float64s stay aligned. */
function slotBytes(rules: number): number {
  return 16 + 8 * (1 + rules);
}

/** The free state after a hold that started from `state`: two on, never 0 (which means never written). */
function released(state: number): number {
  const next = (state + 2) | 0;
  return next === 0 ? 2 : next;
}
