// Latency per region from the health checks: real upstreams, one slow to answer its probes, and a dead one. The
// smoothed RTT of each endpoint reaches meridian_endpoint_rtt_seconds, every probe (passing or not) lands once in
// meridian_health_check_duration_seconds, the exposition passes promtool, and /status gives the same per region.
import { afterEach, expect, test } from 'vitest';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HEALTH_CHECK_BUCKETS } from '../src/observe/metrics.ts';
import type { StatusReport } from '../src/admin/status.ts';
import { DEFAULT_HEALTH_PATH } from '../src/config/defaults.ts';
import { closeServer, deadPort, startProxy, until, type RunningProxy } from './support/harness.ts';

/** What the slow upstream waits before answering a probe; a little over the 80 ms the test asserts, as timers may fire early. */
const SLOW_MS = 85;
/** Probes every 100 ms, so a test sees several within a second. */
const FAST_PROBES = { interval: '100ms', unhealthyInterval: '100ms', timeout: '1s' };

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface ProbedUpstream {
  readonly origin: string;
  /** Probes whose request reached this server. */
  readonly probes: number;
  /** How long the next probes wait for their answer. */
  delayMs: number;
}

/** A node:http server that answers every health check after `delayMs` and counts them. */
async function probedUpstream(initialDelayMs: number): Promise<ProbedUpstream> {
  let probes = 0;
  let delayMs = initialDelayMs;
  const server: Server = createServer((req, res) => {
    req.resume();
    if (req.url !== DEFAULT_HEALTH_PATH) return void res.writeHead(404).end();
    probes++;
    const timer = setTimeout(() => res.end('{"version":"test"}'), delayMs);
    res.on('close', () => clearTimeout(timer));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => closeServer(server));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get probes() {
      return probes;
    },
    get delayMs() {
      return delayMs;
    },
    set delayMs(ms: number) {
      delayMs = ms;
    },
  };
}

async function proxyFor(origins: string[]): Promise<RunningProxy> {
  const proxy = await startProxy(origins, { health: FAST_PROBES });
  cleanups.push(() => proxy.shutdown());
  return proxy;
}

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

function parse(body: string): Sample[] {
  return body
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (match === null) throw new Error(`not a sample line: ${line}`);
      const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, name, value]) => [name, value]));
      return { name: match[1], labels, value: Number(match[3]) };
    });
}

