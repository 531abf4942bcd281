// Per-endpoint health: active up/down with rise/fall thresholds, passive ejections, RTT EWMA, and the
// immutable snapshot the router reads. Time is passed in, so the state machine is testable without timers.

export interface HealthThresholds {
  /** Consecutive passing probes that bring a down endpoint up. */
  readonly rise: number;
  /** Consecutive failing probes that take an up endpoint down. */
  readonly fall: number;
}

/** What routing sees: frozen, swapped whole on every change, read without locks. */
export interface HealthSnapshot {
  readonly version: number;
  /** By endpoint index: up by the active checks and not ejected (a missing entry counts as usable). */
  readonly usable: readonly boolean[];
  /** By endpoint index: smoothed probe round-trip in ms, or null before the first probe. */
  readonly rttMs: readonly (number | null)[];
}

/** One endpoint's health as the admin plane shows it: a frozen copy, so readers never hold the live state. */
export interface EndpointHealth {
  /** Up by the active checks. */
  readonly up: boolean;
  /** Up and not ejected: routing may pick it. */
  readonly usable: boolean;
  /** Epoch ms the passive ejection ends, or 0 when not ejected. */
  readonly ejectedUntil: number;
  readonly timesEjected: number;
  readonly lastProbe: { readonly at: number; readonly ok: boolean; readonly detail: string } | null;
  /** Smoothed probe round-trip in ms, or null before the first passing probe. */
  readonly rttMs: number | null;
}

export type HealthChange =
  | { readonly kind: 'up' | 'down'; readonly index: number; readonly reason: string }
  | { readonly kind: 'ejected'; readonly index: number; readonly until: number; readonly times: number }
  | { readonly kind: 'returned'; readonly index: number }
  /** The first RTT of an endpoint, or a shift in it that may reorder zones; no change of usability. */
  | { readonly kind: 'rtt'; readonly index: number; readonly rttMs: number };

/** Weight of the newest RTT sample; ~0.3 follows a real shift within a few probes without chasing noise. */
const RTT_ALPHA = 0.3;
/**
 * A new snapshot (and router) only when the smoothed RTT moved this share and at least `RTT_REFRESH_MS` away from the
 * one routing sees: zones are ordered by RTT, but probe jitter must not rebuild the router every interval.
 */
const RTT_REFRESH_SHARE = 0.2;
const RTT_REFRESH_MS = 1;

export class HealthState {
  readonly up: boolean[];
  readonly rttMs: (number | null)[];
  readonly ejectedUntil: number[];
  readonly timesEjected: number[];
  readonly lastProbe: ({ at: number; ok: boolean; detail: string } | null)[];
  #streak: number[];
  #snapshot: HealthSnapshot;
  readonly #thresholds: HealthThresholds;
  readonly #listeners: ((change: HealthChange, snapshot: HealthSnapshot) => void)[] = [];

  /** Endpoints start up, as HAProxy's do: traffic flows at boot and the first probe runs at once. */
  constructor(endpointCount: number, thresholds: HealthThresholds) {
    this.#thresholds = thresholds;
    this.up = Array.from({ length: endpointCount }, () => true);
    this.rttMs = Array.from({ length: endpointCount }, () => null);
    this.ejectedUntil = Array.from({ length: endpointCount }, () => 0);
    this.timesEjected = Array.from({ length: endpointCount }, () => 0);
    this.lastProbe = Array.from({ length: endpointCount }, () => null);
    // Positive: consecutive passes; negative: consecutive failures.
    this.#streak = Array.from({ length: endpointCount }, () => 0);
    this.#snapshot = this.#build(0);
  }

  get snapshot(): HealthSnapshot {
    return this.#snapshot;
  }

  onChange(listener: (change: HealthChange, snapshot: HealthSnapshot) => void): void {
    this.#listeners.push(listener);
  }

  isEjected(index: number): boolean {
    return this.ejectedUntil[index] !== 0;
  }

  /**
   * One active probe result. A passing probe after the ejection time also returns an ejected endpoint, and so does
   * the probe that brings a down endpoint back up.
   */
  probe(index: number, ok: boolean, rttMs: number | null, now: number, detail: string): void {
    this.lastProbe[index] = { at: now, ok, detail };
    let rttShift = false;
    if (ok && rttMs !== null) {
      const previous = this.rttMs[index];
      const smoothed = previous === null ? rttMs : previous + RTT_ALPHA * (rttMs - previous);
      this.rttMs[index] = smoothed;
      const shown = this.#snapshot.rttMs[index];
      rttShift = shown === null || Math.abs(smoothed - shown) > Math.max(RTT_REFRESH_MS, RTT_REFRESH_SHARE * shown);
    }
    const streak = this.#streak[index];
    this.#streak[index] = ok ? (streak > 0 ? streak + 1 : 1) : streak < 0 ? streak - 1 : -1;
    const rising = !this.up[index] && this.#streak[index] >= this.#thresholds.rise;
    // An endpoint the active checks took down and brought back up has proven its recovery, ejected or not;
    // otherwise (checks passing all along while traffic failed) the ejection time holds.
    if (ok && this.ejectedUntil[index] !== 0 && (now >= this.ejectedUntil[index] || rising)) {
      this.ejectedUntil[index] = 0;
      this.#changed({ kind: 'returned', index });
    }
    if (rising) {
      this.up[index] = true;
      this.#changed({ kind: 'up', index, reason: `${this.#thresholds.rise} passing checks` });
    } else if (this.up[index] && -this.#streak[index] >= this.#thresholds.fall) {
      this.up[index] = false;
      this.#changed({ kind: 'down', index, reason: `${this.#thresholds.fall} failing checks: ${detail}` });
    } else if (rttShift && this.#snapshot.rttMs[index] !== this.rttMs[index]) {
      this.#changed({ kind: 'rtt', index, rttMs: this.rttMs[index]! });
    }
  }

  /** Passive outlier ejection; the endpoint comes back with the first passing probe after `until` (or on rising). */
  eject(index: number, until: number): void {
    this.timesEjected[index]++;
    this.ejectedUntil[index] = until;
    this.#changed({ kind: 'ejected', index, until, times: this.timesEjected[index] });
  }

  /** Every endpoint's health by index, copied at call time (the admin plane's view; never on the request path). */
  report(): readonly EndpointHealth[] {
    const { usable } = this.#snapshot;
    return Object.freeze(
      this.up.map((up, i) =>
        Object.freeze({ up, usable: usable[i] !== false, ejectedUntil: this.ejectedUntil[i], timesEjected: this.timesEjected[i], lastProbe: this.lastProbe[i], rttMs: this.rttMs[i] }),
      ),
    );
  }

  ejectedCount(): number {
    let count = 0;
    for (const until of this.ejectedUntil) if (until !== 0) count++;
    return count;
  }

  #changed(change: HealthChange): void {
    this.#snapshot = this.#build(this.#snapshot.version + 1);
    for (const listener of this.#listeners) listener(change, this.#snapshot);
  }

  #build(version: number): HealthSnapshot {
    const usable = this.up.map((up, i) => up && this.ejectedUntil[i] === 0);
    return Object.freeze({ version, usable: Object.freeze(usable), rttMs: Object.freeze([...this.rttMs]) });
  }
}
