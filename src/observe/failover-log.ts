// The last failovers in shared memory, for the dashboard: a recorder on any thread appends one, the traffic summary
// lists them newest first. Failovers are rare, so an entry may cost a clock read and a short string.
import type { Endpoint } from '../config/types.ts';
import type { RetryReason } from '../proxy/record.ts';
import { RETRY_REASONS, retryIndex } from './labels.ts';

export const FAILOVERS_KEPT = 20;
/** UTF-8 bytes per entry for both endpoints' region, zone and origin; a hostname alone is at most 253. */
const TEXT_BYTES = 1024;
/** Int32 slots: entries appended so far, then per entry its stamp, reason and text length. */
const HEAD = 0;
const FIELDS = 3;
const INTS = 1 + FAILOVERS_KEPT * FIELDS;
const AT_OFFSET = Math.ceil((INTS * 4) / 8) * 8;
const TEXT_OFFSET = AT_OFFSET + FAILOVERS_KEPT * 8;
const BYTES = TEXT_OFFSET + FAILOVERS_KEPT * TEXT_BYTES;

/** A failover as the dashboard lists it. */
export interface RecentFailover {
  /** Epoch ms. */
  readonly at: number;
  readonly from: { readonly region: string; readonly zone: string; readonly endpoint: string };
  readonly to: { readonly region: string; readonly zone: string; readonly endpoint: string };
  readonly reason: RetryReason;
}

const encoder = new TextEncoder();

/**
 * A ring of entries, each stamped with its sequence number plus one, 0 while it is written: a reader copies an entry
 * and keeps it only if the stamp was the expected one before and after. Two writers meet on one entry only when
 * twenty more failovers happen while one of them writes; the entry may then mix both, and is shown as it is.
 */
export class FailoverLog {
  /** Unsigned: the count of entries wraps after 2^32 instead of going negative. */
  readonly #ints: Uint32Array<SharedArrayBuffer>;
  readonly #at: Float64Array<SharedArrayBuffer>;
  readonly #text: Uint8Array<SharedArrayBuffer>;

  constructor(buffer: SharedArrayBuffer) {
    if (buffer.byteLength !== BYTES) throw new RangeError('the failover log buffer has the wrong size');
    this.#ints = new Uint32Array(buffer, 0, INTS);
    this.#at = new Float64Array(buffer, AT_OFFSET, FAILOVERS_KEPT);
    this.#text = new Uint8Array(buffer, TEXT_OFFSET);
  }

  static allocate(): SharedArrayBuffer {
    return new SharedArrayBuffer(BYTES);
  }

  append(at: number, reason: RetryReason, from: Endpoint, to: Endpoint): void {
    const ints = this.#ints;
    const sequence = Atomics.add(ints, HEAD, 1);
    const entry = sequence % FAILOVERS_KEPT;
    const field = 1 + entry * FIELDS;
    Atomics.store(ints, field, 0);
    const text = `${from.region} ${from.zone} ${from.origin} ${to.region} ${to.zone} ${to.origin}`;
    const { written } = encoder.encodeInto(text, this.#text.subarray(entry * TEXT_BYTES, (entry + 1) * TEXT_BYTES));
    ints[field + 1] = retryIndex(reason);
    ints[field + 2] = written;
    this.#at[entry] = at;
    Atomics.store(ints, field, sequence + 1);
  }

  /** The entries written and not overwritten, newest first; one being written is left out. */
  recent(): RecentFailover[] {
    const ints = this.#ints;
    const head = Atomics.load(ints, HEAD);
    const result: RecentFailover[] = [];
    for (let back = 1; back <= Math.min(FAILOVERS_KEPT, head); back++) {
      const sequence = head - back;
      const entry = sequence % FAILOVERS_KEPT;
      const field = 1 + entry * FIELDS;
      const stamp = (sequence + 1) >>> 0;
      if (Atomics.load(ints, field) !== stamp) continue;
      const reason = RETRY_REASONS[ints[field + 1]];
      const text = Buffer.from(this.#text.subarray(entry * TEXT_BYTES, entry * TEXT_BYTES + ints[field + 2])).toString('utf8');
      const at = this.#at[entry];
      if (Atomics.load(ints, field) !== stamp) continue;
      const parts = text.split(' ');
      // Names and origins hold no spaces; anything else is an entry cut short, and is skipped.
      if (parts.length !== 6 || reason === undefined) continue;
      const [fromRegion, fromZone, fromOrigin, toRegion, toZone, toOrigin] = parts;
      result.push({
        at,
        from: { region: fromRegion, zone: fromZone, endpoint: fromOrigin },
        to: { region: toRegion, zone: toZone, endpoint: toOrigin },
        reason,
      });
    }
    return result;
  }
}
