// Worker threads over their lifetime (`workers: 2`): a worker that crashes or stops answering is replaced while the
// other keeps serving, config and geo reloads reach every worker, and shutdown drains them all. The kernel spreads new
// connections across the workers, so a test tells which worker served by the per-thread `requests` in /status: a
// keep-alive connection stays with the worker that accepted it, and many fresh connections reach both.
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { connect, createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Client } from 'undici';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi, type MockInstance } from 'vitest';
import { loadConfigFile } from '../src/config/load.ts';
import { startMeridian, type Meridian } from '../src/main.ts';
import type { StatusReport } from '../src/admin/status.ts';
import { json, send, startProxy, startUpstream, until, type Reply, type SendOptions, type Upstream } from './support/harness.ts';
import { double, writeMmdb, type MmdbValue } from './support/mmdb-writer.ts';

/** Fresh connections per check: with two workers, 30 all landing on one has odds of 2^-29. */
const FRESH = 30;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-workers-lifecycle-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const running: Meridian[] = [];
const upstreams: Upstream[] = [];
const clients: Client[] = [];
/** The supervisor reports crashes and replacements on stderr; the tests read them here. */
let log: MockInstance<typeof console.error>;
beforeEach(() => {
  log = vi.spyOn(console, 'error').mockImplementation(() => {});
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.destroy()));
  await Promise.all(running.splice(0).map((m) => m.shutdown()));
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
  vi.restoreAllMocks();
});

async function upstream(name: string, held?: ServerResponse[]): Promise<Upstream> {
  const started = await startUpstream((req, res) => {
    if (held !== undefined && req.url === '/slow') held.push(res);
    else res.end(name);
  });
  upstreams.push(started);
  return started;
}

/** Reads what the admin plane says about the running instance. */
function admin(m: Meridian) {
  const port = m.adminAddress.port;
  return {
    status: async () => json(await send(port, { path: '/status' })) as unknown as StatusReport,
    /** Each worker slot's exchanges so far. */
    requests: async () => (json(await send(port, { path: '/status' })) as unknown as StatusReport).workers.threads.map((t) => t.requests),
    restartsMetric: async () => Number(/^meridian_worker_restarts_total (\d+)$/m.exec((await send(port, { path: '/metrics' })).body.toString())?.[1]),
    reload: () => send(port, { method: 'POST', path: '/reload' }),
  };
}

/** The slots whose `requests` grew between two readings. */
const grown = (before: number[], after: number[]): number[] => after.flatMap((n, slot) => (n > before[slot] ? [slot] : []));

/** Sends `count` requests, each on its own new connection, and says which workers' request counts grew meanwhile. */
async function onFresh(m: Meridian, count: number, options: SendOptions = {}): Promise<{ replies: Reply[]; slots: number[] }> {
  const before = await admin(m).requests();
  const replies = await Promise.all(Array.from({ length: count }, () => send(m.proxyAddress.port, options)));
  return { replies, slots: grown(before, await admin(m).requests()) };
}

/** One request on the client's one connection, its status and body. */
async function get(client: Client, path = '/'): Promise<{ status: number; body: string }> {
  const { statusCode, body } = await client.request({ method: 'GET', path });
  return { status: statusCode, body: await body.text() };
}

/**
 * A keep-alive connection that worker `slot` accepted: new clients are opened until one of them is served by that
 * worker (nothing else runs meanwhile, so exactly one worker's count grows per request). An undici Client keeps one
 * connection; `connects` counts them, so a test can tell that all its requests stayed on it.
 */
async function connectionTo(m: Meridian, slot: number): Promise<{ client: Client; connects: () => number }> {
  for (let attempt = 0; attempt < 40; attempt++) {
    const client = new Client(`http://127.0.0.1:${m.proxyAddress.port}`, { pipelining: 1 });
    clients.push(client);
    let connects = 0;
    client.on('connect', () => connects++);
    const before = await admin(m).requests();
    expect((await get(client)).status).toBe(200);
    const served = grown(before, await admin(m).requests());
    expect(served).toHaveLength(1);
    if (served[0] === slot) return { client, connects: () => connects };
    await client.close();
  }
  throw new Error(`no connection reached worker ${slot} in 40 tries`);
}

