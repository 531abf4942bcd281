// Passive outlier detection from live traffic: consecutive failures, counted in shared memory by every data-plane
// thread, eject an endpoint for a growing time; the ejection itself is decided in one place, the control plane.

import type { HealthState } from './state.ts';

export interface OutlierPolicy {
  /** Consecutive failures (connect error, reset, 502/503/504) that eject an endpoint. */
  readonly consecutiveFailures: number;
  /** First ejection lasts this long; each further one adds the same again, up to `maxEjection`. */
  readonly baseEjection: number;
  readonly maxEjection: number;
  /** At most this share of all endpoints is ejected at once (at least one always may be). */
  readonly maxEjectedPercent: number;
}

/** The narrow interface the data plane reports outcomes through; it never sees health internals. */
export interface OutcomeSink {
  success(index: number): void;
  failure(index: number, now: number): void;
}

/** Told once per run of failures that reaches the threshold: a direct call in one thread, a message from a worker. */
export type ThresholdReached = (index: number, now: number) => void;

/**
 * The request-path half: consecutive failures per endpoint in a shared Int32Array. Only the failure whose add moves
 * the count from `threshold - 1` to `threshold` reports, so however many threads fail at once, one report goes out;
 * the decider lowers the count again when it wants to hear about the next failure.
 */
export class ConsecutiveFailures implements OutcomeSink {
  readonly counts: Int32Array<SharedArrayBuffer>;
  readonly #threshold: number;
  readonly #reached: ThresholdReached;

  /** New counters for `endpointCount` endpoints, or a view over a buffer another thread allocated. */
  constructor(source: number | SharedArrayBuffer, threshold: number, reached: ThresholdReached) {
    this.counts = new Int32Array(typeof source === 'number' ? ConsecutiveFailures.allocate(source) : source);
    this.#threshold = threshold;
    this.#reached = reached;
  }

  static allocate(endpointCount: number): SharedArrayBuffer {
    return new SharedArrayBuffer(endpointCount * Int32Array.BYTES_PER_ELEMENT);
  }

  /**
   * Nearly every response is a success: a plain read (Int32 elements never tear), and a write only when there is a
   * run to end, so healthy traffic pays no atomic operation and never takes the counter's cache line from other cores.
   * A failure landing between the read and the store is simply ordered before this success.
   */
  success(index: number): void {
    if (this.counts[index] !== 0) Atomics.store(this.counts, index, 0);
  }

  failure(index: number, now: number): void {
    if (Atomics.add(this.counts, index, 1) + 1 === this.#threshold) this.#reached(index, now);
  }
}

/**
 * The decision half, on the control plane: ejection time × times ejected up to a cap, and at most a share of the
 * endpoints out at once. Also the outcome sink itself when the data plane runs in the same thread.
 */
export class OutlierDetector implements OutcomeSink {
  readonly #policy: OutlierPolicy;
  readonly #state: HealthState;
  readonly #failures: ConsecutiveFailures;
  /** Endpoints that reached the threshold while no ejection was allowed; they may report again once one ends. */
  readonly #refused = new Set<number>();

  /** `failures` is the endpoint count (new counters) or the shared counters the data plane threads update. */
  constructor(state: HealthState, failures: number | SharedArrayBuffer, policy: OutlierPolicy) {
    this.#state = state;
    this.#policy = policy;
    this.#failures = new ConsecutiveFailures(failures, policy.consecutiveFailures, (index, now) => this.thresholdReached(index, now));
    state.onChange((change) => {
      if (change.kind === 'returned') this.#rearm();
    });
  }

  success(index: number): void {
    this.#failures.success(index);
  }

  failure(index: number, now: number): void {
    this.#failures.failure(index, now);
  }

  /** A run of failures reached the threshold on `index`, in this thread or (by message) in a worker. */
  thresholdReached(index: number, now: number): void {
    const counts = this.#failures.counts;
    const allowed = Math.max(1, Math.floor((counts.length * this.#policy.maxEjectedPercent) / 100));
    if (this.#state.isEjected(index) || this.#state.ejectedCount() >= allowed) {
      this.#refused.add(index);
      return;
    }
    Atomics.store(counts, index, 0);
    const duration = Math.min(this.#policy.baseEjection * (this.#state.timesEjected[index] + 1), this.#policy.maxEjection);
    this.#state.eject(index, now + duration);
  }

  /**
   * An ejection ended, so another may be allowed: each refused endpoint still in its run (and not ejected itself) is
   * set back one below the threshold, and its next failure reports again, as if every failure past the threshold
   * had asked. Reporting every such failure instead would, from a worker, send a message per failed request.
   */
  #rearm(): void {
    const counts = this.#failures.counts;
    const below = this.#policy.consecutiveFailures - 1;
    for (const index of this.#refused) {
      if (this.#state.isEjected(index)) continue;
      this.#refused.delete(index);
      let current = Atomics.load(counts, index);
      while (current > below) {
        const seen = Atomics.compareExchange(counts, index, current, below);
        if (seen === current) break;
        current = seen;
      }
    }
  }
}
