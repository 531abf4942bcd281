// Orders candidates by geography (README: Routing): home region, its zones, then the other allowed regions.
// Decisions are memoized per cached location object and per affinity, so a warm request only does lookups.
import type { Endpoint, Fence, MeridianConfig, Region, Zone } from '../config/types.ts';
import type { HealthSnapshot } from '../health/state.ts';
import type { GeoLocation } from '../geo/database.ts';
import { greatCircleKm } from '../geo/distance.ts';
import { AREA_COUNT, areaOf, homeSetOf, MOVED, type PublishedHomes } from './area-homes.ts';
import { costTerms, UNMEASURED, type CostTerms, type RegionLatency } from './latency-cost.ts';
import { MISROUTE_REASONS, type MisrouteCost, type MisrouteReason, type RegionChoice, type RouteCode, type RouteDecision, type RouteFacts, type Router } from './types.ts';

type Affinity = { readonly kind: 'project' | 'host' | 'upload'; readonly key: string; readonly regions: readonly string[] };
/** One affinity key's decisions: for an unknown location, and per cached location object. */
type AffinityMemo = { unknown: RouteDecision | undefined; readonly byLocation: WeakMap<GeoLocation, RouteDecision> };

const AFFINITY_CODE: Readonly<Record<Affinity['kind'], RouteCode>> = Object.freeze({ project: 'affinity-project', host: 'affinity-host', upload: 'upload-pin' });

/** Health as `meridian route` assumes it: no endpoint known to be down, no RTT measured yet. */
export const ALL_HEALTHY: HealthSnapshot = Object.freeze({ version: 0, usable: [], rttMs: [] });

/**
 * A router for one config, one health snapshot and one publication of latency homes. `previous`, the router it
 * replaces, lends its memo when nothing a decision reads has changed: the same config and homes, and a health snapshot
 * that differs only in what no decision shows (an RTT that moved without reordering any region's zones). RTT drift
 * then costs no client a fresh decision.
 */
export function createGeoRouter(config: MeridianConfig, health: HealthSnapshot = ALL_HEALTHY, homes: PublishedHomes | null = null, previous: GeoRouter | null = null): GeoRouter {
  return new GeoRouter(config, health, homes, previous);
}

/** The memo of one router, handed on to its successor while decisions stay the same. */
interface Memo {
  readonly unknown: RouteDecision;
  readonly byLocation: WeakMap<GeoLocation, RouteDecision>;
  /** Affinity decisions by kind, then key (a project id or a region name: bounded by the config), then location. */
  readonly byAffinity: { readonly upload: Map<string, AffinityMemo>; readonly project: Map<string, AffinityMemo>; readonly host: Map<string, AffinityMemo> };
}

export class GeoRouter implements Router {
  readonly #config: MeridianConfig;
  readonly #health: HealthSnapshot;
  readonly #homes: PublishedHomes | null;
  readonly #memo: Memo;
  readonly #hasHostRules: boolean;

  constructor(config: MeridianConfig, health: HealthSnapshot, homes: PublishedHomes | null, previous: GeoRouter | null = null) {
    this.#config = config;
    this.#health = health;
    this.#homes = homes;
    this.#memo =
      previous !== null && previous.#config === config && previous.#homes?.version === homes?.version && sameDecisions(config, previous.#health, health)
        ? previous.#memo
        : { unknown: decide(config, null, null, health, homes), byLocation: new WeakMap(), byAffinity: { upload: new Map(), project: new Map(), host: new Map() } };
    this.#hasHostRules = config.routing.hostRegions.size > 0 || config.routing.hostSuffixRegions.length > 0;
  }

