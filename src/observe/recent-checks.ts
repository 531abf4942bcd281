// The durations of each region's latest health checks, for the dashboard: a small ring per region, so /status can
// give a live median and p99 where the Prometheus histogram only has totals since start.

/** Probes kept per region: with a 5 s interval and a few endpoints, the last minute or two. */
export const RECENT_CHECKS = 64;

export interface CheckDurations {
  /** Probes the figures cover: the region's latest, up to RECENT_CHECKS. */
  readonly count: number;
  /** Nearest-rank percentiles of their durations, or null before the first probe. */
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
}

interface Ring {
  readonly durations: Float64Array;
  /** Probes recorded ever; the next one goes at `recorded % RECENT_CHECKS`. */
  recorded: number;
}

export class RecentChecks {
  // Keyed by region name, so a reload that keeps a region keeps its history; bounded by the names configs ever used.
  readonly #rings = new Map<string, Ring>();

  record(region: string, durationMs: number): void {
    let ring = this.#rings.get(region);
    if (ring === undefined) {
      ring = { durations: new Float64Array(RECENT_CHECKS), recorded: 0 };
      this.#rings.set(region, ring);
    }
    ring.durations[ring.recorded % RECENT_CHECKS] = durationMs;
    ring.recorded++;
  }

  durations(region: string): CheckDurations {
    const ring = this.#rings.get(region);
    if (ring === undefined) return { count: 0, p50Ms: null, p99Ms: null };
    const count = Math.min(ring.recorded, RECENT_CHECKS);
    const sorted = ring.durations.slice(0, count).sort();
    const rank = (q: number): number => sorted[Math.max(0, Math.ceil(q * count) - 1)];
    return { count, p50Ms: rank(0.5), p99Ms: rank(0.99) };
  }
}
