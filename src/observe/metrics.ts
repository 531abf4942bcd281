// Prometheus metrics (names listed in the README: Admin API and observability), the only prom-client importer, on the
// main thread. Recorders count records into shared tables (recorder.ts); a scrape reads what they counted since the
// last one into prom-client, so a request costs no label hashing or allocation on any thread.
import diagnostics from 'node:diagnostics_channel';
import { basename } from 'node:path';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type Metric, type RegistryContentType } from 'prom-client';
import type { Endpoint, Topology } from '../config/types.ts';
import type { MeridianRuntime } from '../main.ts';
import type { CheckEvent } from '../health/checker.ts';
import type { HealthChange } from '../health/state.ts';
import type { GeoOutcome } from '../geo/locator.ts';
import { healthChange, healthCheck } from '../health/events.ts';
import { CHECK_RESULTS, CODES, METHODS, RETRY_REASONS, endpointLabels } from './labels.ts';
import { MISROUTE_KM_BUCKETS, MISROUTE_KM_WIDTH, type TrafficCatalog, type TrafficTables } from './traffic-tables.ts';
import { MISROUTE_REASONS } from '../routing/types.ts';
import { ZoneHistogram } from './zone-histogram.ts';
import { STAT } from './thread-stats.ts';
import { LISTENER_STAT } from './listener-stats.ts';
import { EDGE_STAT, MAX_REDIRECT_REGIONS } from './edge-stats.ts';
import { RecentChecks, type CheckDurations } from './recent-checks.ts';
import { MAX_RATE_LIMIT_RULES } from '../config/defaults.ts';

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
export const MISROUTES_BY_REASON_TOTAL = 'meridian_misroutes_by_reason_total';
export const MISROUTE_EXTRA_DISTANCE_KM = 'meridian_misroute_extra_distance_km';
export const OPEN_CONNECTIONS = 'meridian_open_connections';
export const GEO_DATABASE_BUILD_TIMESTAMP_SECONDS = 'meridian_geo_database_build_timestamp_seconds';
export const CONFIG_RELOADS_TOTAL = 'meridian_config_reloads_total';
export const WORKER_RESTARTS_TOTAL = 'meridian_worker_restarts_total';
export const UPLOAD_CHUNK_RETRIES_TOTAL = 'meridian_upload_chunk_retries_total';
export const TLS_HANDSHAKES_TOTAL = 'meridian_tls_handshakes_total';
export const PROXY_PROTOCOL_REFUSED_TOTAL = 'meridian_proxy_protocol_refused_total';
export const TLS_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS = 'meridian_tls_certificate_expiry_timestamp_seconds';
export const HTTP_REQUESTS_BY_PROTOCOL_TOTAL = 'meridian_http_requests_by_protocol_total';
export const ENDPOINT_RTT_SECONDS = 'meridian_endpoint_rtt_seconds';
export const HEALTH_CHECK_DURATION_SECONDS = 'meridian_health_check_duration_seconds';
export const RATE_LIMITED_TOTAL = 'meridian_rate_limited_total';
export const REDIRECTS_TOTAL = 'meridian_redirects_total';
export const REGION_COST_SECONDS = 'meridian_region_cost_seconds';
export const LATENCY_AREAS_MOVED = 'meridian_latency_areas_moved';

/**
 * Upper bounds of the health check duration buckets, in seconds: fine steps up to 100 ms, where same-region and
 * near-region probes fall, then steps for cross-continent round trips (~70–300 ms); a probe slower than 2 s counts in
 * +Inf only (health.timeout is 2 s by default, so timeouts sit at the top).
 */
export const HEALTH_CHECK_BUCKETS: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 2,
]);

/**
 * prom-client's gauges that end in `_total`, which `promtool check metrics` rejects; each is the sum of a labelled
 * gauge that stays (`nodejs_active_handles{type}` and so on), so nothing is lost.
 */
