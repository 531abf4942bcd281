// Latency order end to end: Meridian in a region an ocean away, two regions at nearly the same distance from a client the
// fixture database places between them, real backends whose health checks can be made slow. The client's home moves
// to the other region only after the hysteresis window, every worker sends the client there, /route explains the
// cost term by term with the pending move, and a region that alternates between slow and fast faster than the window
// never moves the home at all.
import { afterEach, describe, expect, test } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { metricValue, send, until } from './support/harness.ts';
import { cityFixture, cityRecord as city } from './support/mmdb-writer.ts';
import { startWorld, type Layout, type World } from './support/zones.ts';

const LAYOUT: Layout = {
  // This instance's region, ~80 ms of cost away even after its local bonus: probe jitter on a busy machine can never
  // make it the challenger.
  north: { location: [61, -150], zones: { 'az-1': ['north-1'] } },
  // West is nearer the client by ~30 km (0.3 ms of cost): far less than the margin.
  west: { location: [46, 0], zones: { 'az-1': ['west-1'] } },
  east: { location: [46, 10.4], zones: { 'az-1': ['east-1'] } },
};
const CLIENT_IP = '81.2.69.142';
const database = cityFixture([{ network: '81.2.69.0/24', data: city('CH', 'EU', 47, 5) }]);
/** Probes every 50 ms: the smoothed RTT follows a change within a few hundred ms. */
const HEALTH = { interval: '50ms', unhealthyInterval: '50ms', timeout: '2s' };
const WINDOW_MS = 2_000;
/** What a slow region adds to its probes' answers: well over the 10 ms margin once smoothed. */
const SLOW_MS = 60;

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function world(workers = 1, configFile?: string): Promise<World> {
  const started = await startWorld(
    LAYOUT,
    { region: 'north', zone: 'az-1' },
    {
      geo: { databases: [database()], trustedProxies: ['127.0.0.0/8'] },
      health: HEALTH,
      routing: { latency: { margin: '10ms', window: `${WINDOW_MS}ms` } },
      headers: { explain: true },
    },
    workers,
    configFile,
  );
  cleanup.push(() => started.close());
  return started;
}

interface Explained {
  readonly home: string;
  readonly code: string;
  readonly reason: string;
  readonly pendingHome: { region: string; since: number; leadMs: number } | null;
  readonly regions: readonly { region: string; cost: { distanceMs: number; slownessMs: number; errorMs: number; localMs: number; totalMs: number }; latency: { rttMs: number | null; floorMs: number | null } }[];
}

async function explain(w: World): Promise<Explained> {
  const reply = await fetch(`http://127.0.0.1:${w.adminPort}/route?ip=${CLIENT_IP}`);
  expect(reply.status).toBe(200);
  return (await reply.json()) as Explained;
}

/** Which backend answered the client, on a connection of its own (so each may land on another worker). */
async function servedBy(w: World): Promise<string> {
  const reply = await send(w.port, { headers: { 'x-forwarded-for': CLIENT_IP } });
  expect(reply.status).toBe(200);
  return reply.body.toString();
}

