// `GET /status`: one JSON picture of this instance (topology with live health and load, geo databases, traffic,
// listeners and certificates), read from the runtime at request time. The dashboard renders exactly this.
import type { MeridianRuntime } from '../main.ts';
import { DEFAULT_GEO_DATABASES, type GeoOutcome } from '../geo/locator.ts';
import type { TrafficSummary } from '../observe/summary.ts';
import { MERIDIAN_VERSION } from '../version.ts';
import { STAT } from '../observe/thread-stats.ts';
import { certificateLabels } from '../observe/metrics.ts';
import type { CheckDurations } from '../observe/recent-checks.ts';

/** DB-IP Lite's licence asks for this attribution wherever its data is shown or used. */
export const DBIP_CREDIT = 'IP geolocation by DB-IP (db-ip.com), CC BY 4.0';

export interface EndpointStatus {
  readonly index: number;
  readonly origin: string;
  /** Up by the active checks. */
  readonly up: boolean;
  /** Up and not ejected: routing may pick it. */
  readonly usable: boolean;
  /** ISO time the passive ejection ends (the endpoint returns with the next passing probe after it), or null. */
  readonly ejectedUntil: string | null;
  readonly timesEjected: number;
  readonly lastProbe: { readonly at: string; readonly ok: boolean; readonly detail: string } | null;
  /** Smoothed probe round-trip, or null before the first passing probe. */
  readonly rttMs: number | null;
  readonly inflight: number;
}

export interface ZoneStatus {
  readonly name: string;
  readonly local: boolean;
  readonly endpoints: readonly EndpointStatus[];
}

/** What the health checks measure to a region, as meridian_endpoint_rtt_seconds and meridian_health_check_duration_seconds do. */
export interface RegionLatency {
  /** The smoothed probe RTTs of the region's endpoints that have one: lowest, mean and highest; null before any. */
  readonly rttMs: { readonly min: number; readonly avg: number; readonly max: number; readonly endpoints: number } | null;
  /** The durations of the region's latest health checks, whatever their result. */
  readonly checks: CheckDurations;
  /**
   * Latency order (null in distance order): the measured terms of the region's cost as the workers route with them
   * (slowness over the RTT floor, error share and its penalty), and the client areas latency has moved to it.
   */
  readonly cost: { readonly slownessMs: number; readonly floorMs: number | null; readonly errorRatio: number; readonly errorMs: number; readonly areasMoved: number } | null;
}

export interface RegionStatus {
  readonly name: string;
  readonly lat: number;
  readonly lon: number;
  readonly local: boolean;
  readonly zones: readonly ZoneStatus[];
  readonly latency: RegionLatency;
}

export interface GeoDatabaseStatus {
  readonly path: string;
  readonly type: string;
  readonly schema: string;
  readonly ipVersion: 4 | 6;
  readonly buildDate: string;
  readonly bundled: boolean;
}

export interface ListenerStatus {
  readonly name: string;
  readonly protocol: 'http' | 'https' | 'redirect';
  readonly host: string;
  /** As configured: 0 when the system picked the port. */
  readonly port: number;
  /** Whether connections must open with a PROXY protocol header (the trusted peers are not shown). */
  readonly proxyProtocol: boolean;
  /** Whether HTTP/2 is offered: HTTPS listeners only, through ALPN. */
  readonly http2: boolean;
}

/** A certificate the HTTPS listeners serve; never its key, and not its key file's contents. */
export interface CertificateStatus {
  /** Its first DNS name, made unique as the `certificate` label of meridian_tls_certificate_expiry_timestamp_seconds is. */
  readonly label: string;
  readonly names: readonly string[];
  readonly notAfter: string;
  /** Whole days until notAfter, rounded down: 13 means under 14 days left; negative once expired. */
  readonly daysLeft: number;
  readonly fingerprint: string;
  readonly certFile: string;
}

export interface StatusReport {
  readonly self: { readonly region: string; readonly zone: string };
  readonly version: { readonly meridian: string; readonly config: number };
  /** The config version serving, and the fields a reload changed that wait for a restart (until it happens). */
  readonly config: { readonly version: number; readonly restartRequired: readonly string[] };
  readonly startedAt: string;
  readonly uptimeSeconds: number;
  readonly draining: boolean;
  readonly readiness: { readonly ok: boolean; readonly reason: string };
  readonly topology: { readonly regions: readonly RegionStatus[] };
  readonly geo: {
    readonly databases: readonly GeoDatabaseStatus[];
    /** The attribution to show, when a bundled DB-IP database is in use; otherwise null. */
    readonly credit: string | null;
    readonly lookups: Readonly<Record<GeoOutcome, number>>;
    /** The LRU cache of located addresses: its bound (`geo.cacheSize`) and how many it holds. */
    readonly cache: { readonly max: number; readonly entries: number };
  };
  /** Chunked uploads pinned to a region (`routing.uploadPinning`): the bounds in force and what is held. */
  readonly uploadPins: { readonly ttlMs: number; readonly maxEntries: number; readonly uploads: number };
  readonly traffic: { readonly inflight: number; readonly connections: number; readonly websockets: number };
  /** Where the data plane runs (`in-process` or `workers`), workers replaced since start, and each thread's counts. */
  readonly workers: ReturnType<MeridianRuntime['workers']>;
  /** In config order. */
  readonly listeners: readonly ListenerStatus[];
  /** The certificates serving now, in config order; empty without an HTTPS listener. */
  readonly certificates: readonly CertificateStatus[];
  readonly summary: TrafficSummary;
}

