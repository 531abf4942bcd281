// Live per-endpoint load (in-flight requests, response latency EWMA) that endpoint choice reads.
import type { EndpointLoad } from '../routing/p2c.ts';

/** Weight of the newest latency sample: reacts within a handful of requests to a slow endpoint. */
const LATENCY_ALPHA = 0.2;

export class EndpointLoadTable implements EndpointLoad {
  readonly inflight: Int32Array;
  readonly latencyMs: Float64Array;

  constructor(endpointCount: number) {
    this.inflight = new Int32Array(endpointCount);
    this.latencyMs = new Float64Array(endpointCount);
  }

  observeLatency(index: number, ms: number): void {
    const previous = this.latencyMs[index];
    this.latencyMs[index] = previous === 0 ? ms : previous + LATENCY_ALPHA * (ms - previous);
  }
}
