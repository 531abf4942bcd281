// Builds the frozen snapshot from a config the schema has accepted: the half of compiling that data-plane worker
// threads run too. It imports no schema library, so a worker does not load one: the control plane validates, and
// each worker builds its own snapshot (CIDR sets and maps do not cross threads) from the validated data.
import type { ParsedConfig } from './schema.ts';
import { ConfigError, type ConfigProblem } from './errors.ts';
import { catalogLocation } from './catalog.ts';
import { MAX_RATE_TABLE_BYTES, MIN_WEBSOCKET_IDLE_TIMEOUT_MS } from './defaults.ts';
import { compileGeo, compileRouting } from './compile-routing.ts';
import { compileListeners } from './compile-listeners.ts';
import type { AllowedHost, Endpoint, MeridianConfig, RateLimits, Region, Topology, Zone } from './types.ts';
import { compileMatch } from '../routing/request-match.ts';
import { rateTableBytes } from '../proxy/rate-buckets.ts';

/**
 * The snapshot of a validated config; `source` names the file in errors. `config.input` keeps a copy of `parsed`
 * (plain data) for other threads to build the same snapshot from.
 */
export function buildConfig(parsed: ParsedConfig, source?: string): MeridianConfig {
  const problems: ConfigProblem[] = [];
  const config = build(parsed, problems);
  if (problems.length > 0) throw new ConfigError(problems, source);
  // A copy: the schema's output may share arrays with the caller's raw object, which freezing must not reach.
  return deepFreeze({ input: structuredClone(parsed), ...config });
}

function build(parsed: ParsedConfig, problems: ConfigProblem[]): Omit<MeridianConfig, 'input'> {
  const topology = buildTopology(parsed, problems);
  const { websocketIdle } = parsed.timeouts;
  if (websocketIdle !== 0 && websocketIdle < MIN_WEBSOCKET_IDLE_TIMEOUT_MS) {
    problems.push({ path: 'timeouts.websocketIdle', message: 'must be 0 (off) or at least 5m: realtime clients ping every 20 s' });
  }
  return {
    topology,
    workers: parsed.workers,
    geo: compileGeo(parsed.geo, problems),
    routing: compileRouting(parsed.routing, new Set(topology.regions.map((r) => r.name)), problems),
    listen: compileListeners(parsed, problems),
    tls: parsed.tls,
    maxHeaderBytes: Math.max(...parsed.listen.map((l) => l.maxHeaderBytes)),
    admin: { host: parsed.admin.host, port: parsed.admin.port, token: parsed.admin.token, allowedHosts: compileAllowedHosts(parsed.admin.allowedHosts, problems) },
    probe: parsed.probe ?? null,
    timeouts: parsed.timeouts,
    health: { ...parsed.health, host: parsed.health.host },
    outlierDetection: parsed.outlierDetection,
    retries: parsed.retries,
    circuitBreaker: parsed.circuitBreaker,
    readiness: parsed.readiness,
    accessLog: parsed.accessLog,
    headers: parsed.headers,
    rateLimits: compileRateLimits(parsed.rateLimits, problems),
    uploads: parsed.uploads,
    shutdown: parsed.shutdown,
  };
}

function compileRateLimits(limits: ParsedConfig['rateLimits'], problems: ConfigProblem[]): RateLimits {
  const seen = new Map<string, number>();
  limits.rules.forEach((rule, i) => {
    const earlier = seen.get(rule.name);
    // The name is the metric's label: two rules under one would add up as one.
    if (earlier !== undefined) problems.push({ path: `rateLimits.rules[${i}].name`, message: `"${rule.name}" is also the name of rateLimits.rules[${earlier}]` });
    seen.set(rule.name, i);
  });
  const bytes = rateTableBytes(limits.maxClients, limits.rules.length);
  // Allocated whole at start and on reload: a table that cannot fit must be refused here, not crash the start.
  if (bytes > MAX_RATE_TABLE_BYTES) {
    problems.push({ path: 'rateLimits.maxClients', message: `${limits.maxClients} clients × ${limits.rules.length} rules need ${Math.ceil(bytes / 2 ** 20)} MiB of shared memory; at most ${MAX_RATE_TABLE_BYTES / 2 ** 20} MiB` });
  }
  return {
    ipv4Prefix: limits.ipv4Prefix,
    ipv6Prefix: limits.ipv6Prefix,
    maxClients: limits.maxClients,
    rules: limits.rules.map((rule) => ({ name: rule.name, match: compileMatch(rule), rate: rule.rate, burst: rule.burst })),
  };
}

