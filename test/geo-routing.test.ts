// Geo routing end to end: a real .mmdb written for the test, four regional upstreams on real sockets and Meridian
// in between. Clients are placed by X-Forwarded-For from a trusted loopback proxy; fences, affinity, host rules and
// upload pinning decide which region answers.
import { once } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { Client } from 'undici';
import { WebSocket } from 'ws';
import { compileConfig } from '../src/config/compile.ts';
import { startMeridian, type Meridian } from '../src/main.ts';
import { BOOT_PROBE_ONLY, closeServer, json, send, startUpstream, type Reply, type Upstream } from './support/harness.ts';
import { cityFixture, cityRecord } from './support/mmdb-writer.ts';

const REGIONS = {
  'us-west': [45.52, -122.68],
  'us-east': [39.04, -77.49],
  'eu-north': [59.33, 18.07],
  'eu-south': [45.46, 9.19],
} as const;
type RegionName = keyof typeof REGIONS;

const city = cityRecord;

/** Client addresses and where the fixture database places them. */
const STOCKHOLM_IP = '89.160.20.112';
const MILAN_IP = '93.40.7.9';
const SEATTLE_IP = '216.160.83.56';
const NEW_YORK_IP = '66.108.1.2';
const MILAN_IPV6 = '2a02:d1c0:1::7';
const FIXTURE = [
  { network: '89.160.20.0/24', data: city('SE', 'EU', 59.33, 18.07) },
  { network: '93.40.0.0/16', data: city('IT', 'EU', 45.46, 9.19) },
  { network: '216.160.83.0/24', data: city('US', 'NA', 47.61, -122.33) },
  { network: '66.108.0.0/16', data: city('US', 'NA', 40.71, -74.01) },
  { network: '2a02:d1c0::/29', data: city('IT', 'EU', 45.46, 9.19) },
];

const database = cityFixture(FIXTURE);

/** What each upstream saw of a request it answered. */
interface Seen {
  readonly region: RegionName;
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly bytes: number;
}

interface World {
  readonly upstreams: Record<RegionName, Upstream>;
  readonly meridian: Meridian;
  readonly port: number;
  readonly seen: Seen[];
}

const worlds: World[] = [];
afterEach(async () => {
  for (const world of worlds.splice(0)) {
    await world.meridian.shutdown();
    await Promise.all(Object.values(world.upstreams).map((u) => u.close()));
  }
});

/**
 * Four regions of one zone each, every zone one real upstream that answers with its region name, and Meridian in
 * us-east/az-1 reading the fixture database. `geo` and `routing` replace the defaults (loopback trusted, no rules);
 * `workers` is the config's (left out: `auto`).
 */
