// Per-thread tallies of what the edge refused or sent elsewhere: requests refused by each rate-limit rule, and
// requests redirected to each region. Laid out like the thread stats (src/observe/thread-stats.ts): each data-plane
// thread writes only its own row, and a scrape adds the rows up. Slots are by position (rule i of `rateLimits.rules`,
// region i of the topology), so a reload that reorders them relabels what was counted before it.
import { MAX_RATE_LIMIT_RULES } from '../config/defaults.ts';

/** Regions counted for redirects; a topology has a handful, and the config refuses more than this. */
export const MAX_REDIRECT_REGIONS = 64;

export const EDGE_STAT = Object.freeze({
  /** + rule index */
  rateLimited: 0,
  /** + region index */
  redirected: MAX_RATE_LIMIT_RULES,
});
export const EDGE_ROW = MAX_RATE_LIMIT_RULES + MAX_REDIRECT_REGIONS;

export class EdgeStats {
  readonly values: Float64Array<SharedArrayBuffer>;

  /** Rows for `threads` data-plane threads, or a view over rows another thread allocated. */
  constructor(source: number | SharedArrayBuffer) {
    this.values = new Float64Array(typeof source === 'number' ? new SharedArrayBuffer(source * EDGE_ROW * 8) : source);
    if (this.values.length === 0 || this.values.length % EDGE_ROW !== 0) throw new RangeError('edge stats buffer has the wrong size');
  }

  get buffer(): SharedArrayBuffer {
    return this.values.buffer;
  }

  row(thread: number): Float64Array<SharedArrayBuffer> {
    if (!Number.isInteger(thread) || thread < 0 || (thread + 1) * EDGE_ROW > this.values.length) throw new RangeError(`no edge stats row for thread ${thread}`);
    return this.values.subarray(thread * EDGE_ROW, (thread + 1) * EDGE_ROW);
  }

  /** The process's total of one slot. */
  total(slot: number): number {
    let sum = 0;
    for (let at = slot; at < this.values.length; at += EDGE_ROW) sum += this.values[at];
    return sum;
  }
}