/** The samples of `name` whose labels include `labels`. */
function pick(samples: readonly Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

function value(samples: readonly Sample[], name: string, labels: Record<string, string>): number | undefined {
  const found = pick(samples, name, labels);
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

async function scrape(proxy: RunningProxy): Promise<{ body: string; samples: Sample[] }> {
  const { body } = await proxy.meridian.runtime.metrics.scrape();
  return { body, samples: parse(body) };
}

/** Every probe of a zone, by result, from meridian_health_checks_total. */
function checksOf(samples: readonly Sample[], region: string): number {
  return pick(samples, 'meridian_health_checks_total', { region }).reduce((sum, s) => sum + s.value, 0);
}

function promtoolCheck(body: string): { status: number | null; output: string } {
  if (spawnSync('sh', ['-c', 'command -v promtool'], { stdio: 'ignore' }).status !== 0) {
    throw new Error('promtool not found: it comes with the Debian package `prometheus` (apt-get install -y prometheus)');
  }
  const result = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8', timeout: 20_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

test('a region slow to answer probes has the higher RTT, and every probe lands once in the duration histogram', async () => {
  const fast = await probedUpstream(0);
  const slow = await probedUpstream(SLOW_MS);
  // `local` probes the fast upstream, `fallback-1` the slow one.
  const proxy = await proxyFor([fast.origin, slow.origin]);
  const zone = (region: string) => ({ region, zone: 'az-1' });

  // Counts match the probes each upstream saw, once none is in flight (the slow one's is, 85 ms of each cycle).
  const settled = async (atLeast: number): Promise<Sample[]> =>
    until(
      async () => {
        const { samples } = await scrape(proxy);
        const counts = [value(samples, 'meridian_health_check_duration_seconds_count', zone('local')), value(samples, 'meridian_health_check_duration_seconds_count', zone('fallback-1'))];
        return counts[0] === fast.probes && counts[1] === slow.probes && slow.probes >= atLeast ? samples : undefined;
      },
      `${atLeast} probes of each upstream, none in flight`,
      10_000,
    );
  const before = await settled(2);
  const after = await settled(slow.probes + 3);
  for (const region of ['local', 'fallback-1']) {
    const upstream = region === 'local' ? fast : slow;
    const grew = value(after, 'meridian_health_check_duration_seconds_count', zone(region))! - value(before, 'meridian_health_check_duration_seconds_count', zone(region))!;
    expect(grew, region).toBeGreaterThanOrEqual(3);
    // The histogram and the results counter are fed by the same probes.
    expect(value(after, 'meridian_health_check_duration_seconds_count', zone(region)), region).toBe(checksOf(after, region));
    expect(value(after, 'meridian_health_check_duration_seconds_count', zone(region)), region).toBe(upstream.probes);
  }

  const rtt = (region: string): number | undefined => value(after, 'meridian_endpoint_rtt_seconds', zone(region));
  expect(rtt('fallback-1')).toBeGreaterThanOrEqual(SLOW_MS / 1000 - 0.005);
  expect(rtt('fallback-1')).toBeGreaterThanOrEqual(0.08);
  expect(rtt('local')).toBeLessThan(rtt('fallback-1')!);
  expect(rtt('local')).toBeLessThan(0.08);
  // Labelled by endpoint origin, as every endpoint series is.
  expect(pick(after, 'meridian_endpoint_rtt_seconds').map((s) => s.labels.endpoint).sort()).toEqual([fast.origin, slow.origin].sort());

  // Buckets: the bounds promised, cumulative, and every slow probe above 75 ms.
  for (const region of ['local', 'fallback-1']) {
    const buckets = pick(after, 'meridian_health_check_duration_seconds_bucket', zone(region));
    expect(buckets.map((b) => b.labels.le)).toEqual([...HEALTH_CHECK_BUCKETS.map(String), '+Inf']);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i].value).toBeGreaterThanOrEqual(buckets[i - 1].value);
    expect(buckets.at(-1)!.value).toBe(value(after, 'meridian_health_check_duration_seconds_count', zone(region)));
  }
  expect(value(after, 'meridian_health_check_duration_seconds_bucket', { ...zone('fallback-1'), le: '0.075' })).toBe(0);
  const slowCount = value(after, 'meridian_health_check_duration_seconds_count', zone('fallback-1'))!;
  expect(value(after, 'meridian_health_check_duration_seconds_sum', zone('fallback-1'))).toBeGreaterThanOrEqual(0.08 * slowCount);
  expect(value(after, 'meridian_health_check_duration_seconds_sum', zone('local'))).toBeLessThan(value(after, 'meridian_health_check_duration_seconds_sum', zone('fallback-1'))!);

  const { body } = await scrape(proxy);
  expect(promtoolCheck(body)).toEqual({ status: 0, output: '' });


  // /status: the same figures per region, which the dashboard charts.
  const status = (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/status`)).json()) as StatusReport;
  const latency = Object.fromEntries(status.topology.regions.map((r) => [r.name, r.latency]));
  expect(latency['fallback-1'].rttMs).toMatchObject({ endpoints: 1 });
  expect(latency['fallback-1'].rttMs!.avg).toBeGreaterThanOrEqual(80);
  expect(latency['fallback-1'].rttMs!.min).toBe(latency['fallback-1'].rttMs!.max);
  expect(latency.local.rttMs!.avg).toBeLessThan(latency['fallback-1'].rttMs!.avg);
  expect(latency['fallback-1'].checks.count).toBeGreaterThanOrEqual(5);
  expect(latency['fallback-1'].checks.p50Ms).toBeGreaterThanOrEqual(80);
  expect(latency['fallback-1'].checks.p99Ms).toBeGreaterThanOrEqual(latency['fallback-1'].checks.p50Ms!);
  expect(latency.local.checks.p50Ms).toBeLessThan(80);
});

test('the RTT gauge follows the smoothed RTT through a shift too small to reorder zones', async () => {
  // One endpoint, so nothing else rebuilds the routing snapshot, whose RTTs move only on a shift over 20 %.
  const slow = await probedUpstream(SLOW_MS);
  const proxy = await proxyFor([slow.origin]);
  const rtt = async (): Promise<number | undefined> => value((await scrape(proxy)).samples, 'meridian_endpoint_rtt_seconds', { region: 'local' });
  // The first probes run while Meridian starts and may take longer: wait for the EWMA to settle near SLOW_MS.
  await until(async () => {
    const seconds = (await rtt()) ?? 0;
    return seconds >= 0.08 && seconds < (SLOW_MS + 6) / 1000;
  }, 'the RTT to settle', 10_000);
  slow.delayMs = SLOW_MS + 12;
  await until(async () => ((await rtt()) ?? 0) >= (SLOW_MS + 9) / 1000, 'the RTT to follow the slower probes', 10_000);
  // What /status shows is the same EWMA, read between two probes.
  await until(async () => {
    const status = (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/status`)).json()) as StatusReport;
    return (await rtt()) === status.topology.regions[0].zones[0].endpoints[0].rttMs! / 1000;
  }, 'the RTT gauge and /status to agree');
});