async function startWorld(sections: { geo?: Record<string, unknown>; routing?: Record<string, unknown>; workers?: number } = {}): Promise<World> {
  const seen: Seen[] = [];
  const entries = await Promise.all(
    (Object.keys(REGIONS) as RegionName[]).map(async (region) => {
      const upstream = await startUpstream((req, res) => {
        let bytes = 0;
        req.on('data', (chunk: Buffer) => (bytes += chunk.length));
        req.on('end', () => {
          seen.push({ region, method: req.method ?? '', url: req.url ?? '', headers: req.headers, bytes });
          // The first chunk of an upload learns its file id from the answer, as Appwrite's SDKs do.
          const body = JSON.stringify({ region, $id: req.headers['content-range']?.startsWith('bytes 0-') ? 'file-1' : undefined });
          res.writeHead(201, { 'content-type': 'application/json' }).end(body);
        });
      });
      return [region, upstream] as const;
    }),
  );
  const upstreams = Object.fromEntries(entries) as Record<RegionName, Upstream>;
  // WebSocket upgrades: each region refuses with 403 and its name, which is all these tests need to see.
  for (const [region, upstream] of entries) {
    upstream.server.on('upgrade', (req, socket) => {
      seen.push({ region, method: req.method ?? '', url: req.url ?? '', headers: req.headers, bytes: 0 });
      socket.end(`HTTP/1.1 403 Forbidden\r\nx-region: ${region}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
    });
  }
  const config = compileConfig(
    {
      self: { region: 'us-east', zone: 'az-1' },
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      geo: { databases: [database()], trustedProxies: ['127.0.0.0/8', '::1'], ...sections.geo },
      regions: Object.fromEntries(
        (Object.keys(REGIONS) as RegionName[]).map((r) => [r, { location: REGIONS[r], zones: { 'az-1': { endpoints: [upstreams[r].origin] } } }]),
      ),
      routing: sections.routing ?? {},
      // Regions these tests close must stay candidates: the story is routing and failover, not health checks.
      health: BOOT_PROBE_ONLY,
      shutdown: { drainDelay: 0 },
      ...(sections.workers === undefined ? {} : { workers: sections.workers }),
    },
    {},
  );
  const meridian = await startMeridian(config);
  const world = { upstreams, meridian, port: meridian.proxyAddress.port, seen };
  worlds.push(world);
  return world;
}

/** The region that answered, from the upstream's own body. */
const regionOf = (reply: Reply): string => {
  expect(reply.status, reply.body.toString()).toBe(201);
  return json(reply).region as string;
};

const from = (ip: string, headers: Record<string, string> = {}) => ({ headers: { 'x-forwarded-for': ip, ...headers } });

describe('nearest region by client IP', () => {
  it.each([
    { client: 'Stockholm', ip: STOCKHOLM_IP, region: 'eu-north' },
    { client: 'Milan', ip: MILAN_IP, region: 'eu-south' },
    { client: 'Milan over IPv6', ip: MILAN_IPV6, region: 'eu-south' },
    { client: 'Seattle', ip: SEATTLE_IP, region: 'us-west' },
    { client: 'New York', ip: NEW_YORK_IP, region: 'us-east' },
    // Not in the database: an unknown location stays in the local region.
    { client: 'an unknown place', ip: '8.8.8.8', region: 'us-east' },
  ])('serves a client in $client from $region', async ({ ip, region }) => {
    const world = await startWorld();
    const reply = await send(world.port, from(ip));
    expect(regionOf(reply)).toBe(region);
    // The upstream hears who the client is, and from nobody else.
    expect(world.seen.map((s) => [s.region, s.headers['x-forwarded-for']])).toEqual([[region, ip]]);
  });

  it('takes the client behind a second trusted hop, and the client written in brackets with a port', async () => {
    const world = await startWorld();
    expect(regionOf(await send(world.port, from(`${SEATTLE_IP}, 127.0.0.9`)))).toBe('us-west');
    expect(regionOf(await send(world.port, from(`[${MILAN_IPV6}]:51234`)))).toBe('eu-south');
  });
});

describe('a spoofed X-Forwarded-For from an untrusted peer', () => {
  it('is ignored: the client is the socket peer, and loopback has no location', async () => {
    const world = await startWorld({ geo: { trustedProxies: [] } });
    const reply = await send(world.port, from(STOCKHOLM_IP));
    expect(regionOf(reply)).toBe('us-east');
    expect(world.seen[0].headers['x-forwarded-for']).toBe('127.0.0.1');
  });
});

/** Opens a WebSocket through Meridian and resolves with the HTTP answer it got instead of a 101. */
function upgrade(port: number, headers: Record<string, string>): Promise<{ status: number; region: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/realtime?project=demo`, { headers });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, region: res.headers['x-region'] as string | undefined, body }));
    });
    ws.on('open', () => reject(new Error('unexpected 101')));
    ws.on('error', () => undefined);
  });
}

describe('WebSocket upgrades', () => {
  it('place the client by its trusted X-Forwarded-For, like requests', async () => {
    const world = await startWorld();
    expect((await upgrade(world.port, { 'x-forwarded-for': STOCKHOLM_IP })).region).toBe('eu-north');
    expect(world.seen.at(-1)?.headers['x-forwarded-for']).toBe(STOCKHOLM_IP);
  });

  it('answer 503 naming a strict fence when every region inside it is down', async () => {
    const world = await startWorld({ routing: { fences: [{ name: 'eu-residency', match: { continent: 'EU' }, regions: ['eu-north', 'eu-south'], mode: 'strict' }] } });
    await Promise.all([world.upstreams['eu-north'].close(), world.upstreams['eu-south'].close()]);
    const answer = await upgrade(world.port, { 'x-forwarded-for': MILAN_IP });
    expect(answer.status).toBe(503);
    expect(JSON.parse(answer.body)).toMatchObject({ type: 'meridian_fence_exhausted' });
    expect(world.seen).toEqual([]);
  });
});

