// Recent traffic for the dashboard and /status: per-zone counts, rate and latency over the last seconds, traffic by
// client country, the last failovers and misroutes. Fed by data-plane records into per-second rings; a snapshot is
// computed when asked for.
import diagnostics from 'node:diagnostics_channel';
import type { Topology } from '../config/types.ts';
import type { MeridianRuntime } from '../main.ts';
import type { ExchangeRecord, FailoverRecord, RetryReason } from '../proxy/record.ts';
import { exchangeEnd, exchangeFailover } from '../proxy/events.ts';
import { CODE_5XX, codeIndex, indexTopology, NONE } from './labels.ts';
import { CountryTally, countryIndex, type CountryTraffic } from './country-traffic.ts';

/** Rates and percentiles cover this many whole seconds, the current partial second left out. */
export const SUMMARY_WINDOW_SECONDS = 10;
export const SUMMARY_FAILOVERS_KEPT = 20;
// One slot more than the window, so the second being filled never overwrites one being read.
const RING = SUMMARY_WINDOW_SECONDS + 1;
/** Latency buckets are quarter octaves of microseconds (±9 % around the reported value), up to 2^27 µs ≈ 134 s. */
const STEPS_PER_OCTAVE = 4;
const LATENCY_BUCKETS = 27 * STEPS_PER_OCTAVE + 1;

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

/** A failover as the dashboard lists it. */
export interface RecentFailover {
  /** Epoch ms. */
  readonly at: number;
  readonly from: { readonly region: string; readonly zone: string; readonly endpoint: string };
  readonly to: { readonly region: string; readonly zone: string; readonly endpoint: string };
  readonly reason: RetryReason;
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
}

export interface TrafficSummarizer {
  snapshot(): TrafficSummary;
  close(): void;
}

export function startTrafficSummary(runtime: Pick<MeridianRuntime, 'plane'>): TrafficSummarizer {
  return new Summarizer(runtime);
}

interface TopologyStats {
  readonly zones: readonly ZoneStats[];
  /** By endpoint index: the column of its region in the country tally. */
  readonly columns: Int32Array;
}

class ZoneStats {
  readonly region: string;
  readonly zone: string;
  requests = 0;
  errors = 0;
  /** Per ring slot: the second it holds, its requests and errors, and its latency buckets. */
  readonly second = new Float64Array(RING).fill(-1);
  readonly count = new Float64Array(RING);
  readonly failed = new Float64Array(RING);
  readonly latency = new Uint32Array(RING * LATENCY_BUCKETS);

  constructor(region: string, zone: string) {
    this.region = region;
    this.zone = zone;
  }

  record(second: number, ms: number, error: boolean): void {
    this.requests++;
    const slot = second % RING;
    if (this.second[slot] !== second) {
      this.second[slot] = second;
      this.count[slot] = 0;
      this.failed[slot] = 0;
      this.latency.fill(0, slot * LATENCY_BUCKETS, (slot + 1) * LATENCY_BUCKETS);
    }
    this.count[slot]++;
    if (error) {
      this.errors++;
      this.failed[slot]++;
    }
    const us = ms * 1000;
    const bucket = us <= 1 ? 0 : Math.min(LATENCY_BUCKETS - 1, Math.ceil(Math.log2(us) * STEPS_PER_OCTAVE));
    this.latency[slot * LATENCY_BUCKETS + bucket]++;
  }

  traffic(nowSecond: number, seconds: number): ZoneTraffic {
    let requests = 0;
    let errors = 0;
    const buckets = new Float64Array(LATENCY_BUCKETS);
    for (let slot = 0; slot < RING; slot++) {
      const second = this.second[slot];
      if (second >= nowSecond || second < nowSecond - SUMMARY_WINDOW_SECONDS) continue;
      requests += this.count[slot];
      errors += this.failed[slot];
      for (let b = 0; b < LATENCY_BUCKETS; b++) buckets[b] += this.latency[slot * LATENCY_BUCKETS + b];
    }
    return {
      region: this.region,
      zone: this.zone,
      requests: this.requests,
      errors: this.errors,
      rps: requests / seconds,
      errorRatio: requests === 0 ? 0 : errors / requests,
      p50Ms: percentile(buckets, requests, 0.5),
      p99Ms: percentile(buckets, requests, 0.99),
    };
  }
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

class Summarizer implements TrafficSummarizer {
  readonly #runtime: Pick<MeridianRuntime, 'plane'>;
  readonly #startedAt = clock();
  /** By `region/zone`, kept across reloads so a zone that stays keeps its history. */
  readonly #zones = new Map<string, ZoneStats>();
  /** Per topology: by endpoint index, the stats of its zone (the last entry is `none`) and its region's country column. */
  readonly #byTopology = new WeakMap<Topology, TopologyStats>();
  #topology: Topology | null = null;
  #stats: TopologyStats = { zones: [], columns: new Int32Array(0) };
  readonly #countries = new CountryTally(SUMMARY_WINDOW_SECONDS);
  readonly #failovers: RecentFailover[] = [];
  readonly #misroutes = new Map<string, number>();

