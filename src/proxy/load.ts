// Live per-endpoint load (in-flight requests, response latency EWMA) in shared memory: every data-plane thread counts
// into the same table, so a circuit-breaker limit holds for the whole process and endpoint choice sees all traffic.
import type { EndpointLoad } from '../routing/p2c.ts';

/** Weight of the newest latency sample: reacts within a handful of requests to a slow endpoint. */
const LATENCY_ALPHA = 0.2;
/** Latencies are kept in whole microseconds: 1 µs is the least measured value (0 means "none yet"), ~35 min the most. */
const MAX_LATENCY_US = 0x7fffffff;

/** The table's memory, plain and structured-clone-able: what a worker receives to build its own view. */
export interface EndpointLoadBuffers {
  readonly inflight: SharedArrayBuffer;
  readonly latencyUs: SharedArrayBuffer;
  /** Per thread, a row of the slots it holds, so the slots of a thread that died can be given back. */
  readonly held: SharedArrayBuffer;
}

/** Held rows are padded to 64 bytes, so threads writing their own rows never share a cache line. */
const ROW_ALIGN = 16;
const rowLength = (endpointCount: number): number => Math.max(ROW_ALIGN, Math.ceil(endpointCount / ROW_ALIGN) * ROW_ALIGN);

export class EndpointLoadTable implements EndpointLoad {
  /** Requests dispatched and not yet finished, by endpoint index; changed only through `tryAcquire` and `release`. */
  readonly inflight: Int32Array<SharedArrayBuffer>;
  readonly latencyUs: Int32Array<SharedArrayBuffer>;
  /** Every thread's held slots by endpoint; this thread writes only its own row, with plain stores. */
  readonly #held: Int32Array<SharedArrayBuffer>;
  readonly #own: Int32Array<SharedArrayBuffer>;

  /** A new table for `endpointCount` endpoints, or `thread`'s view of one the control plane allocated. */
  constructor(source: number | EndpointLoadBuffers, thread = 0) {
    const buffers = typeof source === 'number' ? EndpointLoadTable.allocate(source) : source;
    this.inflight = new Int32Array(buffers.inflight);
    this.latencyUs = new Int32Array(buffers.latencyUs);
    if (this.inflight.length !== this.latencyUs.length) throw new RangeError('endpoint load buffers differ in length');
    this.#held = new Int32Array(buffers.held);
    const row = rowLength(this.inflight.length);
    if ((thread + 1) * row > this.#held.length) throw new RangeError(`endpoint load buffers have no row for thread ${thread}`);
    this.#own = this.#held.subarray(thread * row, thread * row + this.inflight.length);
  }

  /** `threads`: how many data-plane threads will count into the table. */
  static allocate(endpointCount: number, threads = 1): EndpointLoadBuffers {
    const bytes = endpointCount * Int32Array.BYTES_PER_ELEMENT;
    const held = threads * rowLength(endpointCount) * Int32Array.BYTES_PER_ELEMENT;
    return { inflight: new SharedArrayBuffer(bytes), latencyUs: new SharedArrayBuffer(bytes), held: new SharedArrayBuffer(held) };
  }

  /**
   * `thread` died holding slots: give them back, or its endpoints would stay that much closer to their limit for the
   * life of the table. Called by the control plane once the thread has exited, so nothing writes that row any more.
   */
  forget(thread: number): void {
    const row = rowLength(this.inflight.length);
    if ((thread + 1) * row > this.#held.length) return;
    for (let index = 0; index < this.inflight.length; index++) {
      const at = thread * row + index;
      if (this.#held[at] !== 0) Atomics.sub(this.inflight, index, this.#held[at]);
      this.#held[at] = 0;
    }
  }

  /**
   * Take a slot on `index` unless `limit` requests are already in flight there, counting every thread. Check and
   * increment are one compare-and-swap: a separate read and add would let two threads both pass at `limit - 1`.
   * The first read may be plain (an Int32 element never tears, and Atomics calls are not free): if another thread
   * changed the count since, the swap fails and returns the value to try again with.
   */
  tryAcquire(index: number, limit: number): boolean {
    const inflight = this.inflight;
    let current = inflight[index];
    while (current < limit) {
      const seen = Atomics.compareExchange(inflight, index, current, current + 1);
      if (seen === current) {
        this.#own[index]++;
        return true;
      }
      current = seen;
    }
    return false;
  }

  release(index: number): void {
    Atomics.sub(this.inflight, index, 1);
    this.#own[index]--;
  }

  /**
   * Read, smooth and write back without a lock: when two threads race, one sample is lost, which an average of the
   * last few dozen samples does not notice. Int32 elements never tear, so a reader sees one thread's value or the other's.
   */
  observeLatency(index: number, ms: number): void {
    const sample = Math.min(MAX_LATENCY_US, Math.max(1, Math.round(ms * 1000)));
    const previous = this.latencyUs[index];
    this.latencyUs[index] = previous === 0 ? sample : Math.round(previous + LATENCY_ALPHA * (sample - previous));
  }
}
