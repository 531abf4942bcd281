// Per-client rate limits end to end, through a real Meridian and real upstreams: a burst past the limit is answered
// 429 in Appwrite's JSON shape with Retry-After and never reaches the upstream, the buckets are one per client group
// for the whole process (two workers limit a burst once), trusted proxies are never limited themselves while the
// clients they forward for are, IPv6 clients are grouped by /64, rules apply only to their paths and methods,
// WebSocket upgrades are limited before any upstream is contacted, and a reload keeps or renews the buckets.
import { afterEach, describe, expect, test } from 'vitest';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { loadConfigFile } from '../src/config/load.ts';
import { startMeridian, type Meridian } from '../src/main.ts';
import { EDGE_STAT } from '../src/observe/edge-stats.ts';
import { json, parseRawResponse, rawExchange, rawConfig, send, startProxy, startUpstream, until, type Overrides, type Reply, type RunningProxy, type SendOptions, type Upstream } from './support/harness.ts';
import { startWebSocketUpstream, type WebSocketUpstream } from './support/websocket-upstream.ts';

const upstreams: { close(): Promise<void> }[] = [];
const proxies: { shutdown(): Promise<void> }[] = [];
const sockets: (Socket | WebSocket)[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) {
    if (socket instanceof WebSocket) socket.terminate();
    else socket.destroy();
  }
  await Promise.all(proxies.splice(0).map((p) => p.shutdown()));
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function upstream(): Promise<Upstream> {
  const started = await startUpstream((req, res) => {
    req.resume();
    res.end('ok');
  });
  upstreams.push(started);
  return started;
}

async function proxy(origins: readonly string[], overrides: Overrides, workers = 1): Promise<RunningProxy> {
  const started = await startProxy(origins, overrides, { workers });
  proxies.push(started);
  return started;
}

/** Requests refused by rule `rule` so far, added up over every data-plane thread. */
const refusals = (meridian: Meridian, rule: number): number => meridian.runtime.edgeStats.total(EDGE_STAT.rateLimited + rule);

/** `n` requests one after another, each on a fresh connection; their statuses in order. */
async function statuses(port: number, n: number, options: SendOptions = {}): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await send(port, options)).status);
  return out;
}

const times = <T>(n: number, value: T): T[] => Array<T>(n).fill(value);

/** What a client behind the trusted proxy (this test, on loopback) is: it names itself in X-Forwarded-For. */
const from = (client: string, options: SendOptions = {}): SendOptions => ({ ...options, headers: { 'x-forwarded-for': client } });

function expectRefusal(reply: Reply, retryAfter: number): void {
  expect(reply.status).toBe(429);
  expect(reply.headers['content-type']).toBe('application/json');
  expect(reply.headers['retry-after']).toBe(String(retryAfter));
  const body = json(reply);
  expect(body).toMatchObject({ code: 429, type: 'meridian_rate_limited' });
  expect(typeof body.message).toBe('string');
  expect(typeof body.version).toBe('string');
}

describe('a client over its limit', () => {
  test('gets 429 in Appwrite’s JSON shape with Retry-After, and the upstream never sees the refused requests', async () => {
    const origin = await upstream();
    // One token every 100 s: nothing refills while the test runs.
    const p = await proxy([origin.origin], { rateLimits: { rules: [{ name: 'api', rate: 0.01, burst: 5 }] } });

    expect(await statuses(p.port, 5, { path: '/v1/account' })).toEqual(times(5, 200));
    const refused = await send(p.port, { path: '/v1/account', headers: { origin: 'https://app.example.com' } });
    expectRefusal(refused, 100);
    // A browser SDK can read why: the answer carries CORS headers like every Meridian error.
    expect(refused.headers['access-control-allow-origin']).toBe('https://app.example.com');
    expect(String(json(refused).message)).toContain('"api"');
    expect(await statuses(p.port, 3, { method: 'POST', path: '/v1/databases', body: '{}' })).toEqual(times(3, 429));

    expect(origin.requests).toBe(5);
    expect(refusals(p.meridian, 0)).toBe(4);
  });

  test('is never refused while under the limit, and other clients keep their own buckets', async () => {
    const origin = await upstream();
    const p = await proxy([origin.origin], { geo: { trustedProxies: ['127.0.0.1/32'] }, rateLimits: { rules: [{ name: 'api', rate: 0.01, burst: 20 }] } });

    expect(await statuses(p.port, 20, from('198.51.100.1'))).toEqual(times(20, 200));
    expect(await statuses(p.port, 20, from('198.51.100.2'))).toEqual(times(20, 200));
    expect(origin.requests).toBe(40);
    expect(refusals(p.meridian, 0)).toBe(0);
    // Each bucket was exactly full: the next request of either is the first refused.
    expect((await send(p.port, from('198.51.100.1'))).status).toBe(429);
  });
});

