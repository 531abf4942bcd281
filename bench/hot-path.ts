// Microbenchmark of the per-request hot path (the goal: under 2 µs): client-ip behind two trusted hops, cached geo
// lookup, memoized routing, the upstream header list, the process-wide counters every exchange updates in shared
// memory (in flight, circuit slot, latency, outcome) and the rate limits for a client under them, each alone and all
// six together.
// Run: node bench/hot-path.ts   (BENCH_ITERATIONS, default 5 000 000 per phase and round)
import { readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { loadavg } from 'node:os';
import { compileConfig } from '../src/config/compile.ts';
import { resolveClientIp } from '../src/geo/client-ip.ts';
import type { GeoLocation } from '../src/geo/database.ts';
import { DEFAULT_GEO_DATABASES, GeoLocator } from '../src/geo/locator.ts';
import { upstreamRequestHeaders, type ForwardingFacts } from '../src/proxy/headers.ts';
import { createGeoRouter } from '../src/routing/geo-router.ts';
import { createSharedTables, openEndpointTables } from '../src/proxy/shared-tables.ts';
import { Traffic } from '../src/proxy/plane.ts';
import { allocateBuckets, monotonicClock, RateLimiter } from '../src/proxy/rate-limit.ts';
import { PASSED } from '../src/proxy/rate-buckets.ts';
import type { RouteFacts } from '../src/routing/types.ts';
import { AreaHomes } from '../src/routing/area-homes.ts';
import { decide } from '../src/routing/geo-router.ts';
import type { RegionLatency } from '../src/routing/latency-cost.ts';
import { describeEnvironment } from './machine.ts';

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 5_000_000);
const WARMUP = Math.min(1_000_000, ITERATIONS);
/** Rounds per phase; the median is reported, so one noisy round does not decide. */
const ROUNDS = 3;
/** Distinct client addresses, a power of two so the loop indexes with a mask. */
const CLIENTS = 4096;
const GOAL_NS = 2000;

const PEER = '10.0.0.2';

// A fixed seed, so every run sees the same clients.
let seed = 0x9e3779b9;
function random(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 32;
}
const byte = (): number => Math.floor(random() * 256);

/** Public-looking addresses: nine in ten IPv4 from the large unicast blocks, one in ten IPv6 in 2000::/3. */
function clientAddress(): string {
  if (random() < 0.1) {
    const groups = Array.from({ length: 4 }, () => Math.floor(random() * 65536).toString(16));
    return `2${Math.floor(random() * 16).toString(16)}${byte().toString(16).padStart(2, '0')}:${groups.join(':')}::${Math.floor(random() * 65536).toString(16)}`;
  }
  const first = [24, 31, 46, 62, 66, 77, 81, 89, 93, 109, 151, 176, 185, 195, 212, 216][Math.floor(random() * 16)];
  return `${first}.${byte()}.${byte()}.${1 + Math.floor(random() * 254)}`;
}

const config = compileConfig(
  {
    self: { region: 'us-east', zone: 'az-1' },
    geo: { trustedProxies: ['10.0.0.0/8'] },
    regions: {
      'us-west': { location: [45.52, -122.68], zones: { 'az-1': { endpoints: ['http://10.1.1.10'] }, 'az-3': { endpoints: ['http://10.1.3.10'] } } },
      'us-east': { location: [39.04, -77.49], zones: { 'az-1': { endpoints: ['http://10.2.1.10'] }, 'az-3': { endpoints: ['http://10.2.3.10'] } } },
      'eu-north': { location: [59.33, 18.07], zones: { 'az-1': { endpoints: ['http://10.3.1.10'] }, 'az-3': { endpoints: ['http://10.3.3.10'] } } },
      'eu-south': { location: [45.46, 9.19], zones: { 'az-1': { endpoints: ['http://10.4.1.10'] }, 'az-3': { endpoints: ['http://10.4.3.10'] } } },
    },
    routing: { fences: [{ match: { continent: 'EU' }, regions: ['eu-north', 'eu-south'], mode: 'preferred' }] },
    // A sign-in rule the benchmarked GET does not match, and one for the whole API that it does, far above its rate:
    // every request is checked against both and takes a token from the second, in the shared bucket table.
    rateLimits: {
      rules: [
        { name: 'sign-in', pathPrefix: '/v1/account/sessions', methods: ['POST'], rate: 1, burst: 10 },
        { name: 'api', rate: 1e6, burst: 1e6 },
      ],
    },
  },
  {},
);
const trusted = config.geo.trustedProxies;
const locator = await GeoLocator.open(DEFAULT_GEO_DATABASES, { cacheSize: config.geo.cacheSize });
// Latency order as workers run it: the control plane's published area homes, with every region measured.
const homes = new AreaHomes(config);
const measuredLatency = (tick: number): RegionLatency[] =>
  config.topology.regions.map((_, r) => ({ rttMs: 20 + r + (tick % 7), floorMs: 20 + r, errorRatio: r === 1 ? 0.01 : 0 }));
homes.update(measuredLatency(0), 0);
const router = createGeoRouter(config, undefined, homes.published);
const distanceConfig = compileConfig({ ...config.input, routing: { ...config.input.routing, order: 'distance' } }, {});
const distanceRouter = createGeoRouter(distanceConfig);

