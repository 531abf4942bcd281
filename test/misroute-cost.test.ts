// What a misroute costs, end to end: a real .mmdb places clients (by X-Forwarded-For from a trusted loopback peer),
// four regional upstreams answer on real sockets, and /metrics must show each misroute under its reason with its
// extra distance in the right km bucket: GeoDNS, a failover, a fence and an affinity, and nothing for a good route.
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { compileConfig } from '../src/config/compile.ts';
import { greatCircleKm } from '../src/geo/distance.ts';
import { startMeridian, type Meridian } from '../src/main.ts';
import { BOOT_PROBE_ONLY, json, send, startUpstream, until, type Upstream } from './support/harness.ts';
import { cityFixture, cityRecord } from './support/mmdb-writer.ts';

const REGIONS = {
  'us-west': [45.52, -122.68],
  'us-east': [39.04, -77.49],
  'eu-north': [59.33, 18.07],
  'eu-south': [45.46, 9.19],
} as const;
type RegionName = keyof typeof REGIONS;

const city = cityRecord;

const PLACES = { stockholm: [59.33, 18.07], seattle: [47.61, -122.33], newYork: [40.71, -74.01] } as const;
const STOCKHOLM_IP = '89.160.20.112';
const SEATTLE_IP = '216.160.83.56';
const NEW_YORK_IP = '66.108.1.2';
const FIXTURE = [
  { network: '89.160.20.0/24', data: city('SE', 'EU', ...PLACES.stockholm) },
  { network: '216.160.83.0/24', data: city('US', 'NA', ...PLACES.seattle) },
  { network: '66.108.0.0/16', data: city('US', 'NA', ...PLACES.newYork) },
];

/** Extra km of serving a client at `place` from `served` rather than from `nearest`, as the router works it out. */
const extraKm = (place: readonly [number, number], served: RegionName, nearest: RegionName): number =>
  greatCircleKm(place[0], place[1], REGIONS[served][0], REGIONS[served][1]) - greatCircleKm(place[0], place[1], REGIONS[nearest][0], REGIONS[nearest][1]);

const REASONS = ['geodns', 'failover', 'fence', 'affinity'] as const;
const BOUNDS = ['250', '500', '1000', '2000', '4000', '8000', '16000', '+Inf'] as const;

const database = cityFixture(FIXTURE);

interface World {
  readonly upstreams: Record<RegionName, Upstream>;
  readonly meridian: Meridian;
  readonly port: number;
}

const worlds: World[] = [];
afterEach(async () => {
  for (const world of worlds.splice(0)) {
    await world.meridian.shutdown();
    await Promise.all(Object.values(world.upstreams).map((u) => u.close()));
  }
});

/** Four regions of one zone each, every upstream answering with its region's name, and Meridian in us-east on two workers. */
async function startWorld(routing: Record<string, unknown> = {}): Promise<World> {
  const entries = await Promise.all(
    (Object.keys(REGIONS) as RegionName[]).map(async (region) => [region, await startUpstream((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ region })))] as const),
  );
  const upstreams = Object.fromEntries(entries) as Record<RegionName, Upstream>;
  // WebSocket tunnels: each region greets with its name.
  for (const [region, upstream] of entries) new WebSocketServer({ server: upstream.server }).on('connection', (socket) => socket.send(region));
  const config = compileConfig(
    {
      self: { region: 'us-east', zone: 'az-1' },
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      geo: { databases: [database()], trustedProxies: ['127.0.0.0/8', '::1'] },
      regions: Object.fromEntries((Object.keys(REGIONS) as RegionName[]).map((r) => [r, { location: REGIONS[r], zones: { 'az-1': { endpoints: [upstreams[r].origin] } } }])),
      routing,
      // A closed upstream must stay a candidate, so that the request fails over on its refused connection.
      health: BOOT_PROBE_ONLY,
      shutdown: { drainDelay: 0 },
      workers: 2,
    },
    {},
  );
  const meridian = await startMeridian(config);
  const world = { upstreams, meridian, port: meridian.proxyAddress.port };
  worlds.push(world);
  return world;
}