const DEFAULT_METRICS_DROPPED = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];
const GEO_OUTCOMES: readonly GeoOutcome[] = ['hit', 'miss', 'private', 'error'];
const HANDSHAKE_RESULTS = [
  ['new', LISTENER_STAT.tlsNew],
  ['resumed', LISTENER_STAT.tlsResumed],
  ['failed', LISTENER_STAT.tlsFailed],
] as const;

/**
 * What the exporter reads from the runtime at scrape time. `listenerStats` and `certificates` are read only when a
 * listener speaks HTTPS or takes the PROXY protocol.
 */
export type MetricsSource = Pick<MeridianRuntime, 'stats' | 'locator' | 'plane' | 'health' | 'listenerStats' | 'certificates' | 'listeners' | 'edgeStats' | 'latencyReport'>;

/**
 * The `certificate` label of each certificate, in order: its own label, and for a later one that shares it (an RSA
 * and an ECDSA pair for one name, say) the label with ` (2)`, ` (3)`… appended, so every series stays distinct.
 */
export function certificateLabels(certificates: readonly { readonly label: string }[]): string[] {
  const taken = new Set<string>();
  return certificates.map(({ label }) => {
    let unique = label;
    for (let n = 2; taken.has(unique); n++) unique = `${label} (${n})`;
    taken.add(unique);
    return unique;
  });
}

/**
 * Brings one series of `counter` up to `total`, a count kept elsewhere that only grows; `exported[at]` is what the
 * series has shown. A total read a moment early (a thread between two stores) is caught up by the next scrape.
 */
