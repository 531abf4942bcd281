// Health and failover end to end (DESIGN.md §3–§4), with real backends killed and restarted on their ports: zone and
// region failover and recovery, thresholds against flapping, which failures are retried, the retry budget, fences and
// panic, the circuit breaker, passive ejection, readiness for GeoDNS, and WebSocket connects.
import { afterEach, describe, expect, test } from 'vitest';
import { once } from 'node:events';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { WebSocket } from 'ws';
import type { HealthChange } from '../src/health/state.ts';
import { exchangeFailover } from '../src/proxy/events.ts';
import type { FailoverRecord } from '../src/proxy/record.ts';
import { json, readBody, send, until, type Overrides, type SendOptions } from './support/harness.ts';
import { cityFixture, cityRecord as city } from './support/mmdb-writer.ts';
import { startWorld, type Layout, type World } from './support/zones.ts';

/** This instance is eu-central/az-1. Loopback clients have no location: local zone, sibling zone, then by distance. */
const LAYOUT: Layout = {
  'eu-central': { location: [50.11, 8.68], zones: { 'az-1': ['central-1'], 'az-2': ['central-2'] } },
  'eu-west': { location: [48.86, 2.35], zones: { 'az-1': ['west-1'] } },
  'us-east': { location: [39.04, -77.49], zones: { 'az-1': ['east-1'] } },
};
const SELF = { region: 'eu-central', zone: 'az-1' };
/** Short enough that a test sees an endpoint go down in ~0.4 s and come back in ~0.2 s. */
const HEALTH = { interval: '200ms', unhealthyInterval: '100ms', timeout: '150ms', rise: 2, fall: 2 };
/** Placed by the fixture database when a trusted loopback proxy names them in X-Forwarded-For. */
const STOCKHOLM_IP = '89.160.20.112';
const NEW_YORK_IP = '66.108.1.2';

// A two-network fixture instead of the bundled city database: each world opens it, and it loads in no time.
const database = cityFixture([
  { network: '89.160.20.0/24', data: city('SE', 'EU', 59.33, 18.07) },
  { network: '66.108.0.0/16', data: city('US', 'NA', 40.71, -74.01) },
]);

const worlds: World[] = [];
/** Each failover the data plane announces, as `failed → next` by backend name. */
const failovers: string[] = [];
const nameOf = new Map<string, string>();
const onFailover = (message: unknown): void => {
  const { from, to } = message as FailoverRecord;
  failovers.push(`${nameOf.get(from.origin)} → ${nameOf.get(to.origin)}`);
};
exchangeFailover.subscribe(onFailover);

afterEach(async () => {
  failovers.length = 0;
  await Promise.all(worlds.splice(0).map((w) => w.close()));
});

async function world(overrides: Overrides = {}): Promise<World> {
  const geo = { databases: [database()], trustedProxies: ['127.0.0.0/8'] };
  const started = await startWorld(LAYOUT, SELF, { ...overrides, geo: { ...geo, ...overrides.geo }, health: { ...HEALTH, ...overrides.health } });
  worlds.push(started);
  for (const backend of Object.values(started.backends)) nameOf.set(backend.origin, backend.name);
  return started;
}

/** The backend that answered a request with its default 200, or `STATUS body` for anything else. */
async function servedBy(w: World, options: SendOptions = {}): Promise<string> {
  const reply = await send(w.port, { path: '/v1/databases/main/collections', ...options });
  return reply.status === 200 ? reply.body.toString() : `${reply.status} ${reply.body.toString()}`;
}

/** Requests that reached any backend but the named ones. */
function requestsElsewhere(w: World, ...except: string[]): number {
  return Object.values(w.backends)
    .filter((b) => !except.includes(b.name))
    .reduce((sum, b) => sum + b.requests, 0);
}

const isDown = (w: World, name: string) => () => !w.health().up[w.index(name)];

