// A bounded map from string keys to small numbers that expire, in one SharedArrayBuffer: every thread attached to it
// reads and writes the same entries, with no lock and no message between threads.

/**
 * Where an entry lives, as Uint32 words. Keys are kept only as a 64-bit hash (two independent-looking 32-bit lanes),
 * so two keys whose hashes match in all 64 bits read as one: at about 2^-64 per pair compared, that is accepted.
 *
 * STATE: `value << 16 | sequence`. The whole word is 0 only for a slot never written. An odd sequence is a writer at
 * work; every write moves the sequence on, so a reader who finds the word unchanged after reading the other words
 * read one entry, not a mix of two. The sequence wraps after 32 768 writes of one slot, far more than a reader stalls.
 * EXPIRES: the second after the table's epoch from which the entry is gone; 0 when the slot holds nothing.
 * STAMP: the table's use counter at the entry's last write or refresh. Eviction takes the entry expiring soonest, and
 * the lower stamp among those expiring in the same second, so within a probe window it is least recently used.
 */
const STATE = 0;
const HASH_A = 1;
const HASH_B = 2;
const EXPIRES = 3;
const STAMP = 4;
const SLOT_WORDS = 5;

/** Header: entries held (expired ones included until their slot is reused), and the use counter; one cache line. */
const COUNT = 0;
const USES = 1;
const HEADER_WORDS = 16;

/** Slots looked at from a key's home slot: a key is in one of them or not in the table. */
export const PROBE_WINDOW = 16;
const MAX_VALUE = 0xffff;
const MAX_EXPIRES = 0xffffffff;
/** A reader reads a slot that changed under it again this many times, then takes it as a miss. */
const REREADS = 4;
/** A writer waits this many reads for another writer to finish a slot, which may be taking the same key. */
const WRITER_SPINS = 256;
/** A writer that loses every race for a slot this many times leaves the table as it was. */
const WRITE_ATTEMPTS = 8;

/** The table's memory, plain and structured-clone-able: what another thread receives to attach. */
export interface PinTableDescriptor {
  readonly buffer: SharedArrayBuffer;
  /** Slots, a power of two. */
  readonly capacity: number;
  readonly maxEntries: number;
  /** Expiries count seconds from here, on the clock the callers pass as `now` (milliseconds). */
  readonly epochMs: number;
}

const scratch = new Uint32Array(2);

/**
 * The key's 64-bit hash as two 32-bit halves in `out`: two multiplicative lanes over the key's UTF-16 code units, two
 * units a step, each lane mixed with the other at the end (the shape of the public-domain cyrb53). Not cryptographic:
 * the keys are not secrets, and a forged collision could at worst send one upload after another's region.
 */
export function hashKey(key: string, out: Uint32Array): void {
  const length = key.length;
  let h1 = 0xdeadbeef ^ length;
  let h2 = 0x41c6ce57 ^ length;
  let i = 0;
  for (; i + 1 < length; i += 2) {
    const pair = key.charCodeAt(i) | (key.charCodeAt(i + 1) << 16);
    h1 = Math.imul(h1 ^ pair, 0x9e3779b1);
    h2 = Math.imul(h2 ^ pair, 0x5f356495);
  }
  if (i < length) {
    h1 = Math.imul(h1 ^ key.charCodeAt(i), 0x9e3779b1);
    h2 = Math.imul(h2 ^ key.charCodeAt(i), 0x5f356495);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 0x85ebca6b) ^ Math.imul(h2 ^ (h2 >>> 13), 0xc2b2ae35);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 0x85ebca6b) ^ Math.imul(h1 ^ (h1 >>> 13), 0xc2b2ae35);
  out[0] = h1;
  out[1] = h2;
}

/**
 * Readers never wait: a slot mid-write is not (or no longer) the entry they look for. Writers claim a slot by moving
 * its state word from the value they read to odd with one compare-and-swap, so two writers never fill one slot.
 * Two writers adding one new key at once pick the same slot, or one waits out the other's claim and finds the key;
 * only if a third write changes the window between their scans can the key land twice: reads then see the first copy,
 * and `delete` removes both.
 */