const DAY_MS = 86_400_000;

/** Lowest, mean and highest of the measured values (nulls left out), or null when none is measured. */
function spread(values: readonly (number | null)[]): RegionLatency['rttMs'] {
  const measured = values.filter((v) => v !== null);
  if (measured.length === 0) return null;
  const sum = measured.reduce((a, b) => a + b, 0);
  return { min: Math.min(...measured), avg: sum / measured.length, max: Math.max(...measured), endpoints: measured.length };
}

const BUNDLED: ReadonlySet<string> = new Set(DEFAULT_GEO_DATABASES);

export function statusReport(runtime: MeridianRuntime, now: number = Date.now()): StatusReport {
  // One synchronous read: plane and health are swapped together on reload, so their endpoint indexes agree.
  const { config, load, uploadPins } = runtime.plane();
  const health = runtime.health().report();
  const { self } = config.topology;
  const iso = (ms: number): string => new Date(ms).toISOString();
  const costs = runtime.latencyReport();
  const regions = config.topology.regions.map((region, r): RegionStatus => ({
    name: region.name,
    lat: region.lat,
    lon: region.lon,
    local: region.name === self.region,
    latency: {
      rttMs: spread(region.zones.flatMap((zone) => zone.endpoints.map(({ index }) => health[index].rttMs))),
      checks: runtime.metrics.recentChecks(region.name),
      cost: costs === null || costs[r] === undefined ? null : { slownessMs: costs[r].slownessMs, floorMs: costs[r].floorMs, errorRatio: costs[r].errorRatio, errorMs: costs[r].errorMs, areasMoved: costs[r].areasMoved },
    },
    zones: region.zones.map((zone) => ({
      name: zone.name,
      local: region.name === self.region && zone.name === self.zone,
      endpoints: zone.endpoints.map(({ index, origin }): EndpointStatus => {
        const { up, usable, ejectedUntil, timesEjected, lastProbe, rttMs } = health[index];
        return {
          index,
          origin,
          up,
          usable,
          ejectedUntil: ejectedUntil === 0 ? null : iso(ejectedUntil),
          timesEjected,
          lastProbe: lastProbe && { at: iso(lastProbe.at), ok: lastProbe.ok, detail: lastProbe.detail },
          rttMs,
          inflight: load.inflight[index],
        };
      }),
    })),
  }));
  const databases = runtime.locator.databases.map((db) => ({
    path: db.path,
    type: db.databaseType,
    schema: db.schema,
    ipVersion: db.ipVersion,
    buildDate: db.buildEpoch.toISOString(),
    bundled: BUNDLED.has(db.path),
  }));
  const { traffic } = runtime;
  const workers = runtime.workers();
  // The listeners serving (restart-only), with their bound ports: not a reloaded config's, which wait for a restart.
  const listeners = runtime.listeners().map(
    ({ settings: l, port }): ListenerStatus => ({ name: l.name, protocol: l.protocol, host: l.host, port, proxyProtocol: l.proxyProtocol !== null, http2: l.protocol === 'https' && l.http2 }),
  );
  const served = runtime.certificates();
  const labels = certificateLabels(served);
  const certificates = served.map(
    (c, i): CertificateStatus => ({
      label: labels[i],
      names: c.names,
      notAfter: iso(c.notAfter),
      daysLeft: Math.floor((c.notAfter - now) / DAY_MS),
      fingerprint: c.fingerprint,
      certFile: c.certFile,
    }),
  );
  return {
    self: { region: self.region, zone: self.zone },
    version: { meridian: MERIDIAN_VERSION, config: runtime.configVersion() },
    config: { version: runtime.configVersion(), restartRequired: runtime.restartRequired() },
    startedAt: iso(runtime.startedAt),
    uptimeSeconds: Math.max(0, Math.floor((now - runtime.startedAt) / 1000)),
    draining: traffic.draining,
    readiness: runtime.ready(),
    topology: { regions },
    geo: {
      databases,
      credit: databases.some((db) => db.bundled) ? DBIP_CREDIT : null,
      lookups: runtime.stats.geoLookups(),
      // Each data-plane thread caches its share of `geo.cacheSize` addresses; these are the process's totals.
      cache: { max: Math.ceil(config.geo.cacheSize / workers.threads.length) * workers.threads.length, entries: runtime.stats.total(STAT.geoCached) },
    },
    uploadPins: { ttlMs: uploadPins.ttlMs, maxEntries: uploadPins.maxEntries, ...uploadPins.entries },
    traffic: { inflight: traffic.inflight, connections: runtime.stats.total(STAT.connections), websockets: runtime.stats.total(STAT.websockets) },
    workers,
    listeners,
    certificates,
    summary: runtime.summary.snapshot(),
  };
}
