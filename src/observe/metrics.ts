// Prometheus metrics (names listed in the README: Admin API and observability), the only prom-client importer, on the
// main thread. Recorders count records into shared tables (recorder.ts); a scrape reads what they counted since the
// last one into prom-client, so a request costs no label hashing or allocation on any thread.
import diagnostics from 'node:diagnostics_channel';
import { basename } from 'node:path';
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric, type RegistryContentType } from 'prom-client';
import type { Endpoint, Topology } from '../config/types.ts';
import type { MeridianRuntime } from '../main.ts';
import type { CheckEvent } from '../health/checker.ts';
import type { HealthChange } from '../health/state.ts';
import type { GeoOutcome } from '../geo/locator.ts';
import { healthChange, healthCheck } from '../health/events.ts';
import { CHECK_RESULTS, CODES, METHODS, RETRY_REASONS, endpointLabels } from './labels.ts';
import type { TrafficCatalog, TrafficTables } from './traffic-tables.ts';
import { ZoneHistogram } from './zone-histogram.ts';
import { STAT } from './thread-stats.ts';

export const REQUESTS_TOTAL = 'meridian_requests_total';
export const REQUEST_DURATION_SECONDS = 'meridian_request_duration_seconds';
export const UPSTREAM_RESPONSE_SECONDS = 'meridian_upstream_response_seconds';
export const ENDPOINT_UP = 'meridian_endpoint_up';
export const HEALTH_CHECKS_TOTAL = 'meridian_health_checks_total';
export const RETRIES_TOTAL = 'meridian_retries_total';
export const FAILOVERS_TOTAL = 'meridian_failovers_total';
export const EJECTIONS_TOTAL = 'meridian_ejections_total';
export const GEO_LOOKUPS_TOTAL = 'meridian_geo_lookups_total';
export const MISROUTES_TOTAL = 'meridian_misroutes_total';
export const OPEN_CONNECTIONS = 'meridian_open_connections';
export const GEO_DATABASE_BUILD_TIMESTAMP_SECONDS = 'meridian_geo_database_build_timestamp_seconds';
export const CONFIG_RELOADS_TOTAL = 'meridian_config_reloads_total';
export const WORKER_RESTARTS_TOTAL = 'meridian_worker_restarts_total';
export const UPLOAD_CHUNK_RETRIES_TOTAL = 'meridian_upload_chunk_retries_total';

/**
 * prom-client's gauges that end in `_total`, which `promtool check metrics` rejects; each is the sum of a labelled
 * gauge that stays (`nodejs_active_handles{type}` and so on), so nothing is lost.
 */
const DEFAULT_METRICS_DROPPED = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];
const GEO_OUTCOMES: readonly GeoOutcome[] = ['hit', 'miss', 'private', 'error'];

/** What the exporter reads from the runtime at scrape time. */
export type MetricsSource = Pick<MeridianRuntime, 'stats' | 'locator' | 'plane' | 'health'>;

export interface Scrape {
  readonly contentType: string;
  readonly body: string;
}

export interface MetricsExporter {
  /** The exposition for a scraper's Accept header: OpenMetrics when it asks for it, else Prometheus text 0.0.4. */
  scrape(accept?: string): Promise<Scrape>;
  /** Counts a config reload attempt (`result` is `success` or `failure`). */
  recordReload(ok: boolean): void;
  /** Counts a data-plane worker replaced after it crashed or stopped answering. */
  recordWorkerRestart(): void;
  /** Stops listening to events; the registry stays readable. */
  close(): void;
}

/** `tables` holds what the recorders count: requests, latencies, failovers, retries and misroutes. */
export function startMetrics(runtime: MetricsSource, tables: TrafficCatalog): MetricsExporter {
  return new PrometheusExporter(runtime, tables);
}