  route(facts: RouteFacts): RouteDecision {
    if (facts.pinnedRegion !== undefined) return this.#withAffinity(facts, 'upload', facts.pinnedRegion, [facts.pinnedRegion]);
    if (facts.project !== undefined) {
      const project = this.#config.routing.projects.get(facts.project);
      if (project !== undefined) return this.#withAffinity(facts, 'project', facts.project, project.regions);
    }
    if (this.#hasHostRules && facts.host !== undefined) {
      const region = hostRegion(this.#config, facts.host);
      if (region !== null) return this.#withAffinity(facts, 'host', region, [region]);
    }
    const location = facts.location;
    if (location === null) return this.#memo.unknown;
    let decision = this.#memo.byLocation.get(location);
    if (decision === undefined) {
      decision = decide(this.#config, location, null, this.#health, this.#homes);
      this.#memo.byLocation.set(location, decision);
    }
    return decision;
  }

  #withAffinity(facts: RouteFacts, kind: Affinity['kind'], key: string, regions: readonly string[]): RouteDecision {
    const byKey = this.#memo.byAffinity[kind];
    let memo = byKey.get(key);
    if (memo === undefined) byKey.set(key, (memo = { unknown: undefined, byLocation: new WeakMap() }));
    const location = facts.location;
    // Affinity fixes the home region; the client's location still picks its fence and orders the other regions.
    if (location === null) return (memo.unknown ??= decide(this.#config, null, { kind, key, regions }, this.#health, this.#homes));
    let decision = memo.byLocation.get(location);
    if (decision === undefined) {
      decision = decide(this.#config, location, { kind, key, regions }, this.#health, this.#homes);
      memo.byLocation.set(location, decision);
    }
    return decision;
  }
}

/**
 * Every decision under `b` equals its decision under `a`: decisions read health only through each region's zone order
 * and usable endpoints (zonesOf).
 */
function sameDecisions(config: MeridianConfig, a: HealthSnapshot, b: HealthSnapshot): boolean {
  if (a === b) return true;
  const { regions, self } = config.topology;
  for (const region of regions) {
    const before = zonesOf(region, self, a);
    const after = zonesOf(region, self, b);
    for (let z = 0; z < before.zones.length; z++) {
      if (before.zones[z] !== after.zones[z]) return false;
      const x = before.usable[z];
      const y = after.usable[z];
      if (x.length !== y.length || x.some((e, i) => e !== y[i])) return false;
    }
  }
  return true;
}

/** The region a host rule assigns, ignoring any `:port`; exact names win over `*.suffix` rules. */
export function hostRegion(config: MeridianConfig, host: string): string | null {
  const { hostRegions, hostSuffixRegions } = config.routing;
  const colon = host.lastIndexOf(':');
  const name = (colon > host.lastIndexOf(']') ? host.slice(0, colon) : host).toLowerCase();
  const exact = hostRegions.get(name);
  if (exact !== undefined) return exact;
  for (const [suffix, region] of hostSuffixRegions) if (name.endsWith(suffix)) return region;
  return null;
}

export function fenceFor(config: MeridianConfig, location: GeoLocation | null): Fence | null {
  if (location === null) return null;
  const { fenceByCountry, fenceByContinent } = config.routing;
  return (location.country !== null ? fenceByCountry.get(location.country) : undefined) ?? (location.continent !== null ? fenceByContinent.get(location.continent) : undefined) ?? null;
}

/** The full decision for one location and affinity: pure, and only run when not memoized. */
export function decide(
  config: MeridianConfig,
  location: GeoLocation | null,
  affinity: Affinity | null,
  health: HealthSnapshot = ALL_HEALTHY,
  published: PublishedHomes | null = null,
): RouteDecision {
  const { topology, routing } = config;
  const fence = fenceFor(config, location);
  const self = topology.self.region;
  // Without a client location, distances are measured from this instance's region.
  const origin: { lat: number; lon: number } = location ?? topology.regions.find((r) => r.name === self)!;
  const km = new Map(topology.regions.map((r) => [r.name, greatCircleKm(origin.lat, origin.lon, r.lat, r.lon)]));
  const byDistance = (a: Region, b: Region): number => km.get(a.name)! - km.get(b.name)!;
  // Latency order: every region's cost term by term; measurements only from homes published for this topology.
  const latencyOrder = routing.order === 'latency';
  const measured = published !== null && published.latency.length === topology.regions.length ? published : null;
  const costs = new Map<string, { terms: CostTerms; latency: RegionLatency } | null>(
    topology.regions.map((r, i) => {
      if (!latencyOrder) return [r.name, null];
      const latency = measured?.latency[i] ?? UNMEASURED;
      const { errorPenaltyMs } = routing.latency;
      return [r.name, { terms: costTerms(km.get(r.name)!, latency, r.name === self, routing.localPreferenceKm, errorPenaltyMs), latency }];
    }),
  );
  const byCost = latencyOrder ? (a: Region, b: Region): number => costs.get(a.name)!.terms.totalMs - costs.get(b.name)!.terms.totalMs || byDistance(a, b) : byDistance;

  const fenced = fence === null ? topology.regions : topology.regions.filter((r) => fence.regions.includes(r.name));
  // Affinity narrows the set to the regions that hold the data; a fence can only narrow it further.
  const affine = affinity === null ? topology.regions : affinity.regions.map((name) => topology.regions.find((r) => r.name === name)).filter((r) => r !== undefined);
  const allowed = affinity === null ? fenced : affine.filter((r) => fenced.includes(r));
  const nearest = [...allowed].sort(byDistance)[0];
  const local = allowed.find((r) => r.name === self);
  // Where distance alone puts the client: this region within `localPreferenceKm` of the nearest, else the nearest.
  const distanceHome = location === null ? (local ?? nearest) : local !== undefined && nearest !== undefined && km.get(self)! - km.get(nearest.name)! <= routing.localPreferenceKm ? local : nearest;

  let home: Region | undefined;
  let reason: string;
  let code: RouteCode;
  let area: RouteDecision['area'] = null;
  if (affinity !== null) {
    home = allowed[0];
    reason = home ? `${affinity.kind} affinity (${affinity.key}) → ${home.name}` : `${affinity.kind} affinity (${affinity.key}) has no region allowed here`;
    code = AFFINITY_CODE[affinity.kind];
  } else {
    home = distanceHome;
    let moved = false;
    if (latencyOrder && measured !== null && allowed.length > 0) {
      // The client's area has one home for every client in it and every worker: the one the hysteresis holds.
      area = { set: homeSetOf(config, fence), area: areaOf(origin.lat, origin.lon) };
      const held = measured.homes[area.set * AREA_COUNT + area.area];
      const region = topology.regions[held & ~MOVED];
      if (region !== undefined && allowed.includes(region)) {
        home = region;
        moved = (held & MOVED) !== 0;
      }
    }
    if (location === null) {
      reason = `location unknown → ${home === local ? 'local region' : 'nearest allowed region to this instance'} ${home?.name ?? '(none)'}`;
      code = 'unknown-location';
    } else if (home === undefined) {
      reason = 'no region allowed';
      code = 'nearest';
    } else if (home === local) {
      reason = local === nearest ? `nearest region ${self} (${Math.round(km.get(self)!)} km)` : `local preference: ${self} is within ${routing.localPreferenceKm} km of nearest ${nearest.name}`;
      code = local === nearest ? 'nearest' : 'local-preference';
    } else {
      reason = `nearest allowed region ${home.name} (${Math.round(km.get(home.name)!)} km)`;
      code = 'nearest';
    }
    if (moved && home !== undefined && distanceHome !== undefined && home !== distanceHome) {
      const cost = (r: Region): string => `${costs.get(r.name)!.terms.totalMs.toFixed(1)} ms`;
      reason = `latency: ${home.name} costs ${cost(home)}, ${distanceHome.name} (${location === null ? 'local' : 'nearer'}) ${cost(distanceHome)}`;
      code = 'latency';
    }
  }
  // `fence` only when the fence changed the home: the same rules without it would have picked another region.
  if (affinity === null && code !== 'latency' && fence !== null && home !== undefined && unfencedHome(topology.regions, self, km, routing.localPreferenceKm) !== home) code = 'fence';
  if (fence !== null) reason += `; fence ${fence.name} (${fence.mode}) allows ${fence.regions.join(', ')}`;

  const choice = (r: Region, isAllowed: boolean): RegionChoice => {
    const cost = costs.get(r.name)!;
    return { region: r.name, distanceKm: location ? km.get(r.name)! : null, allowed: isAllowed, cost: cost?.terms ?? null, latency: cost?.latency ?? null };
  };
  const ordered: Region[] = home ? [home] : [];
  for (const r of [...allowed].sort(byCost)) if (r !== home) ordered.push(r);
  const regions: RegionChoice[] = ordered.map((r) => choice(r, true));
  // A preferred fence spills to the rest of the world (or of the affinity's regions) only after every allowed region;
  // strict never does. An upload that spilled must keep reaching the region that holds it.
  if (fence?.mode === 'preferred') {
    for (const r of affine.filter((r) => !fenced.includes(r)).sort(byCost)) {
      ordered.push(r);
      regions.push(choice(r, false));
    }
  }

  const zones: Zone[] = [];
  let tiers: (readonly Endpoint[])[] = [];
  for (const r of ordered) {
    const order = zonesOf(r, topology.self, health);
    zones.push(...order.zones);
    for (const usable of order.usable) if (usable.length > 0) tiers.push(usable);
  }
  let panic = false;
  if (tiers.length === 0 && zones.length > 0) {
    // Panic, as Envoy does: with nothing healthy left, trying everyone beats refusing everyone. A strict fence
    // is the exception: its regions are a legal boundary, so it answers 503 naming itself instead.
    if (fence?.mode === 'strict') {
      reason += '; every endpoint the fence allows is down';
    } else {
      panic = true;
      tiers = zones.map((z) => z.endpoints);
      reason += '; panic: no healthy endpoint left, trying them all';
    }
  }
  const candidates = tiers.flat();
  if (home === undefined || tiers.length === 0) code = 'none';
  else if (panic) code = 'panic';
  else if (tiers[0][0].region !== home.name) code = 'failover';
  // The GeoDNS signal is about geography alone, so affinity does not count: only the fence narrows it.
  const geoNearest = affinity === null ? nearest : [...fenced].sort(byDistance)[0];
  const geoLocal = fenced.some((r) => r.name === self);
  const misroute =
    location !== null && geoNearest !== undefined && geoNearest.name !== self && (!geoLocal || km.get(self)! - km.get(geoNearest.name)! > routing.localPreferenceKm);
  return Object.freeze({
    candidates: Object.freeze(candidates),
    tiers: Object.freeze(tiers.map((t) => Object.freeze(t))),
    panic,
    regions: Object.freeze(regions),
    home: home?.name ?? null,
    reason,
    code,
    fence,
    misrouteNearest: misroute ? geoNearest.name : null,
    area,
    misrouteCost: location === null ? null : misrouteCost(topology.endpoints, self, km, home?.name ?? null, fence, affinity !== null, routing.localPreferenceKm),
  });
}

const REASON_INDEX = (reason: MisrouteReason): number => MISROUTE_REASONS.indexOf(reason);
const GEODNS = REASON_INDEX('geodns');
const FAILOVER = REASON_INDEX('failover');
const FENCE = REASON_INDEX('fence');
const AFFINITY = REASON_INDEX('affinity');

/**
 * What the misroute-cost metrics count, for a located client only. The nearest region is the nearest of ALL regions
 * by great-circle distance, allowed or not. Where the client was served is the farther from it of the two places its
 * request went: this instance's region (where GeoDNS sent it) and the region of the endpoint that answered (for a
 * tunnel, the one it connected to). extra km = distance(client, that place) − distance(client, nearest region), and
 * the request is a misroute only when extra km > localPreferenceKm, the same margin as the GeoDNS signal above.
 * The reason is the first that applies: `affinity` when a project or host affinity or an upload pin chose the home;
 * `fence` when the client's fence excludes its nearest region; `failover` when the endpoint is not in the home region
 * (the home's endpoints were down, ejected or failed over); otherwise `geodns`: GeoDNS sent the client to this
 * instance although its nearest region is elsewhere (the request then usually went on to that nearer region).
 * Null when no endpoint would be a misroute, so the common case costs the recorder one null check.
 */
function misrouteCost(
  endpoints: readonly Endpoint[],
  self: string,
  km: ReadonlyMap<string, number>,
  home: string | null,
  fence: Fence | null,
  affine: boolean,
  localPreferenceKm: number,
): MisrouteCost | null {
  let nearestKm = Infinity;
  let nearest = '';
  for (const [name, distance] of km) {
    if (distance < nearestKm) {
      nearestKm = distance;
      nearest = name;
    }
  }
  const reasons = new Int8Array(endpoints.length).fill(-1);
  const extraKm = new Float64Array(endpoints.length);
  const selfKm = km.get(self) ?? 0;
  const fenced = fence !== null && !fence.regions.includes(nearest);
  let any = false;
  for (const endpoint of endpoints) {
    const extra = Math.max(selfKm, km.get(endpoint.region) ?? 0) - nearestKm;
    if (!(extra > localPreferenceKm)) continue;
    any = true;
    extraKm[endpoint.index] = extra;
    reasons[endpoint.index] = affine ? AFFINITY : fenced ? FENCE : endpoint.region !== home ? FAILOVER : GEODNS;
  }
  return any ? { reasons, extraKm } : null;
}

/** The home a located client would get were no fence in the way: this region within `localPreferenceKm`, else the nearest. */
function unfencedHome(regions: readonly Region[], self: string, km: ReadonlyMap<string, number>, localPreferenceKm: number): Region | undefined {
  let nearest: Region | undefined;
  for (const r of regions) if (nearest === undefined || km.get(r.name)! < km.get(nearest.name)!) nearest = r;
  const local = regions.find((r) => r.name === self);
  return local !== undefined && nearest !== undefined && km.get(self)! - km.get(nearest.name)! <= localPreferenceKm ? local : nearest;
}

/** A region's zones in the order they are tried, and each zone's usable endpoints: the same for every client. */
interface ZoneOrder {
  readonly zones: readonly Zone[];
  readonly usable: readonly (readonly Endpoint[])[];
}

/** Zone orders per health snapshot and region, so every decision under one snapshot shares them. */
const zoneOrders = new WeakMap<HealthSnapshot, Map<Region, ZoneOrder>>();

function zonesOf(region: Region, self: { region: string; zone: string }, health: HealthSnapshot): ZoneOrder {
  let byRegion = zoneOrders.get(health);
  if (byRegion === undefined) zoneOrders.set(health, (byRegion = new Map()));
  let order = byRegion.get(region);
  if (order === undefined) {
    const zones = zonesInOrder(region, self, health);
    order = { zones, usable: zones.map((z) => Object.freeze(z.endpoints.filter((e) => health.usable[e.index] !== false))) };
    byRegion.set(region, order);
  }
  return order;
}

/**
 * The local zone first in the local region; the rest by measured round-trip time, then config order.
 * Probes from this instance measure exactly the path a request would take.
 */
function zonesInOrder(region: Region, self: { region: string; zone: string }, health: HealthSnapshot): readonly Zone[] {
  const rtt = (z: Zone): number => Math.min(...z.endpoints.map((e: Endpoint) => health.rttMs[e.index] ?? Infinity));
  const byRtt = [...region.zones].sort((a, b) => rtt(a) - rtt(b) || 0);
  if (region.name !== self.region) return byRtt;
  return [...byRtt.filter((z) => z.name === self.zone), ...byRtt.filter((z) => z.name !== self.zone)];
}
