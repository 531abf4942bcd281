// The GeoDNS guides in deploy/geodns/: every example covers the reference topology of deploy/geodns/topology.json
// (four regions of two zones, each zone's Meridian at its own address), places each region where examples/meridian.yaml
// does, and checks every Meridian on the probe listener (plain HTTP, /readyz, probe.port, 200). No terraform binary is
// needed: the .tf files are read with a small parser for the subset of HCL they use.
import { describe, expect, test } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';

const ROOT = new URL('../', import.meta.url);
const read = (path: string): string => readFileSync(new URL(path, ROOT), 'utf8');
const readJson = <T>(path: string): T => JSON.parse(read(path)) as T;

interface Topology {
  name: string;
  probe: { port: number; path: string; protocol: string; expectStatus: number };
  regions: Record<string, { location: string; zones: Record<string, string>; near: Record<string, string> }>;
}
interface CatalogEntry {
  name: string;
  lat: number;
  lon: number;
}
interface Endpoint {
  region: string;
  zone: string;
  ip: string;
}

const config = parseYaml(read('examples/meridian.yaml')) as {
  regions: Record<string, { location: string; zones: Record<string, unknown> }>;
  probe?: { host?: string; port?: number };
};
const topology = readJson<Topology>('deploy/geodns/topology.json');
const catalog = readJson<Record<string, CatalogEntry>>('geo-data/regions.json');

/** probe.port from the example config, or a failure that says what is missing. */
function probePort(): number {
  const port = config.probe?.port;
  if (typeof port !== 'number') {
    throw new Error('examples/meridian.yaml has no probe.port: the GeoDNS examples check Meridian on the probe listener (probe: { host, port }), so the example config must configure it');
  }
  return port;
}

/** The endpoints every example must cover, from topology.json. */
const endpoints: Endpoint[] = Object.entries(topology.regions).flatMap(([region, r]) =>
  Object.entries(r.zones).map(([zone, ip]) => ({ region, zone, ip })),
);
const key = (e: { region: string; zone: string }): string => `${e.region}/${e.zone}`;
const expectedEndpoints = endpoints.map((e) => `${key(e)}=${e.ip}`).sort();
const ipOf = new Map(endpoints.map((e) => [key(e), e.ip]));
const coordinates = (region: string): CatalogEntry => {
  const entry = catalog[config.regions[region]!.location];
  if (!entry) throw new Error(`no catalog entry for ${config.regions[region]!.location}`);
  return entry;
};

function distanceKm(a: { lat: number; lon: number }, b: { lat: number; lon: number }): number {
  const rad = (x: number): number => (x * Math.PI) / 180;
  const h = Math.sin(rad(b.lat - a.lat) / 2) ** 2 + Math.cos(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.sin(rad(b.lon - a.lon) / 2) ** 2;
  return 12742 * Math.asin(Math.sqrt(h));
}

// ---------------------------------------------------------------------------------------------------------------
// A reader for the HCL the examples use: blocks, `name = value` attributes, string/number/bool literals, object and
// list literals, and `local.x` references. Anything else (for expressions, function calls) is kept as text.

/** Drops comments and keeps strings, so braces and `#` inside strings are left alone. */
function stripComments(src: string): string {
  let out = '';
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === '"') {
      const end = stringEnd(src, i);
      out += src.slice(i, end + 1);
      i = end;
    } else if (c === '#' || (c === '/' && src[i + 1] === '/')) {
      while (i < src.length && src[i] !== '\n') i++;
      out += '\n';
    } else {
      out += c;
    }
  }
  return out;
}

function stringEnd(src: string, open: number): number {
  for (let i = open + 1; i < src.length; i++) {
    if (src[i] === '\\') i++;
    else if (src[i] === '"') return i;
  }
  throw new Error('unterminated string');
}