function catchUp<T extends string>(counter: Counter<T>, labels: Partial<Record<T, string>>, total: number, exported: number[], at: number): void {
  const delta = total - exported[at];
  if (delta <= 0) return;
  counter.inc(labels, delta);
  exported[at] = total;
}

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
  /** The durations of a region's latest health checks (what the dashboard charts beside the RTTs). */
  recentChecks(region: string): CheckDurations;
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
  readonly #misroutesByReason: Counter<'reason'>;
  readonly #misrouteKm = new ReasonKmHistogram();
  readonly #reloads: Counter<'result'>;
  readonly #workerRestarts: Counter;
  readonly #checkDurations: Histogram<'region' | 'zone'>;
  readonly #recentChecks = new RecentChecks();
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
    // What a misroute cost (the rule is in routing/geo-router.ts, misrouteCost): requests and tunnels served farther
    // than the client's nearest region, by why, and how much farther. Every reason exists from the start.
    this.#misroutesByReason = new Counter({
      name: MISROUTES_BY_REASON_TOTAL,
      help: 'Requests and WebSocket tunnels served from a region farther than the client\'s nearest region by more than localPreferenceKm, by reason: geodns (GeoDNS sent the client here), failover (the home region\'s endpoints did not serve), fence, affinity.',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of MISROUTE_REASONS) this.#misroutesByReason.inc({ reason }, 0);
    this.#registry.registerMetric(this.#misrouteKm as unknown as Metric);
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
    this.#checkDurations = this.#latencyMetrics(registers);
    this.#edgeMetrics(registers);
    this.#rateLimitAndRedirectMetrics(registers);

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

  /**
   * TLS and PROXY protocol counts per listener, certificate expiry, and requests by HTTP version. The listeners are
   * the ones bound at start: `listen` is restart-only, and a reload that changes it (pending a restart) must not
   * rename or re-index what the bound listeners count.
   */
  #edgeMetrics(registers: Registry<RegistryContentType>[]): void {
    const runtime = this.#runtime;
    const listeners = runtime.listeners().map(({ settings }, index) => ({ settings, index }));
    const https = listeners.filter(({ settings }) => settings.protocol === 'https');
    const proxied = listeners.filter(({ settings }) => settings.proxyProtocol !== null);

    const handshakesExported = new Array<number>(https.length * HANDSHAKE_RESULTS.length).fill(0);
    const handshakes = new Counter({
      name: TLS_HANDSHAKES_TOTAL,
      help: 'TLS handshakes on each HTTPS listener: full handshakes (new), sessions resumed from a ticket or session id (resumed), and handshakes that failed or timed out (failed).',
      labelNames: ['listener', 'result'],
      registers,
      collect() {
        https.forEach(({ settings, index }, i) => {
          HANDSHAKE_RESULTS.forEach(([result, stat], r) => {
            catchUp(this, { listener: settings.name, result }, runtime.listenerStats.total(index, stat), handshakesExported, i * HANDSHAKE_RESULTS.length + r);
          });
        });
      },
    });
    for (const { settings } of https) for (const [result] of HANDSHAKE_RESULTS) handshakes.inc({ listener: settings.name, result }, 0);

    const refusedExported = new Array<number>(proxied.length).fill(0);
    const refused = new Counter({
      name: PROXY_PROTOCOL_REFUSED_TOTAL,
      help: 'Connections a PROXY protocol listener closed at accept: a peer outside proxyProtocol.trusted, or a missing, malformed or late PROXY header.',
      labelNames: ['listener'],
      registers,
      collect() {
        proxied.forEach(({ settings, index }, i) => catchUp(this, { listener: settings.name }, runtime.listenerStats.total(index, LISTENER_STAT.proxyRefused), refusedExported, i));
      },
    });
    for (const { settings } of proxied) refused.inc({ listener: settings.name }, 0);

    new Gauge({
      name: TLS_CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS,
      help: 'When each certificate the HTTPS listeners serve expires (its notAfter), by its first DNS name; a name shared by two certificates gets " (2)" on the later one.',
      labelNames: ['certificate'],
      registers,
      collect() {
        this.reset();
        // The store exists only when a listener speaks HTTPS; a certificate replaced on disk shows from the next scrape.
        if (https.length === 0) return;
        const certificates = runtime.certificates();
        certificateLabels(certificates).forEach((certificate, i) => this.set({ certificate }, certificates[i].notAfter / 1000));
      },
    });

    const protocolsExported = [0, 0];
    const byProtocol = new Counter({
      name: HTTP_REQUESTS_BY_PROTOCOL_TOTAL,
      help: 'Downstream requests by HTTP version: h2, or http/1.1 (HTTP/1.0 and 1.1, WebSocket upgrades included).',
      labelNames: ['protocol'],
      registers,
      collect() {
        // All requests first: a thread counts an HTTP/2 request as HTTP/2 just before it counts it among all, so
        // HTTP/2 read after all can only be ahead, and http/1.1 read short by a few (until the next scrape), never over.
        const all = runtime.stats.total(STAT.requests);
        const http2 = runtime.stats.total(STAT.http2Requests);
        catchUp(this, { protocol: 'h2' }, http2, protocolsExported, 0);
        catchUp(this, { protocol: 'http/1.1' }, all - http2, protocolsExported, 1);
      },
    });
    byProtocol.inc({ protocol: 'http/1.1' }, 0);
    byProtocol.inc({ protocol: 'h2' }, 0);
  }

  /**
   * What the health checks measure, per region: each endpoint's smoothed RTT as routing sees it (read at scrape time
   * from the health state), and the duration of every probe. Returns the histogram, which the checks feed.
   */
  #latencyMetrics(registers: Registry<RegistryContentType>[]): Histogram<'region' | 'zone'> {
    const runtime = this.#runtime;
    new Gauge({
      name: ENDPOINT_RTT_SECONDS,
      help: 'Smoothed round-trip time of the active health checks that passed (the EWMA that orders zones), by endpoint; absent until one passed, and kept from the last passing one while an endpoint fails.',
      labelNames: ['region', 'zone', 'endpoint'],
      registers,
      collect() {
        this.reset();
        // One synchronous read: plane and health are swapped together on reload, so their endpoint indexes agree.
        const { endpoints } = runtime.plane().config.topology;
        const { rttMs } = runtime.health();
        for (const endpoint of endpoints) {
          const ms = rttMs[endpoint.index];
          if (ms !== null) this.set(endpointLabels(endpoint).base, ms / 1000);
        }
      },
    });
    // Latency order's measured cost terms and what they did, as the workers route with them; empty in distance order.
    new Gauge({
      name: REGION_COST_SECONDS,
      help: 'Latency order: the measured terms of each region\'s cost, slowness (smoothed probe RTT above its lowest in the last day) and errors (failed-request share over 10 s × routing.latency.errorPenalty); the distance term is per client and not here.',
      labelNames: ['region', 'term'],
      registers,
      collect() {
        this.reset();
        for (const { region, slownessMs, errorMs } of runtime.latencyReport() ?? []) {
          this.set({ region, term: 'slowness' }, slownessMs / 1000);
          this.set({ region, term: 'errors' }, errorMs / 1000);
        }
      },
    });
    new Gauge({
      name: LATENCY_AREAS_MOVED,
      help: 'Latency order: client areas (2° cells, per fence) whose home region latency has moved here from the region distance picks.',
      labelNames: ['region'],
      registers,
      collect() {
        this.reset();
        for (const { region, areasMoved } of runtime.latencyReport() ?? []) this.set({ region }, areasMoved);
      },
    });
    return new Histogram({
      name: HEALTH_CHECK_DURATION_SECONDS,
      help: 'Duration of every active health check, whatever its result (passes, failures and timeouts alike; meridian_health_checks_total splits them by result), by the zone of the endpoint probed.',
      labelNames: ['region', 'zone'],
      buckets: [...HEALTH_CHECK_BUCKETS],
      registers,
    });
  }

  /**
   * Requests the edge refused by rate-limit rule, and redirected by target region: data-plane threads count them by
   * slot (rule i, region i) into the edge stats, and each scrape catches the counters up with the process totals.
   * A slot keeps the last name it had, so what a rule or region counted just before a reload removed it still shows
   * under its name; and the series of a removed rule or region stays, at its last value, rather than being dropped:
   * a counter that disappears takes its last increments with it if no scrape saw them, while one that stays costs a
   * line per name the config ever used, and `rate()` of it is simply 0. A rule re-added under its name carries on.
   */
  #rateLimitAndRedirectMetrics(registers: Registry<RegistryContentType>[]): void {
    const runtime = this.#runtime;
    const ruleNames: string[] = [];
    const rulesExported = new Array<number>(MAX_RATE_LIMIT_RULES).fill(0);
    new Counter({
      name: RATE_LIMITED_TOTAL,
      help: 'Requests answered 429 by a rate-limit rule, by the rule\'s name.',
      labelNames: ['rule'],
      registers,
      collect() {
        runtime.plane().config.rateLimits.rules.forEach(({ name }, i) => {
          ruleNames[i] = name;
          this.inc({ rule: name }, 0);
        });
        ruleNames.forEach((rule, i) => catchUp(this, { rule }, runtime.edgeStats.total(EDGE_STAT.rateLimited + i), rulesExported, i));
      },
    });
    const regionNames: string[] = [];
    const redirectsExported = new Array<number>(MAX_REDIRECT_REGIONS).fill(0);
    new Counter({
      name: REDIRECTS_TOTAL,
      help: 'Requests answered with a redirect to their home region\'s publicHost instead of being proxied there, by that region.',
      labelNames: ['to_region'],
      registers,
      collect() {
        const { regions, self } = runtime.plane().config.topology;
        regions.forEach(({ name, publicHost }, i) => {
          if (i >= MAX_REDIRECT_REGIONS) return;
          regionNames[i] = name;
          // Only a region with a publicHost can be sent to, and never this instance's own.
          if (publicHost !== undefined && name !== self.region) this.inc({ to_region: name }, 0);
        });
        regionNames.forEach((region, i) => catchUp(this, { to_region: region }, runtime.edgeStats.total(EDGE_STAT.redirected + i), redirectsExported, i));
      },
    });
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

  recentChecks(region: string): CheckDurations {
    return this.#recentChecks.durations(region);
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

  /** Every endpoint's and zone's series exist from the start, so `increase()` sees the first ejection of each. */
  #zeroFor(topology: Topology): void {
    if (topology === this.#zeroedFor) return;
    this.#zeroedFor = topology;
    for (const endpoint of topology.endpoints) {
      const labels = endpointLabels(endpoint);
      this.#ejections.inc(labels.base, 0);
      for (const result of CHECK_RESULTS) this.#healthChecks.inc(labels.checks[result], 0);
      this.#checkDurations.zero({ region: endpoint.region, zone: endpoint.zone });
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
      for (let reason = 0; reason < MISROUTE_REASONS.length; reason++) {
        let count = 0;
        for (let b = 0; b < MISROUTE_KM_WIDTH; b++) count += delta[tables.misrouteKmAt + reason * MISROUTE_KM_WIDTH + b];
        if (count !== 0) this.#misroutesByReason.inc({ reason: MISROUTE_REASONS[reason] }, count);
      }
      this.#misrouteKm.add(delta, tables.misrouteKmAt, tables.misrouteKmSumsAt);
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

  // The checker runs on this thread and publishes synchronously, so every probe lands here as it ends.
  readonly #onCheck = (message: unknown): void => {
    const { endpoint, result, durationMs } = message as CheckEvent;
    this.#healthChecks.inc(endpointLabels(endpoint).checks[result]);
    this.#checkDurations.observe({ region: endpoint.region, zone: endpoint.zone }, durationMs / 1000);
    this.#recentChecks.record(endpoint.region, durationMs);
  };

  readonly #onHealthChange = (message: unknown): void => {
    const { change, endpoint } = message as { change: HealthChange; endpoint: Endpoint };
    if (change.kind === 'ejected') this.#ejections.inc(endpointLabels(endpoint).base);
  };
}