/** The region that answered a GET from the client at `ip`. */
async function servedFrom(world: World, ip: string, headers: Record<string, string> = {}): Promise<string> {
  const reply = await send(world.port, { headers: { 'x-forwarded-for': ip, ...headers } });
  expect(reply.status, reply.body.toString()).toBe(200);
  return json(reply).region as string;
}

/** Every sample of the exposition, keyed `name{labels as written}`. */
async function scrape(world: World): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${world.meridian.adminAddress.port}/metrics`)).text();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    samples.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return samples;
}

const byReason = (samples: Map<string, number>): Record<string, number | undefined> =>
  Object.fromEntries(REASONS.map((reason) => [reason, samples.get(`meridian_misroutes_by_reason_total{reason="${reason}"}`)]));

/** The cumulative bucket counts of one reason's km histogram, by `le`. */
const buckets = (samples: Map<string, number>, reason: string): Record<string, number | undefined> =>
  Object.fromEntries(BOUNDS.map((le) => [le, samples.get(`meridian_misroute_extra_distance_km_bucket{reason="${reason}",le="${le}"}`)]));

/** Cumulative counts for one observation whose first bucket is `le`. */
const oneIn = (le: (typeof BOUNDS)[number]): Record<string, number> => Object.fromEntries(BOUNDS.map((b, i) => [b, i >= BOUNDS.indexOf(le) ? 1 : 0]));

/** Waits for the one misroute to be counted (records are published after the response ends), then scrapes. */
async function afterOneMisroute(world: World): Promise<Map<string, number>> {
  return until(
    async () => {
      const samples = await scrape(world);
      // The km sum is added just after the bucket: wait for both.
      return REASONS.some((reason) => (samples.get(`meridian_misroutes_by_reason_total{reason="${reason}"}`) ?? 0) > 0 && (samples.get(`meridian_misroute_extra_distance_km_sum{reason="${reason}"}`) ?? 0) > 0)
        ? samples
        : undefined;
    },
    'a misroute counted on /metrics',
  );
}

const zeroExcept = (reason: string): Record<string, number> => Object.fromEntries(REASONS.map((r) => [r, r === reason ? 1 : 0]));

describe('misroutes by reason and extra distance', () => {
  it('counts nothing for clients served from their nearest region, and every reason and bucket from the start at 0', async () => {
    const world = await startWorld();
    expect(await servedFrom(world, NEW_YORK_IP)).toBe('us-east');
    // Not in the database: with no location there is no nearest region to compare with.
    expect(await servedFrom(world, '8.8.8.8')).toBe('us-east');
    await until(async () => (await scrape(world)).get('meridian_requests_total{region="us-east",zone="az-1",method="GET",code="2xx"}') === 2, 'both requests counted');
    const samples = await scrape(world);
    expect(byReason(samples)).toEqual(zeroExcept('none'));
    for (const reason of REASONS) expect(buckets(samples, reason)).toEqual(Object.fromEntries(BOUNDS.map((b) => [b, 0])));
  });

  it('geodns: a client in Stockholm that GeoDNS sent to us-east, proxied on to eu-north, costs the detour to us-east', async () => {
    const world = await startWorld();
    expect(await servedFrom(world, STOCKHOLM_IP)).toBe('eu-north');
    const samples = await afterOneMisroute(world);
    expect(byReason(samples)).toEqual(zeroExcept('geodns'));
    // About 6650 km: between 4000 and 8000.
    expect(buckets(samples, 'geodns')).toEqual(oneIn('8000'));
    expect(samples.get('meridian_misroute_extra_distance_km_sum{reason="geodns"}')).toBe(Math.round(extraKm(PLACES.stockholm, 'us-east', 'eu-north')));
    // The GeoDNS signal by nearest region stays as it was.
    expect(samples.get('meridian_misroutes_total{nearest_region="eu-north"}')).toBe(1);
    // The dashboard's figures, from /status.
    const status = json(await send(world.meridian.adminAddress.port, { path: '/status' })) as {
      summary: { misrouteCost: { byReason: Record<string, { count: number; extraKm: number }>; buckets: { leKm: number | null; count: number }[] } };
    };
    const { byReason: reasons, buckets: kmBuckets } = status.summary.misrouteCost;
    expect(reasons.geodns).toEqual({ count: 1, extraKm: Math.round(extraKm(PLACES.stockholm, 'us-east', 'eu-north')) });
    expect(Object.keys(reasons)).toEqual([...REASONS]);
    expect(kmBuckets.map((b) => [b.leKm, b.count])).toEqual([[250, 0], [500, 0], [1000, 0], [2000, 0], [4000, 0], [8000, 1], [16000, 0], [null, 0]]);
  });

  it('failover: a client in New York whose home us-east is down is served by us-west', async () => {
    const world = await startWorld();
    await world.upstreams['us-east'].close();
    expect(await servedFrom(world, NEW_YORK_IP)).toBe('us-west');
    const samples = await afterOneMisroute(world);
    expect(byReason(samples)).toEqual(zeroExcept('failover'));
    // About 3575 km: between 2000 and 4000.
    expect(buckets(samples, 'failover')).toEqual(oneIn('4000'));
    expect(samples.get('meridian_misroute_extra_distance_km_sum{reason="failover"}')).toBe(Math.round(extraKm(PLACES.newYork, 'us-west', 'us-east')));
  });

  it('fence: a client in Seattle fenced to us-east is served there, not from nearby us-west', async () => {
    const world = await startWorld({ fences: [{ name: 'east-only', match: { continent: 'NA' }, regions: ['us-east'], mode: 'strict' }] });
    expect(await servedFrom(world, SEATTLE_IP)).toBe('us-east');
    const samples = await afterOneMisroute(world);
    expect(byReason(samples)).toEqual(zeroExcept('fence'));
    // About 3460 km: between 2000 and 4000.
    expect(buckets(samples, 'fence')).toEqual(oneIn('4000'));
    expect(samples.get('meridian_misroute_extra_distance_km_sum{reason="fence"}')).toBe(Math.round(extraKm(PLACES.seattle, 'us-east', 'us-west')));
  });

  it('affinity: a Seattle client of a project homed in eu-south is served from Milan', async () => {
    const world = await startWorld({ projects: { shop: { home: 'eu-south' } } });
    expect(await servedFrom(world, SEATTLE_IP, { 'x-appwrite-project': 'shop' })).toBe('eu-south');
    const samples = await afterOneMisroute(world);
    expect(byReason(samples)).toEqual(zeroExcept('affinity'));
    // About 8405 km: between 8000 and 16000.
    expect(buckets(samples, 'affinity')).toEqual(oneIn('16000'));
    expect(samples.get('meridian_misroute_extra_distance_km_sum{reason="affinity"}')).toBe(Math.round(extraKm(PLACES.seattle, 'eu-south', 'us-west')));
    expect(samples.get('meridian_misroute_extra_distance_km_count{reason="affinity"}')).toBe(1);
  });

  it('counts a WebSocket tunnel when it closes, by the region it connected to', async () => {
    const world = await startWorld();
    const socket = new WebSocket(`ws://127.0.0.1:${world.port}/v1/realtime`, { headers: { 'x-forwarded-for': STOCKHOLM_IP } });
    const [greeting] = (await once(socket, 'message')) as [Buffer];
    expect(greeting.toString()).toBe('eu-north');
    // Open tunnels are not counted yet.
    expect(byReason(await scrape(world))).toEqual(zeroExcept('none'));
    socket.close();
    await once(socket, 'close');
    const samples = await afterOneMisroute(world);
    expect(byReason(samples)).toEqual(zeroExcept('geodns'));
    expect(buckets(samples, 'geodns')).toEqual(oneIn('8000'));
  });
});