describe('fences', () => {
  const eu = { name: 'eu-residency', match: { continent: 'EU' }, regions: ['eu-north', 'eu-south'] };

  it('answers 503 naming a strict fence when every region inside it is down, and never leaves it', async () => {
    const world = await startWorld({ routing: { fences: [{ ...eu, mode: 'strict' }] } });
    expect(regionOf(await send(world.port, from(STOCKHOLM_IP)))).toBe('eu-north');
    await Promise.all([world.upstreams['eu-north'].close(), world.upstreams['eu-south'].close()]);
    const before = world.seen.length;

    const reply = await send(world.port, from(STOCKHOLM_IP, { origin: 'https://app.example.eu' }));
    expect(reply.status).toBe(503);
    expect(reply.headers['content-type']).toBe('application/json');
    expect(reply.headers['cache-control']).toBe('no-store');
    expect(reply.headers['access-control-allow-origin']).toBe('https://app.example.eu');
    const body = json(reply);
    expect(body).toMatchObject({ code: 503, type: 'meridian_fence_exhausted' });
    expect(body.message).toMatch(/fence eu-residency \(strict\)/);
    expect(body.message).toContain('eu-north, eu-south');
    // Healthy US upstreams were never tried for this client.
    expect(world.seen.length).toBe(before);
    // Clients outside the fence are served as before.
    expect(regionOf(await send(world.port, from(NEW_YORK_IP)))).toBe('us-east');
  });

  it('spills a preferred fence to the nearest region outside it when every region inside is down', async () => {
    const world = await startWorld({ routing: { fences: [{ ...eu, mode: 'preferred' }] } });
    await Promise.all([world.upstreams['eu-north'].close(), world.upstreams['eu-south'].close()]);
    expect(regionOf(await send(world.port, from(STOCKHOLM_IP)))).toBe('us-east');
  });
});

describe('Appwrite-aware affinity', () => {
  const routing = {
    projects: { shop: { home: 'eu-south' } },
    hosts: [
      { host: '*.functions.example.com', region: 'us-west' },
      { host: 'api.example.eu', region: 'eu-north' },
    ],
  };

  it('sends a project to its home region by X-Appwrite-Project, wherever the client is', async () => {
    const world = await startWorld({ routing });
    expect(regionOf(await send(world.port, from(NEW_YORK_IP, { 'x-appwrite-project': 'shop' })))).toBe('eu-south');
    expect(regionOf(await send(world.port, from(NEW_YORK_IP, { 'x-appwrite-project': 'blog' })))).toBe('us-east');
  });

  it('reads the project from the query string for realtime and downloads', async () => {
    const world = await startWorld({ routing });
    const path = '/v1/storage/buckets/photos/files/f1/download?project=shop&mode=admin';
    expect(regionOf(await send(world.port, { path, ...from(SEATTLE_IP) }))).toBe('eu-south');
    expect(world.seen[0].url).toBe(path);
  });

  it('routes custom and function domains by their Host header, port and all', async () => {
    const world = await startWorld({ routing });
    expect(regionOf(await send(world.port, from(STOCKHOLM_IP, { host: 'hello.functions.example.com:8080' })))).toBe('us-west');
    expect(regionOf(await send(world.port, from(NEW_YORK_IP, { host: 'api.example.eu' })))).toBe('eu-north');
    expect(regionOf(await send(world.port, from(NEW_YORK_IP, { host: 'functions.example.com' })))).toBe('us-east');
    // Appwrite routes by hostname, so the Host reaches the upstream unchanged.
    expect(world.seen[0].headers.host).toBe('hello.functions.example.com:8080');
  });
});