/** OpenMetrics when the scraper ranks it at least as high as plain text; Prometheus itself asks for it first. */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  if (!accept) return false;
  let openMetrics = 0;
  let text = 0;
  for (const range of accept.split(',')) {
    const [type, ...params] = range.split(';').map((part) => part.trim().toLowerCase());
    let q = 1;
    for (const param of params) if (param.startsWith('q=')) q = Number(param.slice(2)) || 0;
    if (type === 'application/openmetrics-text') openMetrics = Math.max(openMetrics, q);
    else if (type === 'text/plain' || type === 'text/*' || type === '*/*') text = Math.max(text, q);
  }
  return openMetrics > 0 && openMetrics >= text;
}

class PrometheusExporter implements MetricsExporter {
  readonly #runtime: MetricsSource;
  readonly #tables: TrafficCatalog;
  readonly #registry = new Registry<RegistryContentType>();
  readonly #requests: Counter<'region' | 'zone' | 'method' | 'code'>;
  readonly #duration: ZoneHistogram;
  readonly #upstream: ZoneHistogram;
  readonly #healthChecks: Counter<'region' | 'zone' | 'endpoint' | 'result'>;
  readonly #retries: Counter<'reason'>;
  readonly #failovers: Counter<'from_region' | 'to_region'>;
  readonly #ejections: Counter<'region' | 'zone' | 'endpoint'>;
  readonly #misroutes: Counter<'nearest_region'>;
  readonly #reloads: Counter<'result'>;
  readonly #workerRestarts: Counter;
  /** Per generation of tables: the totals up to the last scrape, so each scrape adds what came since. */
  readonly #seen = new Map<TrafficTables, Float64Array>();
  #zeroedFor: Topology | null = null;
  /** prom-client renames counters for OpenMetrics and never renames them back; these are the names to restore. */
  readonly #counterNames: [Metric, string][];
  #rendering: Promise<unknown> = Promise.resolve();
  readonly #subscriptions: [string, (message: unknown) => void][];

