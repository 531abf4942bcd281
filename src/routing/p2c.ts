// Endpoint choice inside one zone: power of two choices on (in-flight + 1) × latency EWMA.
import type { Endpoint } from '../config/types.ts';

/**
 * Live load per endpoint index, owned by the data plane and read here. Other threads may be changing it while a
 * choice is made: a value one request stale only makes one choice slightly worse, so plain reads do.
 */
export interface EndpointLoad {
  readonly inflight: Int32Array;
  /** Smoothed time to response headers in µs; 0 until the first response. */
  readonly latencyUs: Int32Array;
}

/** Unknown latency counts as 1 ms so new endpoints compete on in-flight count alone. */
const UNKNOWN_LATENCY_US = 1000;

function score(load: EndpointLoad, index: number): number {
  const latency = load.latencyUs[index];
  return (load.inflight[index] + 1) * (latency > 0 ? latency : UNKNOWN_LATENCY_US);
}

/**
 * Position in `tier` of the endpoint to try, skipping positions whose bit is set in `tried`; -1 when none is left.
 * Two random untried endpoints are compared and the less loaded one wins: nearly as good as scanning all of them,
 * without every instance herding onto the same "best" endpoint.
 */
export function pickInZone(tier: readonly Endpoint[], tried: number, load: EndpointLoad, random: () => number): number {
  const n = tier.length;
  if (n === 1) return tried & 1 ? -1 : 0;
  let left = 0;
  for (let i = 0; i < n; i++) if (!(tried & (1 << i))) left++;
  if (left === 0) return -1;
  const aRank = Math.floor(random() * left);
  const a = nthUntried(tried, aRank);
  if (left === 1) return a;
  // A second, distinct rank: draw from the other left − 1 and step over the first.
  let bRank = Math.floor(random() * (left - 1));
  if (bRank >= aRank) bRank++;
  const b = nthUntried(tried, bRank);
  return score(load, tier[b].index) < score(load, tier[a].index) ? b : a;
}

function nthUntried(tried: number, rank: number): number {
  for (let i = 0; ; i++) {
    if (tried & (1 << i)) continue;
    if (rank-- === 0) return i;
  }
}
