// Plain records as the data plane publishes them, built from a compiled config without a proxy: for tests that feed
// recorders directly, in this thread or in worker threads that compile the same config for themselves.
import { compileConfig } from '../../src/config/compile.ts';
import type { Endpoint, MeridianConfig, Topology } from '../../src/config/types.ts';
import type { ExchangeRecord, FailoverRecord, RetryReason, TunnelRecord } from '../../src/proxy/record.ts';
import type { MetricsSource } from '../../src/observe/metrics.ts';
import { ThreadStats } from '../../src/observe/thread-stats.ts';
import { EdgeStats } from '../../src/observe/edge-stats.ts';

/** Two regions of two zones, one with two endpoints: plain data, so a worker compiles the same topology. */
export const TWO_REGIONS = {
  self: { region: 'us-east', zone: 'az-1' },
  regions: {
    'us-east': { location: [39.04, -77.49], zones: { 'az-1': { endpoints: ['http://10.0.1.1', 'http://10.0.1.2'] }, 'az-2': { endpoints: ['http://10.0.2.1'] } } },
    'eu-west': { location: [51.51, -0.13], zones: { 'az-1': { endpoints: ['http://10.1.1.1'] }, 'az-2': { endpoints: ['http://10.1.2.1'] } } },
  },
} as const;

export function compile(raw: unknown = TWO_REGIONS): MeridianConfig {
  return compileConfig(raw, {});
}

/** A served GET of 12 ms, ended at `second` (epoch seconds), from an unlocated client; `fields` override. */
export function exchange(topology: Topology, endpoint: Endpoint | null, second: number, fields: Partial<ExchangeRecord> = {}): ExchangeRecord {
  const durationMs = fields.durationMs ?? 12;
  return {
    requestId: 'r',
    method: 'GET',
    methodClass: 0,
    host: 'api.example.com',
    path: '/v1/health',
    peerIp: '127.0.0.1',
    clientIp: '127.0.0.1',
    country: null,
    continent: null,
    status: 200,
    completed: true,
    bytesIn: 0,
    bytesOut: 2,
    startedAt: second * 1000 + 500 - durationMs,
    upstreamHeadersMs: endpoint === null ? -1 : durationMs / 2,
    durationMs,
    attempts: 1,
    retryReason: null,
    topology,
    endpoint,
    failedEndpoint: null,
    errorCode: null,
    routeReason: 'local',
    home: null,
    misrouteNearest: null,
    ...fields,
  };
}

export function failover(topology: Topology, from: Endpoint, to: Endpoint, reason: RetryReason): FailoverRecord {
  return { requestId: 'r', topology, from, to, reason };
}

export function tunnelClosed(topology: Topology, misrouteNearest: string | null): TunnelRecord {
  return {
    requestId: 'r',
    peerIp: '127.0.0.1',
    clientIp: '127.0.0.1',
    country: null,
    continent: null,
    topology,
    endpoint: topology.endpoints[0],
    misrouteNearest,
    startedAt: Date.now(),
    durationMs: 1,
    bytesIn: 0,
    bytesOut: 0,
    closeReason: 'closed',
    errorCode: null,
  };
}

/** What the exporter reads besides the traffic tables, with nothing in it; `config` is the one serving. */
export function quietRuntime(config: () => MeridianConfig): MetricsSource {
  return {
    stats: new ThreadStats(1),
    locator: { databases: [] },
    plane: () => ({ config: config() }),
    edgeStats: new EdgeStats(1),
    health: () => ({ snapshot: { usable: [] }, rttMs: [] }),
    listeners: () => config().listen.map((settings) => ({ settings, port: settings.port })),
    latencyReport: () => null,
  } as unknown as MetricsSource;
}

const COUNTRIES = [null, 'SE', 'GB', 'US'] as const;
const STATUSES = [200, 200, 200, 404, 503, 0] as const;

/**
 * The `i`th of a deterministic mix over every endpoint and no endpoint, methods, status classes, latencies from
 * sub-millisecond to seconds, located and unlocated clients; its second is `firstSecond` plus i × seconds / count.
 */
export function mixed(topology: Topology, i: number, count: number, firstSecond: number, seconds: number): ExchangeRecord {
  const { endpoints } = topology;
  const endpoint = i % (endpoints.length + 1) === endpoints.length ? null : endpoints[i % (endpoints.length + 1)];
  const status = STATUSES[i % STATUSES.length];
  return exchange(topology, endpoint, firstSecond + Math.floor((i * seconds) / count), {
    methodClass: i % 10,
    status,
    completed: status !== 0,
    durationMs: 0.3 + ((i * 7919) % 4000) * 0.75,
    country: COUNTRIES[i % COUNTRIES.length],
  });
}
