// Passive outlier detection from live traffic: consecutive failures eject an endpoint for a growing time.

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

export class OutlierDetector implements OutcomeSink {
  readonly #policy: OutlierPolicy;
  readonly #state: HealthState;
  readonly #failures: Int32Array;

  constructor(state: HealthState, endpointCount: number, policy: OutlierPolicy) {
    this.#state = state;
    this.#policy = policy;
    this.#failures = new Int32Array(endpointCount);
  }

  success(index: number): void {
    this.#failures[index] = 0;
  }

  failure(index: number, now: number): void {
    const failures = ++this.#failures[index];
    if (failures < this.#policy.consecutiveFailures || this.#state.isEjected(index)) return;
    const allowed = Math.max(1, Math.floor((this.#failures.length * this.#policy.maxEjectedPercent) / 100));
    if (this.#state.ejectedCount() >= allowed) return;
    this.#failures[index] = 0;
    const duration = Math.min(this.#policy.baseEjection * (this.#state.timesEjected[index] + 1), this.#policy.maxEjection);
    this.#state.eject(index, now + duration);
  }
}