export class SharedPinTable {
  readonly descriptor: PinTableDescriptor;
  readonly #words: Uint32Array<SharedArrayBuffer>;
  readonly #mask: number;
  readonly #window: number;
  readonly #maxEntries: number;
  readonly #epochMs: number;

  /** Room for `maxEntries` at half load: the next power of two at least twice as large. */
  static create(maxEntries: number, now: number): SharedPinTable {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError(`maxEntries must be a positive integer, not ${maxEntries}`);
    const capacity = 2 ** Math.ceil(Math.log2(2 * maxEntries));
    const buffer = new SharedArrayBuffer((HEADER_WORDS + capacity * SLOT_WORDS) * Uint32Array.BYTES_PER_ELEMENT);
    return new SharedPinTable({ buffer, capacity, maxEntries, epochMs: Math.floor(now) });
  }

  /** This thread's view of a table another thread created. */
  static attach(descriptor: PinTableDescriptor): SharedPinTable {
    return new SharedPinTable(descriptor);
  }

  private constructor(descriptor: PinTableDescriptor) {
    const { buffer, capacity, maxEntries, epochMs } = descriptor;
    if (!Number.isInteger(Math.log2(capacity)) || buffer.byteLength !== (HEADER_WORDS + capacity * SLOT_WORDS) * Uint32Array.BYTES_PER_ELEMENT) {
      throw new RangeError(`a pin table buffer of ${buffer.byteLength} bytes does not hold ${capacity} slots`);
    }
    this.descriptor = { buffer, capacity, maxEntries, epochMs };
    this.#words = new Uint32Array(buffer);
    this.#mask = capacity - 1;
    this.#window = Math.min(PROBE_WINDOW, capacity);
    this.#maxEntries = maxEntries;
    this.#epochMs = epochMs;
  }

  get maxEntries(): number {
    return this.#maxEntries;
  }

