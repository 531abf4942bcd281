// Per-thread tallies in shared memory: geo lookups by outcome and cached addresses, requests, open connections and
// WebSockets. Each
// data-plane thread writes only its own row, so plain stores suffice (no Atomics, no contention: rows sit a cache line
// apart); the control plane adds the rows up at scrape time. V8 writes an aligned Float64 element with one 8-byte
// store on x64 and arm64, so a reader on another thread never sees half a value, and a double counts exactly to 2^53.

/** Slots of a row. The geo outcomes come first, in the locator's order (src/geo/locator.ts). */
export const STAT = Object.freeze({
  geoHit: 0,
  geoMiss: 1,
  geoPrivate: 2,
  geoError: 3,
  requests: 4,
  connections: 5,
  websockets: 6,
  geoCached: 7,
  /** Upload chunks sent again in their region after a failure, and chunks that streamed unheld (the cap was reached). */
  chunkRetried: 8,
  chunkNotHeld: 9,
  /** Chunks of an upload unknown here that another region accepted after the usual one answered 404 (pin discovery). */
  chunkDiscovered: 10,
  /** Exchanges that arrived over HTTP/2 (the rest of `requests` came over HTTP/1.x). */
  http2Requests: 11,
});
/** 16 doubles: 128 bytes, two cache lines per thread. */
export const STAT_ROW = 16;
/** The slots that describe what a thread holds now rather than what happened: they die with the thread. */
const GAUGES = [STAT.connections, STAT.websockets, STAT.geoCached];

export class ThreadStats {
  readonly values: Float64Array<SharedArrayBuffer>;

  /** Rows for `threads` data-plane threads, or a view over rows another thread allocated. */
  constructor(source: number | SharedArrayBuffer) {
    this.values = new Float64Array(typeof source === 'number' ? ThreadStats.allocate(source) : source);
    if (this.values.length === 0 || this.values.length % STAT_ROW !== 0) throw new RangeError('thread stats buffer has the wrong size');
  }

  static allocate(threads: number): SharedArrayBuffer {
    return new SharedArrayBuffer(threads * STAT_ROW * Float64Array.BYTES_PER_ELEMENT);
  }

  get buffer(): SharedArrayBuffer {
    return this.values.buffer;
  }

  get threads(): number {
    return this.values.length / STAT_ROW;
  }

  /** The one row `thread` writes. */
  row(thread: number): Float64Array<SharedArrayBuffer> {
    if (!Number.isInteger(thread) || thread < 0 || thread >= this.threads) throw new RangeError(`no stats row for thread ${thread}`);
    return this.values.subarray(thread * STAT_ROW, (thread + 1) * STAT_ROW);
  }

  get(thread: number, stat: number): number {
    return this.values[thread * STAT_ROW + stat];
  }

  /** The process's total of one slot: what a scrape shows, however many threads counted it. */
  total(stat: number): number {
    let sum = 0;
    for (let at = stat; at < this.values.length; at += STAT_ROW) sum += this.values[at];
    return sum;
  }

  /** Geo lookups by outcome, the process's totals. */
  geoLookups(): { hit: number; miss: number; private: number; error: number } {
    return { hit: this.total(STAT.geoHit), miss: this.total(STAT.geoMiss), private: this.total(STAT.geoPrivate), error: this.total(STAT.geoError) };
  }

  /**
   * A thread that ended took its connections with it: a replacement starts from its predecessor's counters (they only
   * grow) and from no open connections. Called only while no thread writes the row.
   */
  resetGauges(thread: number): void {
    for (const stat of GAUGES) this.values[thread * STAT_ROW + stat] = 0;
  }
}