describe('zone and region failover', () => {
  test('the local zone down: the sibling zone serves at once, and once checks take it down, without trying it first', async () => {
    const w = await world();
    expect(await servedBy(w)).toBe('central-1');
    await w.backends['central-1'].kill();
    // Before any check notices: the refused connect goes to the next candidate.
    expect(await servedBy(w)).toBe('central-2');
    expect(failovers).toEqual(['central-1 → central-2']);

    await until(isDown(w, 'central-1'), 'the checks to take central-1 down');
    failovers.length = 0;
    for (let i = 0; i < 5; i++) expect(await servedBy(w)).toBe('central-2');
    expect(failovers).toEqual([]);
  });

  test('the whole local region down: the next nearest region serves', async () => {
    const w = await world();
    await Promise.all([w.backends['central-1'].kill(), w.backends['central-2'].kill()]);
    expect(await servedBy(w)).toBe('west-1');
    await until(() => isDown(w, 'central-1')() && isDown(w, 'central-2')(), 'the checks to take eu-central down');
    failovers.length = 0;
    for (let i = 0; i < 5; i++) expect(await servedBy(w)).toBe('west-1');
    expect(failovers).toEqual([]);
    expect(w.backends['east-1'].requests).toBe(0);
  });

  test('recovery: traffic returns to the local zone once checks see it back, though traffic had ejected it', async () => {
    const w = await world();
    const local = w.backends['central-1'];
    await local.kill();
    // Five refused connects eject it before the checks notice (each request still succeeds elsewhere).
    for (let i = 0; i < 6; i++) expect(await servedBy(w)).toBe('central-2');
    expect(w.health().isEjected(w.index('central-1'))).toBe(true);
    await until(isDown(w, 'central-1'), 'the checks to take central-1 down');

    await local.restart();
    // Down endpoints are probed every 100 ms and need 2 passes; a 30 s ejection must not keep traffic away.
    await until(async () => (await servedBy(w)) === 'central-1', 'traffic back in the local zone', 2_000, 20);
    expect(w.health().isEjected(w.index('central-1'))).toBe(false);
  });

  test('a flapping endpoint does not flap routing: rise and fall thresholds hold', async () => {
    const w = await world({ health: { interval: '40ms', unhealthyInterval: '40ms' } });
    const flapper = w.backends['central-1'];
    flapper.probeAnswer = 'flap';
    const changes: HealthChange[] = [];
    const index = w.index('central-1');
    w.health().onChange((change) => {
      if (change.index === index && change.kind !== 'rtt') changes.push(change);
    });
    const start = flapper.probes;
    await until(() => flapper.probes >= start + 12, 'a dozen flapping probes', 3_000);
    expect(changes).toEqual([]);
    expect(w.usable('central-1')).toBe(true);
    for (let i = 0; i < 3; i++) expect(await servedBy(w)).toBe('central-1');
  });
});

describe('which failures are retried', () => {
  const login = { method: 'POST', path: '/v1/account/sessions/email', headers: { 'content-type': 'application/json' }, body: '{"email":"a@b.c"}' };

  test('a POST is not retried after a reset: the upstream may have acted on it', async () => {
    const w = await world();
    const local = w.backends['central-1'];
    local.handler = (req) => {
      req.resume();
      req.on('end', () => req.socket.destroy());
    };
    const reply = await send(w.port, login);
    expect(reply.status).toBe(502);
    expect(json(reply)).toMatchObject({ code: 502, type: 'meridian_upstream_error' });
    // Without a body there is nothing to replay, and still the method alone forbids it.
    const anonymous = await send(w.port, { method: 'POST', path: '/v1/account/sessions/anonymous' });
    expect(anonymous.status).toBe(502);
    expect(local.requests).toBe(2);
    expect(requestsElsewhere(w, 'central-1')).toBe(0);
  });

  test('a POST is not retried after a 503: the client gets that answer', async () => {
    const w = await world();
    w.backends['central-1'].handler = (req, res) => req.resume().on('end', () => res.writeHead(503).end('busy'));
    const reply = await send(w.port, login);
    expect(`${reply.status} ${reply.body.toString()}`).toBe('503 busy');
    expect(requestsElsewhere(w, 'central-1')).toBe(0);
  });

  test('a POST is retried after a connect failure, with its body intact: nothing was sent', async () => {
    const w = await world();
    await w.backends['central-1'].kill();
    const sibling = w.backends['central-2'];
    sibling.handler = (req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      req.on('end', () => res.end(`central-2 got ${body}`));
    };
    const reply = await send(w.port, login);
    expect(`${reply.status} ${reply.body.toString()}`).toBe('200 central-2 got {"email":"a@b.c"}');
    expect(failovers).toEqual(['central-1 → central-2']);
  });

  test('a GET is retried after a reset and after a 503, and the client gets the next endpoint’s 200', async () => {
    const w = await world();
    const local = w.backends['central-1'];
    local.handler = (req) => req.socket.destroy();
    expect(await servedBy(w)).toBe('central-2');
    local.handler = (_req, res) => res.writeHead(503, { 'retry-after': '1' }).end('overloaded');
    expect(await servedBy(w)).toBe('central-2');
    expect(local.requests).toBe(2);
    expect(failovers).toEqual(['central-1 → central-2', 'central-1 → central-2']);
  });

  test('nothing is retried once response bytes reached the client: the connection is cut instead', async () => {
    const w = await world();
    const cut = Promise.withResolvers<void>();
    w.backends['central-1'].handler = (_req, res) => {
      res.writeHead(200, { 'content-length': 1_000 });
      res.write('the first bytes');
      void cut.promise.then(() => res.socket?.destroy());
    };
    const req = httpRequest({ host: '127.0.0.1', port: w.port, path: '/v1/storage/buckets/b/files/f/download', agent: false }).end();
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    const outcome = readBody(res);
    res.once('data', () => cut.resolve());
    const { complete, body } = await outcome;
    expect(res.statusCode).toBe(200);
    expect(complete).toBe(false);
    expect(body.toString()).toBe('the first bytes');
    expect(requestsElsewhere(w, 'central-1')).toBe(0);
    expect(failovers).toEqual([]);
  });
});