// The load balancer in front appended itself to the client's entry: two hops, the right one trusted.
const clients = Array.from({ length: CLIENTS }, clientAddress);
const forwardedFor = clients.map((ip) => `${ip}, 10.0.5.7`);

/** What an Appwrite web SDK sends to the REST API, as node:http hands it over. */
const rawHeaders = [
  'Host', 'api.example.com',
  'Connection', 'keep-alive',
  'User-Agent', 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
  'Accept', 'application/json',
  'Accept-Encoding', 'gzip, deflate, br',
  'Accept-Language', 'en-GB,en;q=0.9',
  'Content-Type', 'application/json',
  'Origin', 'https://app.example.com',
  'Referer', 'https://app.example.com/dashboard',
  'X-Appwrite-Project', 'shop',
  'X-Appwrite-Response-Format', '1.6.0',
  'X-SDK-Name', 'Web',
  'X-SDK-Platform', 'client',
  'X-SDK-Version', '16.0.0',
  'X-Fallback-Cookies', '{"a_session_shop":"eyJpZCI6IjY2NmYxIiwic2VjcmV0IjoiYWJjIn0="}',
  'X-Forwarded-For', '', // filled per client
  'X-Forwarded-Proto', 'https',
];
const headerObject = (raw: string[]): IncomingHttpHeaders => {
  const out: IncomingHttpHeaders = {};
  for (let i = 0; i < raw.length; i += 2) out[raw[i].toLowerCase()] = raw[i + 1];
  return out;
};
const XFF_INDEX = rawHeaders.indexOf('X-Forwarded-For') + 1;
const raws = forwardedFor.map((xff) => rawHeaders.with(XFF_INDEX, xff));
const headers = raws.map(headerObject);

/** The exchange doubles as route facts and forwarding facts in the data plane; one mutable object stands in for it. */
interface Facts extends RouteFacts, ForwardingFacts {
  clientIp: string;
  location: GeoLocation | null;
}
const newFacts = (clientIp: string, location: GeoLocation | null): Facts => ({
  clientIp,
  peerIp: PEER,
  trustedPeer: true,
  clientAddressHeaders: config.geo.clientAddressHeaders,
  requestId: '0b8f5a0e-3f8c-4a55-8d8e-6a9a2f0c1d11',
  proto: 'https',
  forwardedHost: 'api.example.com',
  appendForwardedFor: false,
  host: 'api.example.com',
  location,
  project: undefined,
  pinnedRegion: undefined,
});

// Warm the geo cache and the route memo: every later lookup is a hit, as for a returning client.
const resolved = forwardedFor.map((xff) => resolveClientIp(PEER, xff, trusted));
const locations = resolved.map((ip) => locator.locate(ip));
const facts = resolved.map((ip, i) => newFacts(ip, locations[i]));
for (const f of facts) router.route(f);
for (const f of facts) distanceRouter.route(f);

// The counters as a worker sees them: views over shared buffers, updated with Atomics.
const tables = createSharedTables(config.topology.endpoints.length);
const { load, outcomes } = openEndpointTables(tables, config.outlierDetection.consecutiveFailures, () => {});
const traffic = new Traffic(tables.traffic);
const SLOTS = config.circuitBreaker.maxRequests;
/** The limiter as a worker holds it: its rules over the process's shared bucket table. */
const limiter = new RateLimiter(config.rateLimits, config.input.geo.trustedProxies, allocateBuckets(config.rateLimits));
const PATH = '/v1/databases/shop/collections/orders/documents';
let refused = 0;
/**
 * The rate-limit phase for one request of client `ip`: 0 when it passes (as every one here must). The server hands
 * the limiter the time it read when the request arrived, so the clock is read here only once in a while.
 */
let now = monotonicClock();
function rateLimit(ip: string, i: number): number {
  if ((i & MASK) === 0) now = monotonicClock();
  if (limiter.check(ip, 'api.example.com', PATH, 'GET', now) === PASSED) return 0;
  refused++;
  return 1;
}
/** One exchange's counter work: start, take a circuit slot, record latency and success, release, end. */
function countExchange(endpoint: number): number {
  traffic.exchangeStarted();
  const taken = load.tryAcquire(endpoint, SLOTS);
  load.observeLatency(endpoint, 1.5);
  outcomes.success(endpoint);
  if (taken) load.release(endpoint);
  traffic.exchangeEnded();
  return taken ? 1 : 0;
}

let sink = 0;
const MASK = CLIENTS - 1;