/** The bodies of every block whose header matches, e.g. /resource "aws_route53_record" "zone"/. */
function blocks(src: string, header: RegExp): string[] {
  const found: string[] = [];
  const re = new RegExp(`${header.source}\\s*\\{`, `${header.flags.replace('g', '')}g`);
  for (let m = re.exec(src); m; m = re.exec(src)) {
    const open = m.index + m[0].length - 1;
    let depth = 0;
    for (let i = open; i < src.length; i++) {
      const c = src[i];
      if (c === '"') i = stringEnd(src, i);
      else if (c === '{') depth++;
      else if (c === '}' && --depth === 0) {
        found.push(src.slice(open + 1, i));
        break;
      }
    }
  }
  return found;
}

function block(src: string, header: RegExp): string {
  const found = blocks(src, header);
  if (found.length !== 1) throw new Error(`expected one block ${header}, found ${found.length}`);
  return found[0]!;
}

/** The `name = value` attributes directly in a body (not in its nested blocks). */
function attributes(body: string): Map<string, string> {
  const map = new Map<string, string>();
  let statement = '';
  let depth = 0;
  const push = (): void => {
    const m = /^\s*([A-Za-z_][\w-]*)\s*=\s*([\s\S]*?)\s*$/.exec(statement);
    if (m && depth === 0) map.set(m[1]!, m[2]!);
    statement = '';
  };
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === '"') {
      const end = stringEnd(body, i);
      statement += body.slice(i, end + 1);
      i = end;
      continue;
    }
    if ('{[('.includes(c)) depth++;
    if ('}])'.includes(c)) depth--;
    if (c === '\n' && depth === 0) push();
    else statement += c;
  }
  push();
  return map;
}

type Value = string | number | boolean | Value[] | { [key: string]: Value };