/**
 * The schema checked the shape; here the name is put in the form a URL parser gives a request's Host (lower case,
 * IP literals canonical), so matching a request is a string comparison.
 */
function compileAllowedHosts(entries: readonly string[], problems: ConfigProblem[]): AllowedHost[] {
  const out: AllowedHost[] = [];
  entries.forEach((entry, i) => {
    const [, wildcard, host, portText] = /^(\*\.)?(.+?)(?::(\d+))?$/.exec(entry)!;
    const port = portText === undefined ? undefined : Number(portText);
    if (port !== undefined && (port < 1 || port > 65_535)) {
      problems.push({ path: `admin.allowedHosts[${i}]`, message: `port ${port} is out of range` });
      return;
    }
    let name: string;
    try {
      name = new URL(`http://${host}`).hostname;
    } catch {
      problems.push({ path: `admin.allowedHosts[${i}]`, message: `not a hostname or IP address (${JSON.stringify(entry)})` });
      return;
    }
    out.push({ name, subdomains: wildcard !== undefined, port });
  });
  return out;
}

function buildTopology(parsed: ParsedConfig, problems: ConfigProblem[]): Topology {
  const endpoints: Endpoint[] = [];
  const seen = new Map<string, string>();
  const regions: Region[] = [];
  for (const [regionName, region] of Object.entries(parsed.regions)) {
    const where = `regions.${regionName}`;
    const location = resolveLocation(region.location);
    const zones: Zone[] = [];
    for (const [zoneName, zone] of Object.entries(region.zones)) {
      const zoneEndpoints: Endpoint[] = [];
      zone.endpoints.forEach((raw, i) => {
        const path = `${where}.zones.${zoneName}.endpoints[${i}]`;
        const url = new URL(raw);
        if (url.pathname !== '/' || url.search !== '') {
          problems.push({ path, message: 'an endpoint is an origin (scheme, host, port); drop the path' });
        }
        const origin = url.origin;
        const previous = seen.get(origin);
        if (previous) problems.push({ path, message: `duplicate of ${previous}` });
        seen.set(origin, path);
        const tls = url.protocol === 'https:';
        const endpoint: Endpoint = {
          index: endpoints.length,
          key: `${regionName}/${zoneName}/${origin}`,
          origin,
          region: regionName,
          zone: zoneName,
          tls,
          hostname: url.hostname.replace(/^\[|\]$/g, ''),
          port: url.port === '' ? (tls ? 443 : 80) : Number(url.port),
        };
        endpoints.push(endpoint);
        zoneEndpoints.push(endpoint);
      });
      zones.push({ name: zoneName, region: regionName, endpoints: zoneEndpoints });
    }
    regions.push({ name: regionName, lat: location[0], lon: location[1], publicHost: region.publicHost, zones });
  }

  // The schema has already checked that `self` names a region and one of its zones.
  return { self: parsed.self, regions, endpoints };
}

/** The schema accepts only catalog names that exist. */
function resolveLocation(location: readonly [number, number] | string): readonly [number, number] {
  if (typeof location !== 'string') return location;
  const entry = catalogLocation(location)!;
  return [entry.lat, entry.lon];
}

/** Freezes plain objects and arrays; compiled matchers (CIDR sets, maps) stay as built and are never mutated. */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value) && (Array.isArray(value) || Object.getPrototypeOf(value) === Object.prototype)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
