// The cost of serving a client from a region, in milliseconds, term by term (README: Routing, latency order).
//
// distance   the client's great-circle distance to the region at fibre speed: what the client pays to reach it
//            (directly after a redirect or the next DNS answer, or through this instance's own path)
// slowness   how much slower the region answers this instance's probes now than at its best: the smoothed probe RTT
//            minus the lowest one seen lately. The path between this instance and the region is in both, so it
//            cancels out; counting the raw RTT would charge it twice (the distance term already covers geography)
//            and would keep every client GeoDNS sent here on this region, however far it lives from it.
// errors     the region's share of failed requests over the last seconds × `routing.latency.errorPenalty`
// local      minus `localPreferenceKm` at fibre speed for this instance's own region: the client already reached it
//
// With nothing measured, the cheapest region is exactly the one distance order picks.

/**
 * Great-circle km per ms of round trip: light in fibre covers ~200 km per ms one way. Real paths are longer than the
 * great circle, but every region's distance term is scaled alike, so the order only shifts against measured terms.
 */
export const KM_PER_MS = 100;

/** What this instance measures of one region; published by the control plane with every change. */
export interface RegionLatency {
  /** The smoothed probe RTT of the region's best usable endpoint, or null before the first passing probe. */
  readonly rttMs: number | null;
  /** The lowest smoothed RTT seen lately (src/control/region-latency.ts), or null with no RTT yet. */
  readonly floorMs: number | null;
  /** Failed requests ÷ requests over the last seconds; 0 without enough traffic to tell. */
  readonly errorRatio: number;
}

export const UNMEASURED: RegionLatency = Object.freeze({ rttMs: null, floorMs: null, errorRatio: 0 });

export interface CostTerms {
  readonly distanceMs: number;
  readonly slownessMs: number;
  readonly errorMs: number;
  /** ≤ 0: the local preference, on this instance's region only. */
  readonly localMs: number;
  readonly totalMs: number;
}

/** The measured part of a region's cost (slowness, errors, local bonus): the same for every client. */
export function measuredMs(latency: RegionLatency, local: boolean, localPreferenceKm: number, errorPenaltyMs: number): number {
  return slowness(latency) + latency.errorRatio * errorPenaltyMs - (local ? localPreferenceKm / KM_PER_MS : 0);
}

export function costTerms(distanceKm: number, latency: RegionLatency, local: boolean, localPreferenceKm: number, errorPenaltyMs: number): CostTerms {
  const distanceMs = distanceKm / KM_PER_MS;
  const slownessMs = slowness(latency);
  const errorMs = latency.errorRatio * errorPenaltyMs;
  const localMs = local ? -localPreferenceKm / KM_PER_MS : 0;
  return { distanceMs, slownessMs, errorMs, localMs, totalMs: distanceMs + slownessMs + errorMs + localMs };
}

function slowness({ rttMs, floorMs }: RegionLatency): number {
  return rttMs === null || floorMs === null ? 0 : Math.max(0, rttMs - floorMs);
}