  constructor(runtime: MetricsSource, tables: TrafficCatalog) {
    this.#runtime = runtime;
    this.#tables = tables;
    const registers = [this.#registry];
    collectDefaultMetrics({ register: this.#registry });
    for (const name of DEFAULT_METRICS_DROPPED) this.#registry.removeSingleMetric(name);
    this.#requests = new Counter({
      name: REQUESTS_TOTAL,
      help: 'Downstream requests by the zone whose endpoint served them, method and status class (error: no complete response).',
      labelNames: ['region', 'zone', 'method', 'code'],
      registers,
    });
    this.#duration = new ZoneHistogram(REQUEST_DURATION_SECONDS, 'Whole downstream request time, by the zone whose endpoint served it.');
    this.#upstream = new ZoneHistogram(UPSTREAM_RESPONSE_SECONDS, 'Time from dispatch to the upstream response headers, by zone.');
    // The Registry's typings name only prom-client's own classes; it reads nothing but the shape ZoneHistogram has.
    this.#registry.registerMetric(this.#duration as unknown as Metric);
    this.#registry.registerMetric(this.#upstream as unknown as Metric);
    new Gauge({
      name: ENDPOINT_UP,
      help: '1 when the endpoint takes traffic: up by the active checks and not ejected.',
      labelNames: ['region', 'zone', 'endpoint'],
      registers,
      collect() {
        this.reset();
        const { endpoints } = runtime.plane().config.topology;
        const { usable } = runtime.health().snapshot;
        for (const endpoint of endpoints) this.set(endpointLabels(endpoint).base, usable[endpoint.index] === false ? 0 : 1);
      },
    });
    this.#healthChecks = new Counter({
      name: HEALTH_CHECKS_TOTAL,
      help: 'Active health check results by endpoint.',
      labelNames: ['region', 'zone', 'endpoint', 'result'],
      registers,
    });
    this.#retries = new Counter({ name: RETRIES_TOTAL, help: 'Requests sent to another candidate, by the failure that caused it.', labelNames: ['reason'], registers });
    for (const reason of RETRY_REASONS) this.#retries.inc({ reason }, 0);
    this.#failovers = new Counter({
      name: FAILOVERS_TOTAL,
      help: 'Requests moved from an endpoint in one region to an endpoint in another (or the same) region.',
      labelNames: ['from_region', 'to_region'],
      registers,
    });
    this.#ejections = new Counter({ name: EJECTIONS_TOTAL, help: 'Passive outlier ejections by endpoint.', labelNames: ['region', 'zone', 'endpoint'], registers });
    const exported: Record<GeoOutcome, number> = { hit: 0, miss: 0, private: 0, error: 0 };
    const geoLookups = new Counter({
      name: GEO_LOOKUPS_TOTAL,
      help: 'Client IP geolocation lookups by outcome, cached answers included.',
      labelNames: ['result'],
      registers,
      // Each data-plane thread keeps plain numbers in its stats row; the counter catches up with their sum here.
      collect() {
        const counts = runtime.stats.geoLookups();
        for (const result of GEO_OUTCOMES) {
          const delta = counts[result] - exported[result];
          if (delta > 0) this.inc({ result }, delta);
          exported[result] = counts[result];
        }
      },
    });
    for (const result of GEO_OUTCOMES) geoLookups.inc({ result }, 0);
    this.#misroutes = new Counter({
      name: MISROUTES_TOTAL,
      help: 'Requests that reached this instance although another region was nearer by more than localPreferenceKm (GeoDNS quality).',
      labelNames: ['nearest_region'],
      registers,
    });
    new Gauge({
      name: OPEN_CONNECTIONS,
      help: 'Open downstream connections: HTTP keep-alive connections and WebSocket tunnels.',
      labelNames: ['kind'],
      registers,
      collect() {
        this.set({ kind: 'http' }, runtime.stats.total(STAT.connections));
        this.set({ kind: 'websocket' }, runtime.stats.total(STAT.websockets));
      },
    });
    new Gauge({
      name: GEO_DATABASE_BUILD_TIMESTAMP_SECONDS,
      help: 'Build time of each geo database in use, by file name.',
      labelNames: ['database'],
      registers,
      collect() {
        this.reset();
        for (const database of runtime.locator.databases) this.set({ database: basename(database.path) }, database.buildEpoch.getTime() / 1000);
      },
    });
    this.#reloads = new Counter({ name: CONFIG_RELOADS_TOTAL, help: 'Config reload attempts by result.', labelNames: ['result'], registers });
    this.#reloads.inc({ result: 'success' }, 0);
    this.#reloads.inc({ result: 'failure' }, 0);
    const chunkResults = [
      ['retried', STAT.chunkRetried],
      ['not_held', STAT.chunkNotHeld],
      ['discovered', STAT.chunkDiscovered],
    ] as const;
    const chunksExported = { retried: 0, not_held: 0, discovered: 0 };
    new Counter({
      name: UPLOAD_CHUNK_RETRIES_TOTAL,
      help: 'Upload chunks sent again in their region after a failure (retried), chunks that streamed without being held because the chunk-retry memory was full (not_held), and chunks of an upload unknown here that another region accepted after a 404 (discovered).',
      labelNames: ['result'],
      registers,
      collect() {
        for (const [result, stat] of chunkResults) {
          const total = runtime.stats.total(stat);
          this.inc({ result }, total - chunksExported[result]);
          chunksExported[result] = total;
        }
      },
    });
    this.#workerRestarts = new Counter({ name: WORKER_RESTARTS_TOTAL, help: 'Data-plane worker threads replaced after they crashed or stopped answering.', registers });

    this.#counterNames = this.#registry
      .getMetricsAsArray()
      .filter((metric) => metric instanceof Counter)
      .map((metric) => [metric as unknown as Metric, metric.name]);
    this.#zeroFor(runtime.plane().config.topology);
    this.#subscriptions = [
      [healthCheck.name as string, this.#onCheck],
      [healthChange.name as string, this.#onHealthChange],
    ];
    for (const [name, listener] of this.#subscriptions) diagnostics.subscribe(name, listener);
  }

  scrape(accept?: string): Promise<Scrape> {
    // One render at a time: the format is registry state, and OpenMetrics renames counters while it renders.
    const render = this.#rendering.then(() => this.#render(wantsOpenMetrics(accept)));
    this.#rendering = render.catch(() => undefined);
    return render;
  }

  recordReload(ok: boolean): void {
    this.#reloads.inc({ result: ok ? 'success' : 'failure' });
  }

  recordWorkerRestart(): void {
    this.#workerRestarts.inc();
  }

  close(): void {
    for (const [name, listener] of this.#subscriptions) diagnostics.unsubscribe(name, listener);
  }

  async #render(openMetrics: boolean): Promise<Scrape> {
    this.#catchUp();
    const registry = this.#registry;
    if (!openMetrics) return { contentType: registry.contentType, body: await registry.metrics() };
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    try {
      return { contentType: registry.contentType, body: await registry.metrics() };
    } finally {
      registry.setContentType(Registry.PROMETHEUS_CONTENT_TYPE);
      for (const [metric, name] of this.#counterNames) (metric as unknown as { name: string }).name = name;
    }
  }

  /** Every endpoint's counters exist from the start, so `increase()` sees the first ejection of each. */
  #zeroFor(topology: Topology): void {
    if (topology === this.#zeroedFor) return;
    this.#zeroedFor = topology;
    for (const endpoint of topology.endpoints) {
      const labels = endpointLabels(endpoint);
      this.#ejections.inc(labels.base, 0);
      for (const result of CHECK_RESULTS) this.#healthChecks.inc(labels.checks[result], 0);
    }
  }

  /** Adds to prom-client what every generation of tables counted since the last scrape. */
  #catchUp(): void {
    this.#zeroFor(this.#runtime.plane().config.topology);
    for (const tables of this.#tables.generations) {
      const delta = this.#deltaOf(tables);
      const { zones, regions } = tables.layout;
      const perZone = METHODS.length * CODES.length;
      for (let cell = 0; cell < perZone * zones.length; cell++) {
        const count = delta[tables.requestsAt + cell];
        if (count === 0) continue;
        const { region, zone } = zones[(cell / perZone) | 0];
        this.#requests.inc({ region, zone, method: METHODS[((cell / CODES.length) | 0) % METHODS.length], code: CODES[cell % CODES.length] }, count);
      }
      this.#duration.add(zones, delta, tables.durationAt, tables.durationSumsAt);
      this.#upstream.add(zones, delta, tables.upstreamAt, tables.upstreamSumsAt);
      for (let cell = 0; cell < regions.length * regions.length; cell++) {
        const count = delta[tables.failoversAt + cell];
        if (count !== 0) this.#failovers.inc({ from_region: regions[(cell / regions.length) | 0], to_region: regions[cell % regions.length] }, count);
      }
      for (let region = 0; region < regions.length; region++) {
        const count = delta[tables.misroutesAt + region] + delta[tables.tunnelMisroutesAt + region];
        if (count !== 0) this.#misroutes.inc({ nearest_region: regions[region] }, count);
      }
      for (let reason = 0; reason < RETRY_REASONS.length; reason++) {
        const count = delta[tables.retriesAt + reason];
        if (count !== 0) this.#retries.inc({ reason: RETRY_REASONS[reason] }, count);
      }
    }
  }

  /** The totals before the country table, less what the last scrape saw of them. */
  #deltaOf(tables: TrafficTables): Float64Array {
    const length = tables.countriesAt;
    let seen = this.#seen.get(tables);
    if (seen === undefined) {
      seen = new Float64Array(length);
      this.#seen.set(tables, seen);
    }
    const delta = new Float64Array(length);
    for (let i = 0; i < length; i++) {
      const total = tables.total(i);
      delta[i] = total - seen[i];
      seen[i] = total;
    }
    return delta;
  }

  readonly #onCheck = (message: unknown): void => {
    const { endpoint, result } = message as CheckEvent;
    this.#healthChecks.inc(endpointLabels(endpoint).checks[result]);
  };

  readonly #onHealthChange = (message: unknown): void => {
    const { change, endpoint } = message as { change: HealthChange; endpoint: Endpoint };
    if (change.kind === 'ejected') this.#ejections.inc(endpointLabels(endpoint).base);
  };
}