const phases: Record<string, (n: number) => void> = {
  'loop (baseline)': (n) => {
    for (let i = 0; i < n; i++) sink += forwardedFor[i & MASK].length;
  },
  'client-ip': (n) => {
    for (let i = 0; i < n; i++) sink += resolveClientIp(PEER, forwardedFor[i & MASK], trusted).length;
  },
  'geo (cached)': (n) => {
    for (let i = 0; i < n; i++) sink += locator.locate(resolved[i & MASK]) === null ? 1 : 2;
  },
  'route (memoized)': (n) => {
    for (let i = 0; i < n; i++) sink += router.route(facts[i & MASK]).candidates.length;
  },
  'route (memoized), distance order': (n) => {
    for (let i = 0; i < n; i++) sink += distanceRouter.route(facts[i & MASK]).candidates.length;
  },
  'upstream headers': (n) => {
    for (let i = 0; i < n; i++) sink += upstreamRequestHeaders(headers[i & MASK], facts[i & MASK], false).length;
  },
  'shared counters': (n) => {
    for (let i = 0; i < n; i++) sink += countExchange(i & 7);
  },
  'rate limit (under it)': (n) => {
    for (let i = 0; i < n; i++) sink += rateLimit(resolved[i & MASK], i);
  },
  'all six together': (n) => {
    const f = newFacts('', null);
    for (let i = 0; i < n; i++) {
      const k = i & MASK;
      const h = headers[k];
      f.clientIp = resolveClientIp(PEER, h['x-forwarded-for'], trusted);
      sink += rateLimit(f.clientIp, i);
      f.location = locator.locate(f.clientIp);
      const decision = router.route(f);
      sink += upstreamRequestHeaders(h, f, false).length;
      sink += countExchange(decision.candidates[0].index);
    }
  },
};

function packageVersion(name: string): string {
  return (JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8')) as { version: string }).version;
}

function nsPerOp(run: (n: number) => void, n: number): number {
  const start = process.hrtime.bigint();
  run(n);
  return Number(process.hrtime.bigint() - start) / n;
}

const env = describeEnvironment();
const located = locations.filter((l) => l !== null).length;
const database = locator.databases[0];
console.log(
  [
    `- date: ${env.date}`,
    `- machine: ${env.cpu}, ${env.cores} cores, ${env.kernel}; not pinned`,
    `- Node ${env.node}; lru-cache ${packageVersion('lru-cache')}, maxmind ${packageVersion('maxmind')}`,
    `- geo: ${database.databaseType} built ${database.buildEpoch.toISOString().slice(0, 10)}; ${CLIENTS} distinct clients, ${located} located`,
    `- ${ITERATIONS.toLocaleString('en')} iterations per phase and round after ${WARMUP.toLocaleString('en')} of warm-up; median of ${ROUNDS} rounds`,
  ].join('\n'),
);

const results: [string, number][] = [];
for (const [name, run] of Object.entries(phases)) {
  run(WARMUP);
  const rounds = Array.from({ length: ROUNDS }, () => nsPerOp(run, ITERATIONS)).sort((a, b) => a - b);
  results.push([name, rounds[Math.floor(ROUNDS / 2)]]);
}

// Off the hot path, each once per client location and router (a router lives until the next health change or
// publication of area homes), and once per hysteresis step on the control plane.
const coldRuns = (name: string, count: number, run: (i: number) => void): [string, number] => {
  for (let i = 0; i < count; i++) run(i);
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i++) run(i);
  return [name, Number(process.hrtime.bigint() - start) / count];
};
const published = homes.published;
const cold: [string, number][] = [
  coldRuns('decision on a memo miss, latency order', 20_000, (i) => void (sink += decide(config, locations[i & MASK], null, undefined, published).candidates.length)),
  coldRuns('decision on a memo miss, distance order', 20_000, (i) => void (sink += decide(distanceConfig, locations[i & MASK], null).candidates.length)),
  coldRuns('area homes step (control plane, ≤ 1/s)', 50, (i) => void (sink += homes.update(measuredLatency(i), i * 1000) ? 1 : 0)),
];

const baseline = results[0][1];
const together = results.at(-1)![1];
const rows = results.map(([name, ns]) => [name, ns.toFixed(1), (ns / together).toFixed(2), `${((100 * ns) / GOAL_NS).toFixed(1)} %`]);
const head = ['phase', 'ns/op', '× together', 'of 2 µs goal'];
const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
const line = (cells: string[]) => `| ${cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join(' | ')} |`;
console.log(['', line(head), `|${widths.map((w, c) => (c === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...rows.map(line)].join('\n'));
console.log(`\nhot path: ${(together - baseline).toFixed(0)} ns/op above the bare loop; goal < ${GOAL_NS} ns: ${together < GOAL_NS ? 'met' : 'NOT met'}`);
const routed = results.find(([name]) => name === 'route (memoized)')![1];
const distanceRouted = results.find(([name]) => name === 'route (memoized), distance order')![1];
console.log(`latency order, memoized: ${(routed - distanceRouted).toFixed(0)} ns/op over distance order (${routed.toFixed(0)} vs ${distanceRouted.toFixed(0)} ns)`);
for (const [name, ns] of cold) console.log(`${name}: ${(ns / 1000).toFixed(1)} µs`);
const limited = results.find(([name]) => name.startsWith('rate limit'))![1];
console.log(`rate limit under it: ${(limited - baseline).toFixed(0)} ns/op above the bare loop (2 rules, ${CLIENTS} clients in the shared table); refused: ${refused}`);
console.log(`1-minute load average: ${env.loadAtStart.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end (this run adds about 1)`);
if (sink === 0) console.log('(sink)');
locator.close();
