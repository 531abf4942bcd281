// The contract between the data plane and whatever orders candidates for a request.
import type { Endpoint, Fence } from '../config/types.ts';
import type { GeoLocation } from '../geo/database.ts';
import type { CostTerms, RegionLatency } from './latency-cost.ts';

/** What the data plane knows about a request when it asks for candidates. */
export interface RouteFacts {
  readonly clientIp: string;
  readonly host: string | undefined;
  readonly location: GeoLocation | null;
  /** Appwrite project id from `X-Appwrite-Project` or the `project` query parameter. */
  readonly project: string | undefined;
  /** The region a chunked upload is pinned to, when the data plane has one for this request. */
  readonly pinnedRegion: string | undefined;
}

/** One region in the order it would be tried, with what explain shows about it. */
export interface RegionChoice {
  readonly region: string;
  /** Great-circle distance from the client, or null when the location is unknown. */
  readonly distanceKm: number | null;
  /** False for regions outside a preferred fence, tried only after the allowed ones. */
  readonly allowed: boolean;
  /** Latency order: the region's cost term by term (src/routing/latency-cost.ts); null in distance order. */
  readonly cost: CostTerms | null;
  /** Latency order: what the cost's measured terms were made from; null in distance order. */
  readonly latency: RegionLatency | null;
}

/**
 * Why the first candidate is where it is, as a bounded token (the `reason` field says it in words): the home region's
 * rule (`nearest`, `local-preference`, `unknown-location`, `fence` when a fence kept the client from its nearest
 * region, `latency` when latency order moved the client's area away from the region distance picks, `affinity-project`, `affinity-host`, `upload-pin`), or what health made of it (`failover`: every endpoint of
 * the home region is down and another region comes first; `panic`: nothing healthy, all tried), or `none`: nothing to
 * route to (no region allowed, a strict fence's regions all down, or a request answered before routing).
 */
export type RouteCode =
  | 'nearest'
  | 'local-preference'
  | 'unknown-location'
  | 'fence'
  | 'latency'
  | 'affinity-project'
  | 'affinity-host'
  | 'upload-pin'
  | 'failover'
  | 'panic'
  | 'none';

export interface RouteDecision {
  /** Usable endpoints in the order they would be tried, zone after zone (explain shows this). */
  readonly candidates: readonly Endpoint[];
  /** The same endpoints grouped by zone: the data plane picks inside a zone by load, then moves to the next. */
  readonly tiers: readonly (readonly Endpoint[])[];
  /** True when nothing was healthy and every endpoint of the allowed set is tried anyway. */
  readonly panic: boolean;
  readonly regions: readonly RegionChoice[];
  readonly home: string | null;
  readonly reason: string;
  readonly code: RouteCode;
  readonly fence: Fence | null;
  /** The nearest allowed region when it is not this one by more than `localPreferenceKm` (GeoDNS sent the client wrong). */
  readonly misrouteNearest: string | null;
  /**
   * What serving this client from each endpoint would cost as a misroute (see MisrouteCost); null when no endpoint can
   * be one (location unknown, or the client is near everything it can reach). Left out by decisions made before routing.
   */
  readonly misrouteCost?: MisrouteCost | null;
  /** Latency order, no affinity: the client area and home set the hysteresis keeps a home for (src/routing/area-homes.ts). */
  readonly area?: { readonly set: number; readonly area: number } | null;
}

/** Why a request was served farther than its nearest region: bounded label values, in the order counters index them. */
export const MISROUTE_REASONS = Object.freeze(['geodns', 'failover', 'fence', 'affinity'] as const);
export type MisrouteReason = (typeof MISROUTE_REASONS)[number];

/**
 * Per endpoint (by `Endpoint.index`) of the decision's topology: the misroute reason's index in MISROUTE_REASONS, or -1
 * when serving from that endpoint is no misroute, and the extra distance in km (0 when none). Worked out once per
 * memoized decision, so a finished request only reads two array slots.
 */
export interface MisrouteCost {
  readonly reasons: Int8Array;
  readonly extraKm: Float64Array;
}

export interface Router {
  route(facts: RouteFacts): RouteDecision;
}