/**
 * `meridian_misroute_extra_distance_km{reason}`, fed from the tables' bucket counts at scrape time (prom-client's
 * Histogram takes single observations only), in the shape the Registry renders. The counter by reason is its count.
 */
class ReasonKmHistogram {
  readonly name = MISROUTE_EXTRA_DISTANCE_KM;
  readonly help = 'Extra great-circle distance of each misroute, in km: how much farther the region that served the client is than its nearest region, by reason.';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  /** Non-cumulative counts per reason, +Inf last; then the sums in km. */
  readonly #buckets = new Float64Array(MISROUTE_REASONS.length * MISROUTE_KM_WIDTH);
  readonly #sums = new Float64Array(MISROUTE_REASONS.length);

  add(delta: Float64Array, bucketsAt: number, sumsAt: number): void {
    for (let i = 0; i < this.#buckets.length; i++) this.#buckets[i] += delta[bucketsAt + i];
    for (let r = 0; r < this.#sums.length; r++) this.#sums[r] += delta[sumsAt + r];
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: { metricName: string; labels: Record<string, string | number>; value: number }[] }> {
    const { name } = this;
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
    MISROUTE_REASONS.forEach((reason, r) => {
      let cumulative = 0;
      for (let b = 0; b < MISROUTE_KM_WIDTH; b++) {
        cumulative += this.#buckets[r * MISROUTE_KM_WIDTH + b];
        values.push({ metricName: `${name}_bucket`, labels: { reason, le: b < MISROUTE_KM_BUCKETS.length ? MISROUTE_KM_BUCKETS[b] : '+Inf' }, value: cumulative });
      }
      values.push({ metricName: `${name}_sum`, labels: { reason }, value: this.#sums[r] });
      values.push({ metricName: `${name}_count`, labels: { reason }, value: cumulative });
    });
    return { name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