describe('upload pinning', () => {
  /** Each worker's count of the exchanges it started, by slot, from /status on the admin port. */
  async function workerRequests(world: World): Promise<number[]> {
    const { workers } = json(await send(world.meridian.adminAddress.port, { path: '/status' })) as { workers: { threads: { requests: number }[] } };
    return workers.threads.map((thread) => thread.requests);
  }

  /** A keep-alive connection (an undici Client keeps one), the worker that accepted it, and how often it connected. */
  interface Connection {
    readonly client: Client;
    readonly slot: number;
    readonly connects: () => number;
  }

  /**
   * `perWorker` keep-alive connections on each of the workers. The kernel picks the worker for each new connection, so
   * fresh ones are opened and each serves one GET first: with nothing else running, the worker whose count grew is
   * the one that accepted it. Connections beyond a worker's share are closed; every client goes into `clients`.
   */
  async function connectionsOnEachWorker(world: World, perWorker: number, clients: Client[]): Promise<Connection[]> {
    const workers = (await workerRequests(world)).length;
    const kept: Connection[] = [];
    for (let attempt = 0; attempt < 64 && kept.length < perWorker * workers; attempt++) {
      const client = new Client(`http://127.0.0.1:${world.port}`, { pipelining: 1 });
      clients.push(client);
      let connects = 0;
      client.on('connect', () => connects++);
      const before = await workerRequests(world);
      const { statusCode, body } = await client.request({ method: 'GET', path: '/', ...from(STOCKHOLM_IP) });
      await body.dump();
      expect(statusCode).toBe(201);
      const after = await workerRequests(world);
      const slots = after.flatMap((n, slot) => (n > before[slot] ? [slot] : []));
      expect(slots).toHaveLength(1);
      if (kept.filter((c) => c.slot === slots[0]).length < perWorker) kept.push({ client, slot: slots[0], connects: () => connects });
      else await client.close();
    }
    if (kept.length < perWorker * workers) throw new Error(`64 connections did not give ${perWorker} on each of ${workers} workers`);
    return kept;
  }

  it('sends 8 concurrent chunks, over 8 connections that both workers accepted, to the region that took the first chunk, although another is nearer', async () => {
    // The pin is shared by the workers: whichever accepts a chunk's connection must send it where the first went.
    const world = await startWorld({ workers: 2 });
    const path = '/v1/storage/buckets/photos/files';
    const size = 9 * 100;
    const chunkHeaders = (n: number, id?: string) => ({
      'content-type': 'application/octet-stream',
      'content-range': `bytes ${n * 100}-${n * 100 + 99}/${size}`,
      ...(id === undefined ? {} : { 'x-appwrite-id': id }),
    });
    const body = Buffer.alloc(100, 7);

    // eu-north is down when the upload starts, so its first chunk fails over to eu-south.
    const north = world.upstreams['eu-north'];
    await closeServer(north.server);
    const first = await send(world.port, { method: 'POST', path, body, ...from(STOCKHOLM_IP, chunkHeaders(0)) });
    expect(regionOf(first)).toBe('eu-south');
    const id = json(first).$id as string;
    expect(id).toBe('file-1');

    // eu-north is back and nearest again: anything not pinned goes there.
    north.server.listen(north.port, '127.0.0.1');
    await once(north.server, 'listening');
    expect(regionOf(await send(world.port, from(STOCKHOLM_IP)))).toBe('eu-north');

    const clients: Client[] = [];
    try {
      const connections = await connectionsOnEachWorker(world, 4, clients);
      expect(connections.map((c) => c.slot).sort()).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
      const before = await workerRequests(world);
      const chunks = await Promise.all(
        connections.map(async ({ client }, i): Promise<Reply> => {
          const reply = await client.request({ method: 'POST', path, body, ...from(STOCKHOLM_IP, chunkHeaders(i + 1, id)) });
          return { status: reply.statusCode, headers: reply.headers, rawHeaders: [], body: Buffer.from(await reply.body.arrayBuffer()) };
        }),
      );
      expect(chunks.map(regionOf)).toEqual(Array(8).fill('eu-south'));
      // Each chunk rode the connection it was given, so each worker served exactly its four.
      expect(connections.map((c) => c.connects())).toEqual(Array(8).fill(1));
      const after = await workerRequests(world);
      expect(after.map((n, slot) => n - before[slot])).toEqual([4, 4]);
    } finally {
      await Promise.all(clients.map((client) => client.destroy()));
    }
    const uploads = world.seen.filter((s) => s.method === 'POST');
    expect(uploads.map((s) => s.region)).toEqual(Array(9).fill('eu-south'));
    expect(uploads.every((s) => s.bytes === 100)).toBe(true);
    expect(new Set(uploads.map((s) => s.headers['content-range'])).size).toBe(9);
  });
});
