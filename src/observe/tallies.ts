// Per-topology traffic tallies in typed arrays: the data-plane events bump them, the exporter drains them at scrape.
import { CODES, METHODS, type TopologyIndex } from './labels.ts';
import type { RetryReason } from '../proxy/record.ts';

/**
 * Latency bucket bounds in seconds, shared by both histograms. An edge proxy sees four populations: loopback and
 * same-AZ answers (0.5–2.5 ms: the proxy's own overhead lives at the bottom, so the first bound is 0.5 ms),
 * cross-AZ and cached API calls (5–50 ms), cross-region failovers and heavy queries (100 ms–1 s), and uploads,
 * function executions and long polls (seconds to a minute). A 1-2.5-5 ladder keeps every bucket within 2.5× of its
 * neighbour, so histogram_quantile stays within that factor, in 16 buckets per zone.
 */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]);

export const RETRY_REASONS: readonly RetryReason[] = Object.freeze(['connect_failure', 'reset', 'upstream_5xx']);

export function retryIndex(reason: RetryReason | null): number {
  return reason === 'connect_failure' ? 0 : reason === 'reset' ? 1 : 2;
}

/** Non-cumulative bucket counts per zone slot; the last bucket of each slot is the +Inf overflow. */
export class BucketTally {
  readonly width = LATENCY_BUCKETS.length + 1;
  readonly counts: Float64Array;
  readonly sums: Float64Array;

  constructor(slots: number) {
    this.counts = new Float64Array(slots * this.width);
    this.sums = new Float64Array(slots);
  }

  observe(slot: number, seconds: number): void {
    let bucket = 0;
    // Most answers are fast, so a scan from the bottom beats a binary search.
    while (bucket < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[bucket]) bucket++;
    this.counts[slot * this.width + bucket]++;
    this.sums[slot] += seconds;
  }
}

export class Tallies {
  readonly index: TopologyIndex;
  /** [zone slot][method][code] */
  readonly requests: Float64Array;
  readonly duration: BucketTally;
  readonly upstream: BucketTally;
  /** [from region][to region] */
  readonly failovers: Float64Array;
  /** [nearest region] */
  readonly misroutes: Float64Array;

  constructor(index: TopologyIndex) {
    this.index = index;
    const slots = index.zones.length;
    this.requests = new Float64Array(slots * METHODS.length * CODES.length);
    this.duration = new BucketTally(slots);
    this.upstream = new BucketTally(slots);
    this.failovers = new Float64Array(index.regions.length * index.regions.length);
    this.misroutes = new Float64Array(index.regions.length);
  }
}

export function requestCell(slot: number, method: number, code: number): number {
  return (slot * METHODS.length + method) * CODES.length + code;
}