test('a region of several endpoints shows their lowest, mean and highest RTT in /status, as the gauges have them', async () => {
  const fast = await probedUpstream(0);
  const slow = await probedUpstream(SLOW_MS);
  const proxy = await startProxy([fast.origin], {
    health: FAST_PROBES,
    regions: { local: { location: [50.11, 8.68], zones: { 'az-1': { endpoints: [fast.origin, slow.origin] } } } },
  });
  cleanups.push(() => proxy.shutdown());
  // Status and scrape read between two probes agree exactly.
  await until(
    async () => {
      const status = (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/status`)).json()) as StatusReport;
      const gauges = pick((await scrape(proxy)).samples, 'meridian_endpoint_rtt_seconds', { region: 'local' }).map((s) => s.value * 1000);
      const spread = status.topology.regions[0].latency.rttMs;
      if (gauges.length !== 2 || spread === null || spread.max < 80) return false;
      expect(spread.endpoints).toBe(2);
      // The gauges are in seconds: back in ms they may differ in the last bits.
      const near = (a: number, b: number): boolean => Math.abs(a - b) < 1e-9;
      return near(spread.min, Math.min(...gauges)) && near(spread.max, Math.max(...gauges)) && near(spread.avg, (gauges[0] + gauges[1]) / 2) && spread.min < 80;
    },
    'the RTT spread of both endpoints',
    10_000,
  );
});

test('failed probes count in the histogram too, and an endpoint that never passed one has no RTT series', async () => {
  const fast = await probedUpstream(0);
  const proxy = await proxyFor([fast.origin, `http://127.0.0.1:${await deadPort()}`]);
  const dead = { region: 'fallback-1', zone: 'az-1' };

  const samples = await until(
    async () => {
      const { samples } = await scrape(proxy);
      return (value(samples, 'meridian_health_checks_total', { ...dead, result: 'failure' }) ?? 0) >= 3 ? samples : undefined;
    },
    'three failed probes of the dead endpoint',
    10_000,
  );
  // Refused connections fail within milliseconds: they are counted, in the low buckets.
  expect(value(samples, 'meridian_health_check_duration_seconds_count', dead)).toBe(checksOf(samples, 'fallback-1'));
  expect(value(samples, 'meridian_health_check_duration_seconds_count', dead)).toBe(value(samples, 'meridian_health_checks_total', { ...dead, result: 'failure' }));
  expect(pick(samples, 'meridian_endpoint_rtt_seconds', dead)).toEqual([]);
  expect(pick(samples, 'meridian_endpoint_rtt_seconds', { region: 'local' })).toHaveLength(1);

  const status = (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/status`)).json()) as StatusReport;
  const region = status.topology.regions.find((r) => r.name === 'fallback-1')!;
  expect(region.latency.rttMs).toBeNull();
  expect(region.latency.checks.count).toBeGreaterThanOrEqual(3);
});

test('every zone has its histogram before its first probe ends', async () => {
  // This upstream holds every probe it gets: the first one is still out when Meridian is scraped.
  let held = 0;
  const server: Server = createServer((req) => {
    req.resume();
    held++;
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => closeServer(server));
  const fast = await probedUpstream(0);
  const proxy = await startProxy([fast.origin, `http://127.0.0.1:${(server.address() as AddressInfo).port}`], { health: { timeout: '30s' } });
  cleanups.push(() => proxy.shutdown());
  await until(() => held === 1, 'the held probe');

  const { samples } = await scrape(proxy);
  const waiting = { region: 'fallback-1', zone: 'az-1' };
  expect(value(samples, 'meridian_health_check_duration_seconds_count', waiting)).toBe(0);
  expect(pick(samples, 'meridian_health_check_duration_seconds_bucket', waiting).map((b) => b.value)).toEqual(new Array(HEALTH_CHECK_BUCKETS.length + 1).fill(0));
  expect(pick(samples, 'meridian_endpoint_rtt_seconds', waiting)).toEqual([]);
});