describe('retry budget', () => {
  /** Every endpoint answers 503 after 30 ms, so 30 concurrent GETs are all in flight together; returns the statuses and upstream attempts. */
  async function totalOutage(retries: Record<string, unknown>): Promise<{ statuses: number[]; attempts: number }> {
    const w = await world({ retries });
    for (const backend of Object.values(w.backends)) backend.handler = (_req, res) => void setTimeout(() => res.writeHead(503).end('down'), 30);
    const replies = await Promise.all(Array.from({ length: 30 }, () => send(w.port, { path: '/v1/databases' })));
    return { statuses: replies.map((r) => r.status), attempts: requestsElsewhere(w) };
  }

  test('caps retries during a total outage: 30 requests cost at most 42 upstream attempts, not 90', async () => {
    const { statuses, attempts } = await totalOutage({});
    expect(statuses).toEqual(Array(30).fill(503));
    // 30 first attempts, plus at most two more for each of the max(3, 20 % of 30) = 6 exchanges the budget lets retry.
    expect(attempts).toBeGreaterThan(30);
    expect(attempts).toBeLessThanOrEqual(30 + 2 * 6);
  });

  test('without the budget the same outage triples the load (what the cap prevents)', async () => {
    const { statuses, attempts } = await totalOutage({ budgetPercent: 100, minConcurrency: 1_000 });
    expect(statuses).toEqual(Array(30).fill(503));
    expect(attempts).toBe(90);
  });
});

describe('fences and panic', () => {
  test('a strict fence whose endpoints are all down answers 503 naming the fence, and never tries them or leaves it', async () => {
    const w = await world({
      routing: { fences: [{ name: 'eu-residency', match: { continent: 'EU' }, regions: ['eu-central', 'eu-west'], mode: 'strict' }] },
    });
    // Their checks fail while their traffic would still succeed: panic would be visible as a 200.
    const fenced = ['central-1', 'central-2', 'west-1'];
    for (const name of fenced) w.backends[name].probeAnswer = 'fail';
    await until(() => fenced.every((name) => !w.usable(name)), 'every fenced endpoint to be down');

    const reply = await send(w.port, { path: '/v1/databases', headers: { 'x-forwarded-for': STOCKHOLM_IP } });
    expect(reply.status).toBe(503);
    const body = json(reply);
    expect(body).toMatchObject({ code: 503, type: 'meridian_fence_exhausted' });
    expect(body.message).toMatch(/fence eu-residency \(strict\) keeps it in eu-central, eu-west/);
    expect(requestsElsewhere(w)).toBe(0);
    // A client outside the fence is served as ever.
    expect(await servedBy(w, { headers: { 'x-forwarded-for': NEW_YORK_IP } })).toBe('east-1');
  });

  test('panic: with every endpoint down and no fence, Meridian still tries them all, in order', async () => {
    const w = await world();
    for (const backend of Object.values(w.backends)) backend.probeAnswer = 'fail';
    await w.backends['central-1'].kill();
    await until(() => Object.keys(w.backends).every((name) => !w.usable(name)), 'every endpoint to be down');
    const decision = w.meridian.runtime.plane().router.route({ clientIp: '127.0.0.1', host: undefined, location: null, project: undefined, pinnedRegion: undefined });
    expect(decision.panic).toBe(true);
    expect(decision.reason).toMatch(/panic/);
    // The dead local zone is tried first and refuses; the sibling zone, "down" by its checks, serves.
    expect(await servedBy(w)).toBe('central-2');
    expect(failovers).toEqual(['central-1 → central-2']);
  });
});