describe('latency order with hysteresis', () => {
  test('a slowed region loses the client only after the window, in every worker, and /route shows the terms', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meridian-latency-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const w = await world(2, join(dir, 'meridian.json'));
    // Both RTTs measured, the floors set, nothing moved yet.
    await until(async () => (await explain(w)).regions.every((r) => r.latency.rttMs !== null), 'every region probed');
    expect((await explain(w)).home).toBe('west');
    for (let i = 0; i < 8; i++) expect(await servedBy(w)).toBe('west-1');

    w.backends['west-1'].probeDelayMs = SLOW_MS;
    const slowedAt = Date.now();
    let pending: Explained['pendingHome'] = null;
    const moved = await until(
      async () => {
        const x = await explain(w);
        if (x.home === 'west') pending ??= x.pendingHome;
        return x.home === 'east' ? x : null;
      },
      'the home to move east',
      WINDOW_MS + 8_000,
      25,
    );
    const movedAfter = Date.now() - slowedAt;
    expect(movedAfter, 'the home moved before the hysteresis window was over').toBeGreaterThanOrEqual(WINDOW_MS);
    expect(pending, 'while waiting, /route names the challenger and its lead').toMatchObject({ region: 'east', leadMs: expect.any(Number) });
    expect(pending!.leadMs).toBeGreaterThanOrEqual(10);

    expect(moved.code).toBe('latency');
    expect(moved.reason).toMatch(/^latency: east costs [\d.]+ ms, west \(nearer\) [\d.]+ ms/);
    const west = moved.regions.find((r) => r.region === 'west')!;
    expect(west.cost.slownessMs).toBeGreaterThan(10);
    expect(west.cost.slownessMs).toBeCloseTo(west.latency.rttMs! - west.latency.floorMs!, 6);
    expect(west.cost.totalMs).toBeCloseTo(west.cost.distanceMs + west.cost.slownessMs + west.cost.errorMs + west.cost.localMs, 6);
    expect(moved.regions[0].region).toBe('east');

    // /status (and the dashboard) show what the cost was made of and how many client areas moved where.
    type Status = { topology: { regions: { name: string; latency: { cost: { slownessMs: number; errorRatio: number; areasMoved: number } } }[] } };
    const status = (await (await fetch(`http://127.0.0.1:${w.adminPort}/status`)).json()) as Status;
    const cost = Object.fromEntries(status.topology.regions.map((r) => [r.name, r.latency.cost]));
    expect(cost.west.slownessMs).toBeGreaterThan(10);
    expect(cost.east.areasMoved).toBeGreaterThanOrEqual(1);
    expect(cost.west.areasMoved).toBe(0);

    // Prometheus sees the same: the slowness term of west, and the areas won by east.
    const exposition = await (await fetch(`http://127.0.0.1:${w.adminPort}/metrics`)).text();
    const slowness = /^meridian_region_cost_seconds\{region="west",term="slowness"\} (\S+)$/m.exec(exposition);
    expect(Number(slowness?.[1])).toBeGreaterThan(0.01);
    expect(await metricValue(w.adminPort, 'meridian_latency_areas_moved{region="east"}')).toBeGreaterThanOrEqual(1);
    expect(await metricValue(w.adminPort, 'meridian_latency_areas_moved{region="west"}')).toBe(0);

    // The workers route with the same published homes: every connection now reaches east.
    await until(async () => (await servedBy(w)) === 'east-1', 'a worker to send the client east');
    for (let i = 0; i < 8; i++) expect(await servedBy(w)).toBe('east-1');
    const header = (await send(w.port, { headers: { 'x-forwarded-for': CLIENT_IP } })).headers['x-meridian-route'];
    expect(String(header)).toMatch(/\beast\b.*\blatency\b/);

    // A reload that keeps the regions keeps the moved home: no area starts its window over.
    const reloaded = await fetch(`http://127.0.0.1:${w.adminPort}/reload`, { method: 'POST' });
    expect(((await reloaded.json()) as { ok: boolean }).ok).toBe(true);
    expect(w.meridian.runtime.configVersion()).toBe(2);
    expect((await explain(w)).home).toBe('east');
    expect(await servedBy(w)).toBe('east-1');
  });

  test('an RTT that moves without reordering any zone keeps every cached decision', async () => {
    const w = await world();
    await until(async () => (await explain(w)).regions.every((r) => r.latency.rttMs !== null), 'every region probed');
    const { runtime } = w.meridian;
    const location = runtime.locator.locate(CLIENT_IP);
    const facts = { clientIp: CLIENT_IP, host: undefined, location, project: undefined, pinnedRegion: undefined };
    const before = runtime.plane();
    const decision = before.router.route(facts);
    // A sample that moves the smoothed RTT just past what health republishes for (20 % and 1 ms from the RTT routing
    // sees), yet by far less than the latency margin: a new snapshot and a new router, but east has one zone, so no
    // decision can differ, and none is made again.
    const index = w.index('east-1');
    const health = w.health();
    const shown = health.snapshot.rttMs[index]!;
    const target = shown + Math.max(1, 0.2 * shown) + 1;
    const smoothed = health.rttMs[index]!;
    health.probe(index, true, smoothed + (target - smoothed) / 0.3, Date.now(), 'test sample');
    expect(runtime.plane()).not.toBe(before);
    expect(runtime.plane().router.route(facts)).toBe(decision);
  });

  test('a region that fails its requests sinks by its error share, though its probes pass', async () => {
    const w = await world(2);
    await until(async () => (await explain(w)).regions.every((r) => r.latency.rttMs !== null), 'every region probed');
    expect(await servedBy(w)).toBe('west-1');
    // 500 is the application's answer: passed through, never retried, never ejected by health checks.
    w.backends['west-1'].handler = (_req, res) => void res.writeHead(500).end('broken');
    for (let i = 0; i < 30; i++) expect((await send(w.port, { headers: { 'x-forwarded-for': CLIENT_IP } })).status).toBe(500);
    const moved = await until(async () => {
      const x = await explain(w);
      return x.home === 'east' ? x : null;
    }, 'the home to move east', WINDOW_MS + 8_000, 25);
    const west = moved.regions.find((r) => r.region === 'west')! as Explained['regions'][number] & { latency: { errorRatio: number } };
    // 30 of the 31 requests west served in the last seconds failed: that share of the penalty (200 ms by default).
    expect(west.latency.errorRatio).toBeCloseTo(30 / 31, 9);
    expect(west.cost.errorMs).toBeCloseTo((30 / 31) * 200, 9);
    expect(moved.code).toBe('latency');
    expect(await servedBy(w)).toBe('east-1');
  });

  test('a region alternating between slow and fast faster than the window never moves the home', async () => {
    const w = await world();
    await until(async () => (await explain(w)).regions.every((r) => r.latency.rttMs !== null), 'every region probed');
    const west = w.backends['west-1'];
    const homes = new Set<string>();
    let led = false;
    const until_ = Date.now() + 3 * WINDOW_MS;
    // 700 ms slow, 700 ms fast: each slow spell leads by far more than the margin, but for less than the window.
    while (Date.now() < until_) {
      west.probeDelayMs = Math.floor(Date.now() / 700) % 2 === 0 ? SLOW_MS : 0;
      const x = await explain(w);
      homes.add(x.home);
      led ||= x.pendingHome?.region === 'east';
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(led, 'the slow spells did put east ahead by the margin').toBe(true);
    expect([...homes]).toEqual(['west']);
  });
});