/** Requests one after another on one connection until `stop()`, capped so a test cannot run away. */
function stream(client: Client, cap = 5_000) {
  const statuses: number[] = [];
  let stopped = false;
  const done = (async () => {
    while (!stopped && statuses.length < cap) {
      // A failed request counts as status 0 rather than ending the stream, so the assertion names how many failed.
      statuses.push(await get(client).then((r) => r.status, () => 0));
    }
  })();
  return {
    statuses,
    stop: async () => {
      stopped = true;
      await done;
      return statuses;
    },
  };
}

describe('a worker that dies is replaced while the other keeps serving', () => {
  test('a crashed worker is replaced, counted once, and not one request on the other worker fails meanwhile', async () => {
    const backend = await upstream('backend');
    const { meridian } = await startProxy([backend.origin], {}, { workers: 2, start: { testHooks: true } });
    running.push(meridian);
    const m = admin(meridian);
    const before = (await m.status()).workers;
    expect(before).toMatchObject({ mode: 'workers', restarts: 0 });
    expect(before.threads.map((t) => t.listening)).toEqual([true, true]);
    const crashedThread = before.threads[0].threadId;

    const { client, connects } = await connectionTo(meridian, 1);
    const traffic = stream(client);
    await until(() => traffic.statuses.length >= 20, 'requests flowing on worker 1');
    meridian.supervisor!.poke(0, { kind: 'crash' });

    await until(async () => (await m.restartsMetric()) === 1, 'meridian_worker_restarts_total to reach 1');
    const replaced = await until(async () => {
      const { workers } = await m.status();
      return workers.threads[0].listening && workers.threads[0].restarts === 1 ? workers : null;
    }, 'worker 0 to listen again');
    // Keep streaming a little past the replacement, then stop.
    const mark = traffic.statuses.length;
    await until(() => traffic.statuses.length >= mark + 20, 'requests after the replacement');
    const statuses = await traffic.stop();

    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    // All of them on the one connection to worker 1, which the crash never touched.
    expect(connects()).toBe(1);
    expect(replaced.restarts).toBe(1);
    expect(replaced.threads.map((t) => [t.slot, t.listening, t.restarts])).toEqual([
      [0, true, 1],
      [1, true, 0],
    ]);
    expect(replaced.threads[0].threadId).not.toBe(crashedThread);
    expect(await m.restartsMetric()).toBe(1);
    expect(log.mock.calls.some(([line]) => String(line).startsWith('meridian: replacing worker 0'))).toBe(true);

    // The replacement takes new connections again: both workers serve.
    const after = await onFresh(meridian, FRESH);
    expect(after.replies.map((r) => r.status)).toEqual(Array(FRESH).fill(200));
    expect(after.slots).toEqual([0, 1]);
  });

  test('a worker that stops answering is ended and replaced long before its hang would end', async () => {
    const backend = await upstream('backend');
    const { meridian } = await startProxy([backend.origin], {}, { workers: 2, start: { testHooks: true, watchdogMs: 500 } });
    running.push(meridian);
    const m = admin(meridian);
    const { client, connects } = await connectionTo(meridian, 1);
    const traffic = stream(client);
    // Past a few watchdog periods first: two workers that answer are left alone, however long they took to boot.
    await until(() => traffic.statuses.length >= 20, 'requests flowing on worker 1');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const before = (await m.status()).workers;
    expect(before.restarts).toBe(0);

    const hung = performance.now();
    meridian.supervisor!.poke(0, { kind: 'hang', ms: 3_000 });
    const servedBefore = traffic.statuses.length;
    await until(async () => (await m.status()).workers.restarts === 1, 'worker 0 to be ended', 3_000);
    // The watchdog notices within 500 ms and one check (125 ms); the hang would have run for 3 s.
    const endedAfterMs = performance.now() - hung;
    // Booting the replacement takes what a worker's start takes, hang or not.
    const replaced = await until(
      async () => {
        const { workers } = await m.status();
        return workers.threads[0].listening ? workers : null;
      },
      'the replacement of worker 0 to listen',
      10_000,
    );
    const servedDuring = traffic.statuses.length - servedBefore;
    const statuses = await traffic.stop();

    expect(endedAfterMs).toBeLessThan(2_000);
    expect(replaced.restarts).toBe(1);
    expect(replaced.threads.map((t) => t.restarts)).toEqual([1, 0]);
    expect(replaced.threads[0].threadId).not.toBe(before.threads[0].threadId);
    expect(replaced.threads[1].threadId).toBe(before.threads[1].threadId);
    expect(await m.restartsMetric()).toBe(1);
    expect(log.mock.calls.some(([line]) => String(line).startsWith('meridian: worker 0 has not answered'))).toBe(true);
    // Worker 1 kept serving on its connection throughout.
    expect(servedDuring).toBeGreaterThan(10);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(connects()).toBe(1);
  });
});