describe('circuit breaker', () => {
  test('an endpoint at circuitBreaker.maxRequests is passed over for the next candidate, and all at the limit is a 503', async () => {
    const w = await world({ circuitBreaker: { maxRequests: 1 } });
    const held: ServerResponse[] = [];
    const hold = (_req: IncomingMessage, res: ServerResponse): void => void held.push(res);
    w.backends['central-1'].handler = hold;
    const first = send(w.port, { path: '/v1/functions/slow/executions' });
    await until(() => held.length === 1, 'the first request held at central-1');
    expect(await servedBy(w)).toBe('central-2');
    expect(failovers).toEqual([]);

    for (const name of ['central-2', 'west-1', 'east-1']) w.backends[name].handler = hold;
    const more = ['central-2', 'west-1', 'east-1'].map(() => send(w.port, { path: '/v1/functions/slow/executions' }));
    await until(() => held.length === 4, 'one request held at every endpoint');
    const refused = await send(w.port, { path: '/v1/databases' });
    expect(refused.status).toBe(503);
    expect(json(refused)).toMatchObject({ code: 503, type: 'meridian_upstream_overloaded' });

    held.forEach((res, i) => res.end(`held ${i}`));
    expect((await first).body.toString()).toBe('held 0');
    expect((await Promise.all(more)).map((r) => r.status)).toEqual([200, 200, 200]);
    expect(Object.values(w.backends).map((b) => b.requests)).toEqual([1, 2, 1, 1]);
  });
});

describe('passive outlier ejection', () => {
  test('five consecutive 502s eject an endpoint whose checks still pass: traffic routes around it', async () => {
    const w = await world();
    const local = w.backends['central-1'];
    // The health path stays 200 while the traffic path fails: only live traffic can tell.
    local.handler = (_req, res) => res.writeHead(502).end('bad gateway');
    for (let i = 0; i < 10; i++) expect(await servedBy(w)).toBe('central-2');
    expect(local.requests).toBe(5);
    const index = w.index('central-1');
    expect(w.health().isEjected(index)).toBe(true);
    expect(w.health().up[index]).toBe(true);

    // Passing checks before the ejection time do not bring it back.
    const probes = local.probes;
    await until(() => local.probes >= probes + 2, 'two more passing checks');
    expect(await servedBy(w)).toBe('central-2');
    expect(local.requests).toBe(5);
  });
});

describe('readiness for GeoDNS', () => {
  test('/readyz turns 503 with a JSON reason when the local region is down, and 200 again on recovery', async () => {
    const w = await world();
    const readyz = () => send(w.adminPort, { path: '/readyz' });
    expect((await readyz()).status).toBe(200);

    await Promise.all([w.backends['central-1'].kill(), w.backends['central-2'].kill()]);
    const notReady = await until(async () => {
      const reply = await readyz();
      return reply.status === 503 ? reply : null;
    }, 'readiness to turn 503');
    expect(notReady.headers['content-type']).toMatch(/^application\/json/);
    expect(json(notReady)).toEqual({ status: 'not ready', reason: 'no healthy endpoint in eu-central (policy local-region)' });
    // GeoDNS moves new clients away; the stragglers are still served from the next region.
    expect(await servedBy(w)).toBe('west-1');

    await Promise.all([w.backends['central-1'].restart(), w.backends['central-2'].restart()]);
    const ready = await until(async () => {
      const reply = await readyz();
      return reply.status === 200 && json(reply).reason === '2 of 2 endpoints healthy in eu-central' ? reply : null;
    }, 'readiness to turn 200 with both zones back');
    expect(json(ready)).toEqual({ status: 'ready', reason: '2 of 2 endpoints healthy in eu-central' });
  });
});

describe('WebSocket', () => {
  /** Opens a realtime socket through Meridian and returns the name the backend greets it with. */
  async function wsServedBy(w: World): Promise<string> {
    const ws = new WebSocket(`ws://127.0.0.1:${w.port}/v1/realtime?project=demo&channels[]=files`);
    ws.on('error', () => {});
    try {
      const [greeting] = (await once(ws, 'message')) as [Buffer];
      return greeting.toString();
    } finally {
      ws.terminate();
    }
  }

  test('a connect to a dead local zone fails over to the sibling zone, and returns to it on recovery', async () => {
    const w = await world();
    const local = w.backends['central-1'];
    expect(await wsServedBy(w)).toBe('central-1');
    await local.kill();
    expect(await wsServedBy(w)).toBe('central-2');
    await until(isDown(w, 'central-1'), 'the checks to take central-1 down');
    const attempts = local.requests;
    expect(await wsServedBy(w)).toBe('central-2');
    await local.restart();
    await until(async () => (await wsServedBy(w)) === 'central-1', 'realtime back in the local zone', 2_000, 20);
    expect(local.requests).toBe(attempts + 1);
  });
});