/** Parses an HCL literal (object, list, string, number, bool); other expressions come back as their text. */
function literal(raw: string): Value {
  const tokens = raw.match(/"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|[A-Za-z_][\w.-]*|[{}[\]=,\n]/g) ?? [];
  let at = 0;
  const skipNewlines = (): void => {
    while (tokens[at] === '\n' || tokens[at] === ',') at++;
  };
  const parse = (): Value => {
    skipNewlines();
    const t = tokens[at++];
    if (t === undefined) throw new Error(`unexpected end of ${raw}`);
    if (t === '{') {
      const object: Record<string, Value> = {};
      for (skipNewlines(); tokens[at] !== '}'; skipNewlines()) {
        const k = tokens[at++]!;
        if (tokens[at++] !== '=') throw new Error(`expected = after ${k} in ${raw}`);
        object[k.startsWith('"') ? (JSON.parse(k) as string) : k] = parse();
      }
      at++;
      return object;
    }
    if (t === '[') {
      const list: Value[] = [];
      for (skipNewlines(); tokens[at] !== ']'; skipNewlines()) list.push(parse());
      at++;
      return list;
    }
    if (t.startsWith('"')) return JSON.parse(t) as string;
    if (/^-?\d/.test(t)) return Number(t);
    if (t === 'true' || t === 'false') return t === 'true';
    throw new Error(`not a literal: ${raw}`);
  };
  const trimmed = raw.trim();
  if (!/^[[{"\d-]|^(true|false)$/.test(trimmed)) return trimmed;
  try {
    return parse();
  } catch {
    return trimmed;
  }
}

/** Reads lazily, so a file that cannot be parsed fails its own tests instead of the whole file. */
function once<T>(load: () => T): () => T {
  let value: { v: T } | undefined;
  return () => (value ??= { v: load() }).v;
}

/** A Terraform example: its locals, and a way to read an attribute with `local.x` resolved. */
function terraform(path: string) {
  const src = stripComments(read(path));
  const locals = attributes(block(src, /^locals/m));
  const resolve = (raw: string | undefined, seen: string[] = []): Value => {
    if (raw === undefined) return undefined as unknown as Value;
    const ref = /^local\.(\w+)$/.exec(raw.trim());
    if (!ref) return literal(raw);
    if (seen.includes(ref[1]!) || !locals.has(ref[1]!)) throw new Error(`${path}: unknown local ${ref[1]}`);
    return resolve(locals.get(ref[1]!), [...seen, ref[1]!]);
  };
  const attr = (body: string, name: string): Value => resolve(attributes(body).get(name));
  /** The attribute's expression as written, for references such as `local.endpoints`. */
  const ref = (body: string, name: string): string | undefined => attributes(body).get(name);
  const regions = resolve('local.regions') as Record<string, { zones: Record<string, string> } & Record<string, Value>>;
  return { src, locals, resolve, attr, ref, regions };
}

/** region/zone=ip for every zone of a `regions` local. */
function zonesOf(regions: Record<string, { zones: Record<string, string> }>): string[] {
  return Object.entries(regions)
    .flatMap(([region, r]) => Object.entries(r.zones ?? {}).map(([zone, ip]) => `${region}/${zone}=${ip}`))
    .sort();
}

/** The `endpoints` local must be built from `regions`, one entry per zone. */
function expectEndpointsFromRegions(locals: Map<string, string>): void {
  const endpoints = locals.get('endpoints') ?? '';
  expect(endpoints).toMatch(/for\s+region\s*,\s*r\s+in\s+local\.regions/);
  expect(endpoints).toMatch(/for\s+zone\s*,\s*ip\s+in\s+r\.zones/);
}

/** The guide's statement `at least **Ns**` for shutdown.drainDelay. */
function guideDrainDelay(guide: string): number {
  const m = /`shutdown\.drainDelay`[^.]*?at\s+least\s+\*\*(\d+)s\*\*/.exec(guide);
  if (!m) throw new Error('the guide does not say how long shutdown.drainDelay must be (`at least **Ns**`)');
  return Number(m[1]);
}

/** The first `N seconds` of the guide's TTL section. */
function guideTtl(guide: string): number {
  const section = /^## TTL\b([\s\S]*?)(?=^## )/m.exec(guide)?.[1] ?? '';
  const m = /(\d+) seconds/.exec(section);
  if (!m) throw new Error('the TTL section does not name the TTL in seconds');
  return Number(m[1]);
}

// ---------------------------------------------------------------------------------------------------------------

const GUIDES = {
  'route53.md': 'route53/main.tf',
  'azure-traffic-manager.md': 'azure-traffic-manager/main.tf',
  'google-cloud-dns.md': 'google-cloud-dns/main.tf',
  'cloudns.md': 'cloudns/requests.json',
  'bunny-dns.md': 'bunny-dns/requests.json',
  'cloudflare-load-balancing.md': 'cloudflare-load-balancing/main.tf',
} as const;
const guide = (name: keyof typeof GUIDES): string => read(`deploy/geodns/${name}`);

describe('the reference topology', () => {
  test('examples/meridian.yaml has a probe listener', () => {
    expect(probePort()).toBeGreaterThan(0);
  });

  test('topology.json has the regions and zones of examples/meridian.yaml, each at its own public address', () => {
    expect(Object.keys(topology.regions).sort()).toEqual(Object.keys(config.regions).sort());
    expect(Object.keys(topology.regions)).toHaveLength(4);
    for (const [region, r] of Object.entries(topology.regions)) {
      expect(r.location, region).toBe(config.regions[region]!.location);
      expect(Object.keys(r.zones).sort(), region).toEqual(Object.keys(config.regions[region]!.zones).sort());
      expect(Object.keys(r.zones).sort(), region).toEqual(['az-1', 'az-3']);
    }
    const ips = endpoints.map((e) => e.ip);
    expect(new Set(ips).size).toBe(8);
    for (const ip of ips) expect(ip).toMatch(/^(192\.0\.2|198\.51\.100|203\.0\.113)\.\d{1,3}$/);
    expect(topology.name).toBe('appwrite.example.com');
  });

  test('topology.json checks the probe listener: plain HTTP, /readyz, probe.port, 200', () => {
    expect(topology.probe).toEqual({ port: probePort(), path: '/readyz', protocol: 'HTTP', expectStatus: 200 });
  });

  test("each provider region named in topology.json is near the Meridian region's location", () => {
    for (const [region, r] of Object.entries(topology.regions)) {
      for (const [provider, name] of Object.entries(r.near)) {
        const place = catalog[name];
        expect(place, `${region} ${provider} ${name}`).toBeDefined();
        expect(distanceKm(place!, coordinates(region)), `${region} → ${name}`).toBeLessThan(500);
      }
    }
  });

  test('deploy/geodns/README.md lists every address and every guide', () => {
    const readme = read('deploy/geodns/README.md');
    for (const [region, r] of Object.entries(topology.regions)) {
      expect(readme).toContain(`| ${region} | \`${r.location}\` | ${r.zones['az-1']} | ${r.zones['az-3']} |`);
    }
    for (const [name, example] of Object.entries(GUIDES)) {
      expect(readme).toContain(`(${name})`);
      expect(readme).toContain(`(${example})`);
    }
  });
});

describe('the guides', () => {
  for (const [name, example] of Object.entries(GUIDES) as [keyof typeof GUIDES, string][]) {
    test(`${name} exists, links its example and has the TTL and failure sections`, () => {
      expect(existsSync(new URL(`deploy/geodns/${name}`, ROOT)), name).toBe(true);
      expect(existsSync(new URL(`deploy/geodns/${example}`, ROOT)), example).toBe(true);
      const text = guide(name);
      expect(text).toContain(`(${example})`);
      expect(text).toMatch(/^## Health check$/m);
      expect(text).toMatch(/^## TTL$/m);
      expect(text).toMatch(/^## Zone failure$/m);
      expect(text).toMatch(/^## Region failure$/m);
      expect(text).toContain('/readyz');
      expect(text).toContain('`shutdown.drainDelay`');
    });
  }

  test('README.md points to deploy/geodns/ and names all six providers', () => {
    const section = /^### Readiness and GeoDNS$([\s\S]*?)^## /m.exec(read('README.md'))?.[1] ?? '';
    expect(section).toContain('deploy/geodns/');
    for (const provider of ['Route 53', 'Azure Traffic Manager', 'Google Cloud DNS', 'ClouDNS', 'Bunny DNS', 'Cloudflare Load Balancing']) {
      expect(section).toContain(provider);
    }
  });
});

describe('AWS Route 53 (route53/main.tf)', () => {
  const tf = once(() => terraform('deploy/geodns/route53/main.tf'));

  test('every zone of every region, at the topology addresses, placed at the AWS region of its location', () => {
    const t = tf();
    expect(zonesOf(t.regions)).toEqual(expectedEndpoints);
    for (const [region, r] of Object.entries(t.regions)) {
      expect(`aws:${r.aws_region}`, region).toBe(config.regions[region]!.location);
    }
    expectEndpointsFromRegions(t.locals);
  });

  test('one HTTP health check per Meridian on /readyz at probe.port', () => {
    const t = tf();
    const check = block(t.src, /resource\s+"aws_route53_health_check"\s+"meridian"/);
    expect(t.ref(check, 'for_each')).toBe('local.endpoints');
    expect(t.attr(check, 'type')).toBe('HTTP');
    expect(t.ref(check, 'ip_address')).toBe('each.value.ip');
    expect(t.attr(check, 'port')).toBe(probePort());
    expect(t.attr(check, 'resource_path')).toBe('/readyz');
    expect([10, 30]).toContain(t.attr(check, 'request_interval'));
    expect((t.attr(check, 'regions') as string[]).length).toBeGreaterThanOrEqual(3);
  });

  test('multivalue records per zone tied to their checks, geoproximity aliases per region', () => {
    const t = tf();
    const zone = block(t.src, /resource\s+"aws_route53_record"\s+"zone"/);
    expect(t.ref(zone, 'for_each')).toBe('local.endpoints');
    expect(t.ref(zone, 'records')).toBe('[each.value.ip]');
    expect(t.ref(zone, 'health_check_id')).toBe('aws_route53_health_check.meridian[each.key].id');
    expect(t.attr(zone, 'multivalue_answer_routing_policy')).toBe(true);
    const ttl = t.attr(zone, 'ttl') as number;
    expect(ttl).toBeGreaterThanOrEqual(30);
    expect(ttl).toBeLessThanOrEqual(60);
    expect(guideTtl(guide('route53.md'))).toBe(ttl);

    const region = block(t.src, /resource\s+"aws_route53_record"\s+"region"/);
    expect(t.ref(region, 'for_each')).toBe('local.regions');
    expect(t.ref(block(region, /geoproximity_routing_policy/), 'aws_region')).toBe('each.value.aws_region');
    expect(t.attr(block(region, /alias/), 'evaluate_target_health')).toBe(true);
  });

  test('the guide asks for a drainDelay of interval × threshold', () => {
    const t = tf();
    const check = block(t.src, /resource\s+"aws_route53_health_check"\s+"meridian"/);
    const detection = (t.attr(check, 'request_interval') as number) * (t.attr(check, 'failure_threshold') as number);
    expect(guideDrainDelay(guide('route53.md'))).toBe(detection);
  });
});

describe('Azure Traffic Manager (azure-traffic-manager/main.tf)', () => {
  const tf = once(() => terraform('deploy/geodns/azure-traffic-manager/main.tf'));
  const monitors = (): string[] => blocks(tf().src, /monitor_config/);

  test('every zone of every region, at the topology addresses, placed at the Azure region nearest to it', () => {
    const t = tf();
    expect(zonesOf(t.regions)).toEqual(expectedEndpoints);
    for (const [region, r] of Object.entries(t.regions)) {
      expect(r.endpoint_location, region).toBe(catalog[topology.regions[region]!.near.azure!]!.name);
    }
    expectEndpointsFromRegions(t.locals);
  });

  test('every profile monitors HTTP /readyz at probe.port and accepts 200 only', () => {
    const t = tf();
    expect(monitors()).toHaveLength(2); // the parent, and the per-region profile (for_each)
    for (const monitor of monitors()) {
      expect(t.attr(monitor, 'protocol')).toBe('HTTP');
      expect(t.attr(monitor, 'port')).toBe(probePort());
      expect(t.attr(monitor, 'path')).toBe('/readyz');
      expect(t.attr(monitor, 'expected_status_code_ranges')).toEqual(['200-200']);
      expect(t.attr(monitor, 'interval_in_seconds')).toBe(10);
      expect(t.attr(monitor, 'timeout_in_seconds') as number).toBeLessThan(10);
    }
  });

  test('performance parent, weighted child per region, one external endpoint per Meridian', () => {
    const t = tf();
    const parent = block(t.src, /resource\s+"azurerm_traffic_manager_profile"\s+"parent"/);
    expect(t.attr(parent, 'traffic_routing_method')).toBe('Performance');
    const child = block(t.src, /resource\s+"azurerm_traffic_manager_profile"\s+"region"/);
    expect(t.ref(child, 'for_each')).toBe('local.regions');
    expect(t.attr(child, 'traffic_routing_method')).toBe('Weighted');
    for (const profile of [parent, child]) {
      const ttl = t.attr(block(profile, /dns_config/), 'ttl') as number;
      expect(ttl).toBeGreaterThanOrEqual(30);
      expect(ttl).toBeLessThanOrEqual(60);
      expect(guideTtl(guide('azure-traffic-manager.md'))).toBe(ttl);
    }
    const external = block(t.src, /resource\s+"azurerm_traffic_manager_external_endpoint"\s+"zone"/);
    expect(t.ref(external, 'for_each')).toBe('local.endpoints');
    expect(t.ref(external, 'target')).toBe('each.value.ip');
    expect(t.ref(external, 'profile_id')).toBe('azurerm_traffic_manager_profile.region[each.value.region].id');
    const nested = block(t.src, /resource\s+"azurerm_traffic_manager_nested_endpoint"\s+"region"/);
    expect(t.ref(nested, 'for_each')).toBe('local.regions');
    expect(t.ref(nested, 'endpoint_location')).toBe('each.value.endpoint_location');
    expect(t.attr(nested, 'minimum_child_endpoints')).toBe(1);
  });

  test('the guide asks for a drainDelay of interval × (tolerated failures + 1)', () => {
    const t = tf();
    const monitor = monitors()[0]!;
    const detection = (t.attr(monitor, 'interval_in_seconds') as number) * ((t.attr(monitor, 'tolerated_number_of_failures') as number) + 1);
    expect(guideDrainDelay(guide('azure-traffic-manager.md'))).toBe(detection);
  });
});

describe('Google Cloud DNS (google-cloud-dns/main.tf)', () => {
  const tf = once(() => terraform('deploy/geodns/google-cloud-dns/main.tf'));
  const check = (): string => block(tf().src, /resource\s+"google_compute_health_check"\s+"meridian"/);

  test('every zone of every region, at the topology addresses, placed at the Google Cloud region nearest to it', () => {
    const t = tf();
    expect(zonesOf(t.regions)).toEqual(expectedEndpoints);
    for (const [region, r] of Object.entries(t.regions)) {
      expect(`gcp:${r.location}`, region).toBe(topology.regions[region]!.near.gcp);
    }
  });

  test('the health check is HTTP /readyz at probe.port from exactly three source regions', () => {
    const t = tf();
    expect(blocks(check(), /https_health_check|tcp_health_check|http2_health_check/)).toHaveLength(0);
    const http = block(check(), /http_health_check/);
    expect(t.attr(http, 'port')).toBe(probePort());
    expect(t.attr(http, 'request_path')).toBe('/readyz');
    expect((t.attr(check(), 'source_regions') as string[]).length).toBe(3);
    expect(t.attr(check(), 'check_interval_sec') as number).toBeGreaterThanOrEqual(30);
  });

  test('a geolocation item per region whose two zones are health-checked external endpoints', () => {
    const t = tf();
    const record = block(t.src, /resource\s+"google_dns_record_set"\s+"appwrite"/);
    const policy = block(record, /routing_policy/);
    expect(t.ref(policy, 'health_check')).toBe('google_compute_health_check.meridian.id');
    expect(t.attr(policy, 'enable_geo_fencing')).toBe(false);
    const geo = block(policy, /dynamic\s+"geo"/);
    expect(t.ref(geo, 'for_each')).toBe('local.regions');
    const content = block(geo, /content/);
    expect(t.ref(content, 'location')).toBe('geo.value.location');
    expect(t.ref(block(content, /health_checked_targets/), 'external_endpoints')).toBe('values(geo.value.zones)');
    const ttl = t.attr(record, 'ttl') as number;
    expect(ttl).toBeGreaterThanOrEqual(30);
    expect(ttl).toBeLessThanOrEqual(60);
    expect(guideTtl(guide('google-cloud-dns.md'))).toBe(ttl);
  });

  test('the guide asks for a drainDelay of interval × unhealthy threshold', () => {
    const t = tf();
    const detection = (t.attr(check(), 'check_interval_sec') as number) * (t.attr(check(), 'unhealthy_threshold') as number);
    expect(guideDrainDelay(guide('google-cloud-dns.md'))).toBe(detection);
  });
});

describe('Cloudflare Load Balancing (cloudflare-load-balancing/main.tf)', () => {
  const tf = once(() => terraform('deploy/geodns/cloudflare-load-balancing/main.tf'));
  const monitor = (): string => block(tf().src, /resource\s+"cloudflare_load_balancer_monitor"\s+"readyz"/);

  test("every zone of every region, at the topology addresses, each pool at its region's coordinates", () => {
    const t = tf();
    expect(zonesOf(t.regions)).toEqual(expectedEndpoints);
    for (const [region, r] of Object.entries(t.regions)) {
      const at = coordinates(region);
      expect([r.latitude, r.longitude], region).toEqual([at.lat, at.lon]);
    }
    expect([...(t.resolve('local.pool_order') as string[])].sort()).toEqual(Object.keys(topology.regions).sort());
  });

  test('the monitor is HTTP GET /readyz at probe.port expecting 200', () => {
    const t = tf();
    expect(t.attr(monitor(), 'type')).toBe('http');
    expect(t.attr(monitor(), 'method')).toBe('GET');
    expect(t.attr(monitor(), 'port')).toBe(probePort());
    expect(t.attr(monitor(), 'path')).toBe('/readyz');
    expect(t.attr(monitor(), 'expected_codes')).toBe('200');
  });

  test('one pool per region with one origin per zone, proximity steering, DNS-only', () => {
    const t = tf();
    const pool = block(t.src, /resource\s+"cloudflare_load_balancer_pool"\s+"region"/);
    expect(t.ref(pool, 'for_each')).toBe('local.regions');
    expect(t.ref(pool, 'monitor')).toBe('cloudflare_load_balancer_monitor.readyz.id');
    expect(t.ref(pool, 'latitude')).toBe('each.value.latitude');
    expect((t.attr(pool, 'check_regions') as string[]).length % 2).toBe(1);
    const origins = attributes(pool).get('origins') ?? '';
    expect(origins).toMatch(/for\s+zone\s*,\s*ip\s+in\s+each\.value\.zones/);
    expect(origins).toMatch(/address\s*=\s*ip\b/);
    const lb = block(t.src, /resource\s+"cloudflare_load_balancer"\s+"appwrite"/);
    expect(t.attr(lb, 'steering_policy')).toBe('proximity');
    expect(t.attr(lb, 'proxied')).toBe(false);
    const ttl = t.attr(lb, 'ttl') as number;
    expect(ttl).toBeGreaterThanOrEqual(30);
    expect(ttl).toBeLessThanOrEqual(60);
    expect(guideTtl(guide('cloudflare-load-balancing.md'))).toBe(ttl);
  });

  test('the guide asks for a drainDelay of interval × consecutive_down', () => {
    const t = tf();
    const detection = (t.attr(monitor(), 'interval') as number) * (t.attr(monitor(), 'consecutive_down') as number);
    expect(guideDrainDelay(guide('cloudflare-load-balancing.md'))).toBe(detection);
  });
});

describe('ClouDNS (cloudns/requests.json)', () => {
  interface ClouDnsRecord {
    region: string;
    zone: string;
    'geodns-code': string;
    addRecord: { endpoint: string; body: Record<string, string | number> };
    activateFailover: { endpoint: string; body: Record<string, string | number> };
  }
  const load = once(() => readJson<{ records: ClouDnsRecord[] }>('deploy/geodns/cloudns/requests.json').records);

  test('every zone of every region has records at its topology address, and every location gets both zones of one region', () => {
    const records = load();
    const covered = new Set(records.map((r) => `${key(r)}=${r.addRecord.body.record}`));
    expect([...covered].sort()).toEqual(expectedEndpoints);
    const byCode = new Map<string, ClouDnsRecord[]>();
    for (const r of records) byCode.set(r['geodns-code'], [...(byCode.get(r['geodns-code']) ?? []), r]);
    for (const [code, list] of byCode) {
      expect(list.map((r) => r.zone).sort(), code).toEqual(['az-1', 'az-3']);
      expect(new Set(list.map((r) => r.region)).size, code).toBe(1);
    }
    for (const r of records) {
      expect(r.addRecord.endpoint).toBe('POST https://api.cloudns.net/dns/add-record.json');
      expect(r.addRecord.body).toMatchObject({ 'record-type': 'A', host: 'appwrite', 'domain-name': 'example.com', 'geodns-code': r['geodns-code'] });
      expect(r.addRecord.body.record).toBe(ipOf.get(key(r)));
      expect(r.addRecord.body.ttl).toBe(guideTtl(guide('cloudns.md')));
    }
  });

  test("every record's failover checks HTTP /readyz at probe.port on the record's own Meridian", () => {
    const records = load();
    for (const r of records) {
      const body = r.activateFailover.body;
      expect(r.activateFailover.endpoint).toBe('POST https://api.cloudns.net/dns/failover-activate.json');
      expect(body, key(r)).toMatchObject({ check_type: 4, port: probePort(), path: '/readyz', http_request_type: 'GET', main_ip: ipOf.get(key(r)) });
      const sibling = ipOf.get(`${r.region}/${r.zone === 'az-1' ? 'az-3' : 'az-1'}`);
      expect(body.backup_ip_1, key(r)).toBe(sibling);
      for (const [name, value] of Object.entries(body)) {
        if (name.startsWith('backup_ip_')) expect([...ipOf.values()], `${key(r)} ${name}`).toContain(value);
      }
    }
  });

  test('the guide asks for a drainDelay of one check period', () => {
    const records = load();
    const periods = new Set(records.map((r) => r.activateFailover.body.check_period));
    expect(periods.size).toBe(1);
    expect(guideDrainDelay(guide('cloudns.md'))).toBe([...periods][0]);
  });
});

describe('Bunny DNS (bunny-dns/requests.json)', () => {
  interface BunnyRequests {
    addRecord: { region: string; zone: string; endpoint: string; body: Record<string, string | number | boolean> }[];
    readinessRelay: {
      checks: { region: string; zone: string; url: string; protocol: string; port: number; path: string; expectStatus: number; intervalSeconds: number; failureThreshold: number }[];
      update: { endpoint: string };
    };
  }
  const load = once(() => readJson<BunnyRequests>('deploy/geodns/bunny-dns/requests.json'));

  test("one geolocation smart record per zone at its topology address and its region's coordinates", () => {
    const requests = load();
    expect(requests.addRecord.map((r) => `${key(r)}=${r.body.Value}`).sort()).toEqual(expectedEndpoints);
    for (const r of requests.addRecord) {
      const at = coordinates(r.region);
      expect(r.endpoint).toBe('PUT https://api.bunny.net/dnszone/{zoneId}/records');
      expect(r.body, key(r)).toMatchObject({ Type: 0, Name: 'appwrite', SmartRoutingType: 2, GeolocationLatitude: at.lat, GeolocationLongitude: at.lon });
      expect(r.body.Ttl).toBe(guideTtl(guide('bunny-dns.md')));
    }
  });

  test('the readiness relay checks each Meridian over plain HTTP on /readyz at probe.port and expects 200', () => {
    const requests = load();
    const port = probePort();
    expect(requests.readinessRelay.checks.map((c) => key(c)).sort()).toEqual(endpoints.map(key).sort());
    for (const c of requests.readinessRelay.checks) {
      expect(c, key(c)).toMatchObject({ protocol: 'HTTP', port, path: '/readyz', expectStatus: 200, url: `http://${ipOf.get(key(c))}:${port}/readyz` });
    }
    expect(requests.readinessRelay.update.endpoint).toBe('POST https://api.bunny.net/dnszone/{zoneId}/records/{recordId}');
  });

  test('the guide asks for a drainDelay of the relay interval × threshold', () => {
    const requests = load();
    const detections = new Set(requests.readinessRelay.checks.map((c) => c.intervalSeconds * c.failureThreshold));
    expect(detections.size).toBe(1);
    expect(guideDrainDelay(guide('bunny-dns.md'))).toBe([...detections][0]);
  });
});