/** /status's view of the worker threads. */
async function workerConnections(p: RunningProxy): Promise<number[]> {
  const report = json(await send(p.adminPort, { path: '/status' })) as { workers: { threads: { slot: number; connections: number }[] } };
  return report.workers.threads.map((t) => t.connections);
}

/**
 * Idle connections, `perWorker` accepted by each of the two workers (index = slot). Each new connection is assigned
 * to the worker whose open connections /status shows grow; one to a worker that has its share already is closed.
 */
async function connectionsOnEachWorker(p: RunningProxy, perWorker: number): Promise<Socket[][]> {
  await until(async () => (await workerConnections(p)).every((n) => n === 0), 'no client connection open');
  const byWorker: Socket[][] = [[], []];
  for (let opened = 0; byWorker.some((list) => list.length < perWorker); opened++) {
    if (opened > 20 * perWorker) throw new Error(`the kernel gave ${byWorker.map((list) => list.length).join(' / ')} of ${opened} connections to the workers`);
    const before = byWorker.map((list) => list.length);
    const socket = connect(p.port, '127.0.0.1');
    socket.on('error', () => {});
    sockets.push(socket);
    await once(socket, 'connect');
    const slot = await until(async () => {
      const now = await workerConnections(p);
      const grown = now.findIndex((n, i) => n > before[i]);
      return grown === -1 ? null : { grown };
    }, 'the worker that accepted the connection');
    if (byWorker[slot.grown].length < perWorker) {
      byWorker[slot.grown].push(socket);
    } else {
      socket.destroy();
      await until(async () => (await workerConnections(p))[slot.grown] === perWorker, 'the extra connection to close');
    }
  }
  return byWorker;
}

/** One GET on an idle connection, which it asks the server to close after the answer. */
function getOn(socket: Socket): Promise<number> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  const closed = once(socket, 'close');
  socket.write('GET /v1/storage/files HTTP/1.1\r\nHost: meridian.test\r\nConnection: close\r\n\r\n');
  return closed.then(() => parseRawResponse(Buffer.concat(chunks)).status);
}

describe('with two workers', () => {
  test('a burst spread over both is limited once for the process, not once per worker', async () => {
    const origin = await upstream();
    const BURST = 6;
    const p = await proxy([origin.origin], { rateLimits: { rules: [{ name: 'api', rate: 0.001, burst: BURST }] } }, 2);

    // Each worker gets as many requests as the whole burst, all at once: per-worker buckets would pass 2 × BURST.
    const [first, second] = await connectionsOnEachWorker(p, BURST);
    const answers = await Promise.all([...first, ...second].map(getOn));
    expect(answers.filter((s) => s === 200)).toHaveLength(BURST);
    expect(answers.filter((s) => s === 429)).toHaveLength(BURST);
    expect(origin.requests).toBe(BURST);
    expect(refusals(p.meridian, 0)).toBe(BURST);

    // Both workers count into the one table from here on too: new connections, wherever they land, are refused.
    expect(await statuses(p.port, 10)).toEqual(times(10, 429));
    expect(refusals(p.meridian, 0)).toBe(BURST + 10);
  });
});

