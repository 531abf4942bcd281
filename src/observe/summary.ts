// Recent traffic for the dashboard and /status: per-zone counts, rate and latency over the last seconds, traffic by
// client country, the last failovers and misroutes. The main thread's reader of the shared traffic tables that the
// recorders fill: a snapshot is computed from them when asked for.
import type { Topology } from '../config/types.ts';
import type { MeridianRuntime } from '../main.ts';
import { countryTraffic, COUNTRY_CODES, type CountryTraffic } from './country-traffic.ts';
import type { RecentFailover } from './failover-log.ts';
import { CODE_5XX, CODES, METHODS, NONE } from './labels.ts';
import { MISROUTE_REASONS, type MisrouteReason } from '../routing/types.ts';
import { MISROUTE_KM_BUCKETS, MISROUTE_KM_WIDTH, NONE_SLOT, STEPS_PER_OCTAVE, SUMMARY_BUCKETS, SUMMARY_WINDOW_SECONDS, type TrafficCatalog, type TrafficTables } from './traffic-tables.ts';

/** Seconds are counted on the records' clock: epoch milliseconds that only move forward (timeOrigin + performance.now()). */
const TIME_ORIGIN = performance.timeOrigin;
const clock = (): number => TIME_ORIGIN + performance.now();

export interface ZoneTraffic {
  /** `none` for requests no endpoint served (refused before routing, or no candidate). */
  readonly region: string;
  readonly zone: string;
  /** Since start (of this zone in this process). */
  readonly requests: number;
  /** Since start: responses with status ≥ 500 and requests that got no complete response. */
  readonly errors: number;
  /** Requests per second over the window. */
  readonly rps: number;
  /** errors / requests over the window; 0 when idle. */
  readonly errorRatio: number;
  /** Whole-request latency over the window, in ms; null when idle. */
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
}

export interface TrafficSummary {
  readonly windowSeconds: number;
  /** Every zone of the current topology in config order, then `none/none` once it has seen a request. */
  readonly zones: readonly ZoneTraffic[];
  /** Every client country located since start, busiest over the window first. */
  readonly countries: readonly CountryTraffic[];
  /** The last failovers, newest first. */
  readonly failovers: readonly RecentFailover[];
  /** Since start: requests that another region was nearer for, by that region. */
  readonly misroutes: Readonly<Record<string, number>>;
  /** Since start, requests and tunnels: what misroutes cost, by the rule in routing/geo-router.ts (misrouteCost). */
  readonly misrouteCost: MisrouteCostSummary;
}

export interface MisrouteCostSummary {
  /** Every reason, with its count and the sum of its extra distances in km. */
  readonly byReason: Readonly<Record<MisrouteReason, { readonly count: number; readonly extraKm: number }>>;
  /** All reasons together, per extra-distance bucket (non-cumulative); `leKm` null is the one beyond the last bound. */
  readonly buckets: readonly { readonly leKm: number | null; readonly count: number }[];
}

export interface TrafficSummarizer {
  snapshot(): TrafficSummary;
}

export function startTrafficSummary(runtime: Pick<MeridianRuntime, 'plane'>, tables: TrafficCatalog): TrafficSummarizer {
  const startedAt = clock();
  return {
    snapshot() {
      const nowSecond = Math.floor(clock() / 1000);
      // Young processes divide by the whole seconds they have lived, not by the full window.
      const seconds = Math.max(1, Math.min(SUMMARY_WINDOW_SECONDS, nowSecond - Math.floor(startedAt / 1000)));
      return summarize(tables, runtime.plane().config.topology, nowSecond, seconds);
    },
  };
}

/** One generation's ring slots of the window, copied out. */
interface WindowSlots {
  readonly tables: TrafficTables;
  readonly copies: readonly Int32Array[];
}

/**
 * The summary over the `SUMMARY_WINDOW_SECONDS` whole seconds before `nowSecond`, rates divided by `seconds`. Every
 * generation of tables adds to it: names keep their slot from one generation to the next.
 */
export function summarize(catalog: TrafficCatalog, topology: Topology, nowSecond: number, seconds: number): TrafficSummary {
  const windows: WindowSlots[] = catalog.generations.map((tables) => {
    const copies: Int32Array[] = [];
    for (let second = nowSecond - SUMMARY_WINDOW_SECONDS; second < nowSecond; second++) {
      const copy = tables.ring.read(second);
      if (copy !== null) copies.push(copy);
    }
    return { tables, copies };
  });
  const newest = catalog.newest;
  const zones = topology.regions.flatMap((region) => region.zones.map((zone) => zoneTraffic(windows, region.name, zone.name, newest.zoneSlot(region.name, zone.name), seconds)));
  const none = zoneTraffic(windows, NONE, NONE, NONE_SLOT, seconds);
  if (none.requests > 0) zones.push(none);
  return {
    windowSeconds: SUMMARY_WINDOW_SECONDS,
    zones,
    countries: countries(windows, newest, seconds),
    failovers: catalog.failoverLog.recent(),
    misroutes: misroutes(windows),
    misrouteCost: misrouteCost(catalog.generations),
  };
}