  /** Entries held, counting expired ones until a write reuses their slot. */
  get size(): number {
    return Atomics.load(this.#words, COUNT);
  }

  /** The key's value, or -1. With `refreshTtlMs`, a hit lives on that long from `now` and counts as a use. */
  get(key: string, now: number, refreshTtlMs = 0): number {
    hashKey(key, scratch);
    const a = scratch[0];
    const b = scratch[1];
    const words = this.#words;
    const since = now - this.#epochMs;
    let rereads = 0;
    for (let probe = 0, slot = a & this.#mask; probe < this.#window; ) {
      const at = HEADER_WORDS + slot * SLOT_WORDS;
      // Plain reads only pass slots over: a stale one costs a miss, never a wrong value. What is returned is read
      // between two atomic reads of the state word, which no plain read could promise.
      const seen = words[at + STATE];
      // Nothing is ever placed past a slot never written, so the key is not further on.
      if (seen === 0) return -1;
      if (words[at + HASH_A] === a) {
        const state = Atomics.load(words, at + STATE);
        if ((state & 1) === 0 && Atomics.load(words, at + HASH_A) === a && Atomics.load(words, at + HASH_B) === b) {
          const expires = Atomics.load(words, at + EXPIRES);
          const settled = Atomics.load(words, at + STATE) === state;
          if (!settled && ++rereads <= REREADS) continue;
          if (settled && expires !== 0 && expires * 1000 > since) {
            if (refreshTtlMs > 0) this.#refresh(at, expires, now, refreshTtlMs);
            return state >>> 16;
          }
        }
      }
      probe++;
      slot = (slot + 1) & this.#mask;
    }
    return -1;
  }

  /** Sets the key's value for `ttlMs` from `now`; false when other writers kept every slot it could take busy. */
  set(key: string, value: number, now: number, ttlMs: number): boolean {
    hashKey(key, scratch);
    return this.#write(scratch[0], scratch[1], checked(value), now, this.#expiry(now, ttlMs), this.#use(), true, true) !== -1;
  }

  /** The key's live value if it has one, else sets `value` and returns it; -1 when no slot could be taken. */
  add(key: string, value: number, now: number, ttlMs: number): number {
    hashKey(key, scratch);
    return this.#write(scratch[0], scratch[1], checked(value), now, this.#expiry(now, ttlMs), this.#use(), false, true);
  }

  /** True when a live entry was removed. */
  delete(key: string): boolean {
    hashKey(key, scratch);
    const a = scratch[0];
    const b = scratch[1];
    const words = this.#words;
    let removed = false;
    for (let probe = 0, slot = a & this.#mask; probe < this.#window; probe++, slot = (slot + 1) & this.#mask) {
      const at = HEADER_WORDS + slot * SLOT_WORDS;
      const state = Atomics.load(words, at + STATE);
      if (state === 0) break;
      if ((state & 1) !== 0 || Atomics.load(words, at + HASH_A) !== a || Atomics.load(words, at + HASH_B) !== b) continue;
      // Every copy goes: two writers racing to add one key can leave two.
      removed = this.#clear(at, state) || removed;
    }
    return removed;
  }

  /**
   * Copies the live entries into a table for new bounds: the latest to expire first, so a smaller table keeps the most
   * recently used, each expiring `extendMs` later than here (a new ttl minus the old). What does not fit is dropped.
   */
  copyTo(target: SharedPinTable, now: number, extendMs: number): void {
    const words = this.#words;
    const since = now - this.#epochMs;
    const live: { a: number; b: number; value: number; expires: number; stamp: number }[] = [];
    for (let slot = 0; slot <= this.#mask; slot++) {
      const at = HEADER_WORDS + slot * SLOT_WORDS;
      const state = Atomics.load(words, at + STATE);
      if (state === 0 || (state & 1) !== 0) continue;
      const entry = {
        a: Atomics.load(words, at + HASH_A),
        b: Atomics.load(words, at + HASH_B),
        value: state >>> 16,
        expires: Atomics.load(words, at + EXPIRES),
        stamp: Atomics.load(words, at + STAMP),
      };
      if (Atomics.load(words, at + STATE) === state && entry.expires !== 0 && entry.expires * 1000 > since) live.push(entry);
    }
    live.sort((x, y) => y.expires - x.expires || (y.stamp - x.stamp) | 0);
    // Stamps carry over as they are, so the target's counter starts past them.
    const uses = Atomics.load(words, USES);
    if (((uses - Atomics.load(target.#words, USES)) | 0) > 0) Atomics.store(target.#words, USES, uses);
    for (const entry of live) {
      if (target.size >= target.#maxEntries) break;
      const expiresAt = this.#epochMs + entry.expires * 1000 + extendMs;
      if (expiresAt <= now) continue;
      const expires = Math.min(MAX_EXPIRES, Math.max(1, Math.ceil((expiresAt - target.#epochMs) / 1000)));
      target.#write(entry.a, entry.b, entry.value, now, expires, entry.stamp, false, false);
    }
  }

  /**
   * One attempt scans the whole window: the key's own slot if it holds the key live; else the first slot before any
   * never-written one that holds nothing live, or that never-written slot; else, with `evict`, the entry expiring
   * soonest. A write that adds an entry to a table already holding `maxEntries` also removes that soonest entry.
   */
  #write(a: number, b: number, value: number, now: number, expires: number, stamp: number, replace: boolean, evict: boolean): number {
    const words = this.#words;
    const since = now - this.#epochMs;
    for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
      let target = -1;
      let targetState = 0;
      let victim = -1;
      let victimState = 0;
      let victimExpires = 0;
      let victimStamp = 0;
      let match = -1;
      let matchState = 0;
      let matchExpires = 0;
      for (let probe = 0, slot = a & this.#mask; probe < this.#window; probe++, slot = (slot + 1) & this.#mask) {
        const at = HEADER_WORDS + slot * SLOT_WORDS;
        let state = Atomics.load(words, at + STATE);
        for (let spin = 0; (state & 1) !== 0 && spin < WRITER_SPINS; spin++) state = Atomics.load(words, at + STATE);
        if ((state & 1) !== 0) continue;
        if (state === 0) {
          if (target === -1) target = slot;
          continue;
        }
        const slotA = Atomics.load(words, at + HASH_A);
        const slotB = Atomics.load(words, at + HASH_B);
        const slotExpires = Atomics.load(words, at + EXPIRES);
        const slotStamp = Atomics.load(words, at + STAMP);
        if (Atomics.load(words, at + STATE) !== state) continue;
        if (slotExpires === 0 || slotExpires * 1000 <= since) {
          if (target === -1) {
            target = slot;
            targetState = state;
          }
        } else if (slotA === a && slotB === b) {
          match = slot;
          matchState = state;
          matchExpires = slotExpires;
          break;
        } else if (victim === -1 || soonerThan(slotExpires, slotStamp, victimExpires, victimStamp)) {
          victim = slot;
          victimState = state;
          victimExpires = slotExpires;
          victimStamp = slotStamp;
        }
      }

      if (match !== -1) {
        if (!replace) return matchState >>> 16;
        // The key stays readable throughout: value and sequence change in one swap, then the expiry follows.
        const at = HEADER_WORDS + match * SLOT_WORDS;
        if (Atomics.compareExchange(words, at + STATE, matchState, withValue(value, matchState)) !== matchState) continue;
        Atomics.compareExchange(words, at + EXPIRES, matchExpires, expires);
        Atomics.store(words, at + STAMP, stamp);
        return value;
      }
      if (target === -1) {
        if (!evict || victim === -1) return -1;
        target = victim;
        targetState = victimState;
        victim = -1;
      }
      const at = HEADER_WORDS + target * SLOT_WORDS;
      // The claim: it fails when anything wrote the slot since it was read, and the scan starts over.
      if (Atomics.compareExchange(words, at + STATE, targetState, targetState + 1) !== targetState) continue;
      const added = Atomics.load(words, at + EXPIRES) === 0;
      Atomics.store(words, at + HASH_A, a);
      Atomics.store(words, at + HASH_B, b);
      Atomics.store(words, at + EXPIRES, expires);
      Atomics.store(words, at + STAMP, stamp);
      Atomics.store(words, at + STATE, withValue(value, targetState));
      if (added && Atomics.add(words, COUNT, 1) >= this.#maxEntries && evict && victim !== -1) {
        this.#clear(HEADER_WORDS + victim * SLOT_WORDS, victimState);
      }
      return value;
    }
    return -1;
  }

  /** Empties a slot still in `state`; false when another thread wrote it first. */
  #clear(at: number, state: number): boolean {
    const words = this.#words;
    if (Atomics.compareExchange(words, at + STATE, state, state + 1) !== state) return false;
    const held = Atomics.load(words, at + EXPIRES) !== 0;
    Atomics.store(words, at + EXPIRES, 0);
    Atomics.store(words, at + STATE, withValue(0, state));
    if (held) Atomics.sub(words, COUNT, 1);
    return held;
  }

  /**
   * Outside the claim, so concurrent readers of a busy key never miss it: the expiry only moves later, by a swap from
   * what was read. Should the slot have been rewritten meanwhile, at worst its new entry is marked used a little later.
   */
  #refresh(at: number, expires: number, now: number, ttlMs: number): void {
    const words = this.#words;
    Atomics.store(words, at + STAMP, this.#use());
    const later = this.#expiry(now, ttlMs);
    if (later > expires) Atomics.compareExchange(words, at + EXPIRES, expires, later);
  }

  #use(): number {
    return (Atomics.add(this.#words, USES, 1) + 1) >>> 0;
  }

  /** Rounded up to the second: an entry lives at least its ttl, and less than a second longer. */
  #expiry(now: number, ttlMs: number): number {
    return Math.min(MAX_EXPIRES, Math.max(1, Math.ceil((now - this.#epochMs + ttlMs) / 1000)));
  }
}

function checked(value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_VALUE) throw new RangeError(`a pin value is 0 to ${MAX_VALUE}, not ${value}`);
  return value;
}

/** The released state after a write: the new value, and the sequence two past the one the writer read. */
function withValue(value: number, state: number): number {
  const sequence = ((state & 0xffff) + 2) & 0xffff;
  return ((value << 16) | (sequence === 0 ? 2 : sequence)) >>> 0;
}

/** Stamps wrap, and are compared as the distance between them. */
function soonerThan(expires: number, stamp: number, otherExpires: number, otherStamp: number): boolean {
  return expires < otherExpires || (expires === otherExpires && ((stamp - otherStamp) | 0) < 0);
}