describe('trusted proxies and client groups', () => {
  test('a trusted proxy’s own address is never limited, while the clients it forwards for are', async () => {
    const origin = await upstream();
    const p = await proxy([origin.origin], { geo: { trustedProxies: ['127.0.0.1/32'] }, rateLimits: { rules: [{ name: 'api', rate: 0.001, burst: 2 }] } });

    // The proxy's own requests (health checks from a load balancer, say), with no client named.
    expect(await statuses(p.port, 10)).toEqual(times(10, 200));
    expect(await statuses(p.port, 3, from('203.0.113.9'))).toEqual([200, 200, 429]);
    // A chain of trusted hops names no outside client: the leftmost hop is a trusted proxy, again not limited.
    expect(await statuses(p.port, 5, from('127.0.0.1'))).toEqual(times(5, 200));
    expect(await statuses(p.port, 2, from('203.0.113.10'))).toEqual([200, 200]);
    expect(refusals(p.meridian, 0)).toBe(1);
  });

  test('two IPv6 addresses in one /64 share a bucket; in different /64s they do not', async () => {
    const origin = await upstream();
    const p = await proxy([origin.origin], { geo: { trustedProxies: ['127.0.0.1/32'] }, rateLimits: { rules: [{ name: 'api', rate: 0.001, burst: 2 }] } });

    expect(await statuses(p.port, 2, from('2001:db8:1:2::a'))).toEqual([200, 200]);
    // Same /64, another address: the bucket is already empty.
    expect(await statuses(p.port, 2, from('2001:db8:1:2:ffff:ffff:ffff:ffff'))).toEqual([429, 429]);
    // The next /64 over, and one that differs only in its first bits: a bucket each.
    expect(await statuses(p.port, 3, from('2001:db8:1:3::a'))).toEqual([200, 200, 429]);
    expect(await statuses(p.port, 3, from('3001:db8:1:2::a'))).toEqual([200, 200, 429]);
    expect(origin.requests).toBe(6);
  });

  test('a configured IPv4 prefix groups a whole /24 into one bucket', async () => {
    const origin = await upstream();
    const p = await proxy([origin.origin], { geo: { trustedProxies: ['127.0.0.1/32'] }, rateLimits: { ipv4Prefix: 24, rules: [{ name: 'api', rate: 0.001, burst: 2 }] } });

    expect(await statuses(p.port, 1, from('198.51.100.1'))).toEqual([200]);
    expect(await statuses(p.port, 2, from('198.51.100.254'))).toEqual([200, 429]);
    expect(await statuses(p.port, 1, from('198.51.101.1'))).toEqual([200]);
  });
});

describe('rules', () => {
  test('a rule with a path prefix and methods limits only those requests, and counts under its own index', async () => {
    const origin = await upstream();
    const p = await proxy([origin.origin], {
      rateLimits: {
        rules: [
          { name: 'everything', rate: 1000, burst: 1000 },
          { name: 'sign-in', pathPrefix: '/v1/account/sessions', methods: ['POST'], rate: 0.001, burst: 1 },
        ],
      },
    });

    const signIn: SendOptions = { method: 'POST', path: '/v1/account/sessions/email', body: '{"email":"a@example.com"}' };
    expect(await statuses(p.port, 1, signIn)).toEqual([200]);
    const refused = await send(p.port, signIn);
    expectRefusal(refused, 1000);
    expect(String(json(refused).message)).toContain('"sign-in"');
    // Other methods on the same path, and POSTs elsewhere, are not the rule's business.
    expect(await statuses(p.port, 3, { path: '/v1/account/sessions' })).toEqual(times(3, 200));
    expect(await statuses(p.port, 3, { method: 'POST', path: '/v1/databases/main/documents', body: '{}' })).toEqual(times(3, 200));
    expect(await statuses(p.port, 2, { method: 'POST', path: '/v1/account/sessions/anonymous', body: '{}' })).toEqual([429, 429]);

    expect(refusals(p.meridian, 1)).toBe(3);
    expect(refusals(p.meridian, 0)).toBe(0);
    expect(origin.requests).toBe(7);
  });

  test('a rule for one host leaves the others alone', async () => {
    const origin = await upstream();
    const p = await proxy([origin.origin], { rateLimits: { rules: [{ name: 'functions', host: '*.functions.example', rate: 0.001, burst: 1 }] } });

    expect(await statuses(p.port, 2, { headers: { host: 'Hello.Functions.Example:8080' } })).toEqual([200, 429]);
    expect(await statuses(p.port, 3, { headers: { host: 'api.example' } })).toEqual(times(3, 200));
  });
});