  constructor(runtime: Pick<MeridianRuntime, 'plane'>) {
    this.#runtime = runtime;
    diagnostics.subscribe(exchangeEnd.name as string, this.#onExchangeEnd);
    diagnostics.subscribe(exchangeFailover.name as string, this.#onFailover);
  }

  close(): void {
    diagnostics.unsubscribe(exchangeEnd.name as string, this.#onExchangeEnd);
    diagnostics.unsubscribe(exchangeFailover.name as string, this.#onFailover);
  }

  snapshot(): TrafficSummary {
    const nowSecond = Math.floor(clock() / 1000);
    // Young processes divide by the whole seconds they have lived, not by the full window.
    const seconds = Math.max(1, Math.min(SUMMARY_WINDOW_SECONDS, nowSecond - Math.floor(this.#startedAt / 1000)));
    const index = indexTopology(this.#runtime.plane().config.topology);
    const zones = index.zones.map(({ region, zone }) => this.#zone(region, zone).traffic(nowSecond, seconds));
    if (zones.at(-1)!.requests === 0) zones.pop();
    return {
      windowSeconds: SUMMARY_WINDOW_SECONDS,
      zones,
      countries: this.#countries.snapshot(nowSecond, seconds),
      failovers: this.#failovers.toReversed(),
      misroutes: Object.fromEntries(this.#misroutes),
    };
  }

  #zone(region: string, zone: string): ZoneStats {
    const key = `${region}/${zone}`;
    let stats = this.#zones.get(key);
    if (stats === undefined) {
      stats = new ZoneStats(region, zone);
      this.#zones.set(key, stats);
    }
    return stats;
  }

  #statsOf(topology: Topology): TopologyStats {
    if (topology === this.#topology) return this.#stats;
    let stats = this.#byTopology.get(topology);
    if (stats === undefined) {
      const index = indexTopology(topology);
      const zones = index.zones.map(({ region, zone }) => this.#zone(region, zone));
      const regionColumns = this.#countries.columns(index.regions);
      stats = {
        zones: [...Array.from(index.zoneOf, (slot) => zones[slot]), this.#zone(NONE, NONE)],
        columns: Int32Array.from(index.regionOf, (region) => regionColumns[region]),
      };
      this.#byTopology.set(topology, stats);
    }
    this.#topology = topology;
    this.#stats = stats;
    return stats;
  }

  readonly #onExchangeEnd = (message: unknown): void => {
    const record = message as ExchangeRecord;
    const { zones, columns } = this.#statsOf(record.topology);
    const endpoint = record.endpoint;
    // The record's own end, so counting it needs no clock read.
    const second = Math.floor((record.startedAt + record.durationMs) / 1000);
    const zone = endpoint === null ? zones[zones.length - 1] : zones[endpoint.index];
    zone.record(second, record.durationMs, codeIndex(record) >= CODE_5XX);
    const country = countryIndex(record.country);
    // Column 0 is `none`: the request was located but no endpoint served it.
    if (country >= 0) this.#countries.record(second, country, endpoint === null ? 0 : columns[endpoint.index]);
    const nearest = record.misrouteNearest;
    if (nearest !== null) this.#misroutes.set(nearest, (this.#misroutes.get(nearest) ?? 0) + 1);
  };

  readonly #onFailover = (message: unknown): void => {
    const { from, to, reason } = message as FailoverRecord;
    if (this.#failovers.length === SUMMARY_FAILOVERS_KEPT) this.#failovers.shift();
    this.#failovers.push({
      at: Date.now(),
      from: { region: from.region, zone: from.zone, endpoint: from.origin },
      to: { region: to.region, zone: to.zone, endpoint: to.origin },
      reason,
    });
  };
}