/** One region per entry, each with one zone and one endpoint; this instance sits in the first. */
function regions(list: readonly { name: string; location: [number, number]; origin: string }[]): Record<string, unknown> {
  return Object.fromEntries(list.map(({ name, location, origin }) => [name, { location, zones: { 'az-1': { endpoints: [origin] } } }]));
}

let files = 0;
/** Starts two workers from a config file, and returns a function that rewrites that file. */
async function startFromFile(config: (extra: Record<string, unknown>) => Record<string, unknown>, testHooks = false): Promise<{ meridian: Meridian; write: (extra?: Record<string, unknown>) => Promise<void> }> {
  const file = join(dir, `meridian-${++files}.json`);
  const write = (extra: Record<string, unknown> = {}) => writeFile(file, JSON.stringify(config(extra)));
  await write();
  const meridian = await startMeridian(await loadConfigFile(file, {}), { configPath: file, testHooks });
  running.push(meridian);
  return { meridian, write };
}

/** A loopback port nothing listens on now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

const base = {
  listen: { host: '127.0.0.1', port: 0 },
  admin: { host: '127.0.0.1', port: 0 },
  health: { interval: '1h' },
  shutdown: { drainDelay: 0 },
  workers: 2,
};

describe('reloads reach every worker', () => {
  test('a config reload turns on routing headers and moves traffic to a new upstream on both workers', async () => {
    const old = await upstream('old');
    const replacement = await upstream('new');
    const config = (extra: Record<string, unknown>) => ({
      ...base,
      self: { region: 'local', zone: 'az-1' },
      regions: regions([{ name: 'local', location: [50.11, 8.68], origin: old.origin }]),
      ...extra,
    });
    const { meridian, write } = await startFromFile(config);
    const m = admin(meridian);

    const before = await onFresh(meridian, FRESH);
    expect(before.slots).toEqual([0, 1]);
    expect(before.replies.filter((r) => r.headers['x-meridian-region'] !== undefined)).toEqual([]);

    await write({ headers: { routingHeaders: true } });
    expect(json(await m.reload())).toMatchObject({ ok: true, version: 2 });
    const headed = await onFresh(meridian, FRESH);
    expect(headed.slots).toEqual([0, 1]);
    expect(headed.replies.map((r) => [r.status, r.headers['x-meridian-region']])).toEqual(Array(FRESH).fill([200, 'local']));

    const oldServed = old.requests;
    await write({ headers: { routingHeaders: true }, regions: regions([{ name: 'local', location: [50.11, 8.68], origin: replacement.origin }]) });
    expect(json(await m.reload())).toMatchObject({ ok: true, version: 3 });
    const moved = await onFresh(meridian, FRESH);
    expect(moved.slots).toEqual([0, 1]);
    expect(moved.replies.map((r) => [r.status, r.body.toString()])).toEqual(Array(FRESH).fill([200, 'new']));
    expect(old.requests).toBe(oldServed);
  });

  test('a worker replaced after a reload that changed the listeners opens the ones the process started with', async () => {
    const backend = await upstream('backend');
    const config = (extra: Record<string, unknown>) => ({ ...base, self: { region: 'local', zone: 'az-1' }, regions: regions([{ name: 'local', location: [50.11, 8.68], origin: backend.origin }]), ...extra });
    const { meridian, write } = await startFromFile(config, true);
    const m = admin(meridian);
    // A listener the reload adds: it waits for a restart, so nothing may accept on its port before one.
    const pending = await freePort();
    await write({ listen: [base.listen, { protocol: 'redirect', host: '127.0.0.1', port: pending }] });
    expect(json(await m.reload())).toMatchObject({ ok: true, restartRequired: ['listen'] });

    meridian.supervisor!.poke(0, { kind: 'crash' });
    await until(async () => {
      const { workers } = await m.status();
      return workers.threads[0].listening && workers.threads[0].restarts === 1;
    }, 'worker 0 to be replaced and listen again');
    const after = await onFresh(meridian, FRESH);
    expect(after.replies.map((r) => r.status)).toEqual(Array(FRESH).fill(200));
    expect(after.slots).toEqual([0, 1]);
    expect(await refused(pending), `nothing listens on ${pending} until a restart`).toBe(true);
  });

  test('a geo database replaced on disk moves a client to the region it is now placed near, on both workers', async () => {
    const europe = await upstream('europe');
    const america = await upstream('america');
    const clientIp = '89.160.20.112';
    const placedAt = (latitude: number, longitude: number, buildEpoch: number): Buffer => {
      const data: MmdbValue = { continent: { code: 'EU' }, country: { iso_code: 'SE' }, location: { latitude: double(latitude), longitude: double(longitude) } };
      return writeMmdb([{ network: '89.160.20.0/24', data }], { databaseType: 'GeoIP2-City', buildEpoch });
    };
    const database = join(dir, 'GeoIP2-City.mmdb');
    await writeFile(database, placedAt(59.33, 18.07, 1_700_000_000));
    const { meridian } = await startFromFile(() => ({
      ...base,
      self: { region: 'europe', zone: 'az-1' },
      regions: regions([
        { name: 'europe', location: [59.33, 18.07], origin: europe.origin },
        { name: 'america', location: [47.61, -122.33], origin: america.origin },
      ]),
      geo: { databases: [database], trustedProxies: ['127.0.0.0/8'] },
    }));
    const m = admin(meridian);
    const fromClient = { headers: { 'x-forwarded-for': clientIp } };

    const before = await onFresh(meridian, FRESH, fromClient);
    expect(before.slots).toEqual([0, 1]);
    expect(before.replies.map((r) => r.body.toString())).toEqual(Array(FRESH).fill('europe'));

    // Replaced the way geoipupdate does it: a sibling file renamed over the watched one.
    await writeFile(`${database}.tmp`, placedAt(47.61, -122.33, 1_800_000_000));
    await rename(`${database}.tmp`, database);
    // Each worker applies the new database when its snapshot arrives: wait until each has placed the client anew.
    const moved = new Set<number>();
    await until(
      async () => {
        const counts = await m.requests();
        const reply = await send(meridian.proxyAddress.port, fromClient);
        const [slot] = grown(counts, await m.requests());
        if (reply.body.toString() === 'america') moved.add(slot);
        return moved.size === 2;
      },
      'both workers to place the client in america',
      5_000,
      20,
    );

    const after = await onFresh(meridian, FRESH, fromClient);
    expect(after.slots).toEqual([0, 1]);
    expect(after.replies.map((r) => [r.status, r.body.toString()])).toEqual(Array(FRESH).fill([200, 'america']));
    expect((await m.status()).geo.databases[0].buildDate).toBe(new Date(1_800_000_000_000).toISOString());
  });
});

describe('in-flight requests keep their snapshot', () => {
  test('a request held on each worker across a reload that removed its next endpoint retries to the endpoint its own snapshot named', async () => {
    const held: ServerResponse[] = [];
    const local = await upstream('local', held);
    const near = await upstream('near');
    const far = await upstream('far');
    // Three regions at growing distance: a failed request in the local one goes to near, then far.
    const places = { local: { location: [50.11, 8.68], origin: local.origin }, near: { location: [50.11, 13.68], origin: near.origin }, far: { location: [50.11, 18.68], origin: far.origin } } as const;
    const list = (names: readonly (keyof typeof places)[]) => regions(names.map((name) => ({ name, location: [...places[name].location] as [number, number], origin: places[name].origin })));
    const config = (extra: Record<string, unknown>) => ({
      ...base,
      self: { region: 'local', zone: 'az-1' },
      regions: list(['local', 'near', 'far']),
      outlierDetection: { consecutiveFailures: 100 },
      ...extra,
    });
    const { meridian, write } = await startFromFile(config);
    const m = admin(meridian);

    // Slow requests on fresh connections until each worker holds one at the local endpoint.
    const inFlight: Promise<Reply>[] = [];
    const holding = new Set<number>();
    for (let attempt = 0; attempt < 30 && holding.size < 2; attempt++) {
      const counts = await m.requests();
      const reply = send(meridian.proxyAddress.port, { path: '/slow' });
      reply.catch(() => {});
      inFlight.push(reply);
      await until(() => held.length === inFlight.length, 'the slow request at the local endpoint');
      holding.add(grown(counts, await m.requests())[0]);
    }
    expect([...holding].sort()).toEqual([0, 1]);

    // near leaves the config (far is now next after local), and routing headers show which snapshot served.
    await write({ regions: list(['local', 'far']), headers: { routingHeaders: true } });
    expect(json(await m.reload())).toMatchObject({ ok: true, version: 2 });
    const fresh = await onFresh(meridian, FRESH);
    expect(fresh.slots).toEqual([0, 1]);
    expect(fresh.replies.map((r) => [r.status, r.headers['x-meridian-region']])).toEqual(Array(FRESH).fill([200, 'local']));

    // The held requests' connections to local are cut before any answer: each retries, on its own snapshot, to near.
    const before = { near: near.requests, far: far.requests };
    for (const res of held.splice(0, inFlight.length)) res.socket!.destroy();
    const replies = await Promise.all(inFlight);
    expect(replies.map((r) => [r.status, r.body.toString()])).toEqual(Array(inFlight.length).fill([200, 'near']));
    expect(near.requests - before.near).toBe(inFlight.length);
    expect(far.requests).toBe(before.far);
  });
});

describe('shutdown drains every worker', () => {
  test('requests held on both workers finish with 200 while new connections are refused, and the workers end', async () => {
    const held: ServerResponse[] = [];
    const backend = await upstream('backend', held);
    const { meridian, port } = await startProxy([backend.origin], { shutdown: { drainDelay: 0, drainTimeout: '10s' } }, { workers: 2 });
    running.push(meridian);
    const m = admin(meridian);

    // Held requests on fresh connections until each worker holds at least one.
    const inFlight: Promise<Reply>[] = [];
    const holding = new Set<number>();
    for (let attempt = 0; attempt < 30 && holding.size < 2; attempt++) {
      const counts = await m.requests();
      inFlight.push(send(port, { path: '/slow' }));
      await until(() => held.length === inFlight.length, 'the slow request at the upstream');
      holding.add(grown(counts, await m.requests())[0]);
    }
    expect([...holding].sort()).toEqual([0, 1]);
    const { workers, traffic } = await m.status();
    expect(workers.threads.every((t) => t.connections >= 1)).toBe(true);
    expect(traffic.inflight).toBe(inFlight.length);

    let stopped = false;
    const stopping = meridian.shutdown().then(() => (stopped = true));
    // Both listeners close: a new connection finds no worker to take it.
    await until(
      () => send(port).then(
        () => false,
        (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED',
      ),
      'new connections to be refused',
    );
    expect(stopped).toBe(false);

    for (const res of held) res.end('done');
    const replies = await Promise.all(inFlight);
    expect(replies.map((r) => [r.status, r.body.toString()])).toEqual(Array(inFlight.length).fill([200, 'done']));
    await stopping;
    expect(meridian.runtime.workers().threads.map((t) => [t.listening, t.threadId])).toEqual([
      [false, -1],
      [false, -1],
    ]);
  });
});