/** `slot` is -1 for a zone no recorder has counted in yet. */
function zoneTraffic(windows: readonly WindowSlots[], region: string, zone: string, slot: number, seconds: number): ZoneTraffic {
  let requests = 0;
  let errors = 0;
  let windowRequests = 0;
  let windowErrors = 0;
  const buckets = new Float64Array(SUMMARY_BUCKETS);
  const perZone = METHODS.length * CODES.length;
  for (const { tables, copies } of windows) {
    if (slot < 0 || slot >= tables.layout.zones.length) continue;
    const first = tables.requestsAt + slot * perZone;
    for (let cell = 0; cell < perZone; cell++) {
      const count = tables.total(first + cell);
      requests += count;
      if (cell % CODES.length >= CODE_5XX) errors += count;
    }
    for (const copy of copies) {
      windowErrors += copy[tables.failedAt + slot];
      for (let b = 0; b < SUMMARY_BUCKETS; b++) buckets[b] += copy[slot * SUMMARY_BUCKETS + b];
    }
  }
  for (let b = 0; b < SUMMARY_BUCKETS; b++) windowRequests += buckets[b];
  return {
    region,
    zone,
    requests,
    errors,
    rps: windowRequests / seconds,
    errorRatio: windowRequests === 0 ? 0 : windowErrors / windowRequests,
    p50Ms: percentile(buckets, windowRequests, 0.5),
    p99Ms: percentile(buckets, windowRequests, 0.99),
  };
}

/** The geometric middle of the bucket holding the rank, in ms. */
function percentile(buckets: Float64Array, total: number, p: number): number | null {
  if (total === 0) return null;
  const rank = Math.ceil(total * p);
  let seen = 0;
  for (let b = 0; b < buckets.length; b++) {
    seen += buckets[b];
    if (seen >= rank) return b === 0 ? 0.001 : 2 ** ((b - 0.5) / STEPS_PER_OCTAVE) / 1000;
  }
  return null;
}

/** Regions keep their column from one generation to the next, so the newest names every column. */
function countries(windows: readonly WindowSlots[], newest: TrafficTables, seconds: number): CountryTraffic[] {
  const width = newest.columns;
  const requests = new Float64Array(COUNTRY_CODES.length);
  const window = new Float64Array(COUNTRY_CODES.length * width);
  for (const { tables, copies } of windows) {
    for (let country = 0; country < COUNTRY_CODES.length; country++) requests[country] += tables.total(tables.countriesAt + country);
    for (const copy of copies) {
      for (let country = 0; country < COUNTRY_CODES.length; country++) {
        const from = tables.countryCellsAt + country * tables.columns;
        for (let column = 0; column < tables.columns; column++) window[country * width + column] += copy[from + column];
      }
    }
  }
  return countryTraffic(requests, window, [NONE, ...newest.layout.regions], seconds);
}

/** Requests, not tunnels, as the dashboard has always shown them; the exporter counts both. */
function misroutes(windows: readonly WindowSlots[]): Record<string, number> {
  const byRegion: Record<string, number> = {};
  for (const { tables } of windows) {
    tables.layout.regions.forEach((region, index) => {
      const count = tables.total(tables.misroutesAt + index);
      if (count > 0) byRegion[region] = (byRegion[region] ?? 0) + count;
    });
  }
  return byRegion;
}

function misrouteCost(generations: readonly TrafficTables[]): MisrouteCostSummary {
  const counts = new Float64Array(MISROUTE_KM_WIDTH);
  const byReason = Object.fromEntries(MISROUTE_REASONS.map((reason) => [reason, { count: 0, extraKm: 0 }])) as Record<MisrouteReason, { count: number; extraKm: number }>;
  for (const tables of generations) {
    MISROUTE_REASONS.forEach((reason, r) => {
      for (let b = 0; b < MISROUTE_KM_WIDTH; b++) {
        const count = tables.total(tables.misrouteKmAt + r * MISROUTE_KM_WIDTH + b);
        counts[b] += count;
        byReason[reason].count += count;
      }
      byReason[reason].extraKm += tables.total(tables.misrouteKmSumsAt + r);
    });
  }
  return { byReason, buckets: Array.from(counts, (count, b) => ({ leKm: b < MISROUTE_KM_BUCKETS.length ? MISROUTE_KM_BUCKETS[b] : null, count })) };
}