describe('WebSocket upgrades', () => {
  const UPGRADE = (path: string): string =>
    `GET ${path} HTTP/1.1\r\nHost: meridian.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;

  test('an upgrade over the limit gets the same 429 before any upstream is contacted', async () => {
    const realtime: WebSocketUpstream = await startWebSocketUpstream();
    upstreams.push(realtime);
    const p = await proxy([realtime.origin], { rateLimits: { rules: [{ name: 'realtime', pathPrefix: '/v1/realtime', rate: 0.001, burst: 1 }] } });

    const ws = new WebSocket(`ws://127.0.0.1:${p.port}/v1/realtime?project=demo`);
    ws.on('error', () => {});
    sockets.push(ws);
    await once(ws, 'open');
    expect(realtime.handshakes).toHaveLength(1);

    const answer = parseRawResponse(await rawExchange(p.port, UPGRADE('/v1/realtime?project=demo')));
    expect(answer.status).toBe(429);
    expect(answer.headers['retry-after']).toBe('1000');
    expect(answer.headers['content-type']).toBe('application/json');
    expect(JSON.parse(answer.body)).toMatchObject({ code: 429, type: 'meridian_rate_limited' });
    expect(realtime.handshakes).toHaveLength(1);
    expect(refusals(p.meridian, 0)).toBe(1);
  });
});

describe('a reload', () => {
  test('keeps the buckets when only a rule’s numbers change, and starts them over when the table is sized anew', async () => {
    const origin = await upstream();
    const dir = await mkdtemp(join(tmpdir(), 'meridian-rate-limits-'));
    dirs.push(dir);
    const file = join(dir, 'meridian.json');
    const write = (rateLimits: Record<string, unknown>): Promise<void> => writeFile(file, JSON.stringify(rawConfig([origin.origin], { rateLimits })));
    await write({ rules: [{ name: 'api', rate: 0.001, burst: 2 }] });
    const meridian = await startMeridian(await loadConfigFile(file, {}), { configPath: file });
    proxies.push(meridian);
    const port = meridian.proxyAddress.port;
    const reload = async (): Promise<void> => expect(json(await send(meridian.adminAddress.port, { method: 'POST', path: '/reload' }))).toMatchObject({ ok: true });

    expect(await statuses(port, 3)).toEqual([200, 200, 429]);
    // One more token in the bucket: the two spent stay spent, so exactly one more request passes.
    await write({ rules: [{ name: 'api', rate: 0.001, burst: 3 }] });
    await reload();
    expect(await statuses(port, 2)).toEqual([200, 429]);
    // Room for more clients: a new table, in which this client (its group unchanged) starts with a full bucket.
    await write({ maxClients: 50_000, rules: [{ name: 'api', rate: 0.001, burst: 3 }] });
    await reload();
    expect(await statuses(port, 4)).toEqual([200, 200, 200, 429]);
    // A rule renamed is another rule, with buckets of its own.
    await write({ maxClients: 50_000, rules: [{ name: 'everything', rate: 0.001, burst: 3 }] });
    await reload();
    expect(await statuses(port, 4)).toEqual([200, 200, 200, 429]);
  });
});
