// A reload that answers ok has applied every field it could, and names the ones that wait for a restart; one that
// cannot be built whole (a bad file, a bad geo database, any failure while building) changes nothing and says why.
// Each test rewrites the config file of a running Meridian and POSTs /reload on its admin port.
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi, type MockInstance } from 'vitest';
import { loadConfigFile } from '../src/config/load.ts';
import { ConfigError } from '../src/config/errors.ts';
import { startMeridian, type Meridian } from '../src/main.ts';
import { UpstreamPools } from '../src/proxy/pools.ts';
import type { StatusReport } from '../src/admin/status.ts';
import { json, parseRawResponse, rawExchange, send, startUpstream, until, type Reply, type SendOptions, type Upstream } from './support/harness.ts';
import { double, writeMmdb, type MmdbValue } from './support/mmdb-writer.ts';

/** A client address the two databases disagree about: Stockholm in one, Seattle in the other. */
const CLIENT_IP = '89.160.20.112';
const city = (iso: string, continent: string, latitude: number, longitude: number): MmdbValue => ({
  continent: { code: continent },
  country: { iso_code: iso },
  location: { latitude: double(latitude), longitude: double(longitude) },
});

let dir: string;
let inEurope: string;
let inAmerica: string;
let upstreams: Record<'europe' | 'america', Upstream>;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-reload-applies-'));
  inEurope = join(dir, 'europe.mmdb');
  inAmerica = join(dir, 'america.mmdb');
  await writeFile(inEurope, writeMmdb([{ network: '89.160.20.0/24', data: city('SE', 'EU', 59.33, 18.07) }], { databaseType: 'GeoIP2-City' }));
  await writeFile(inAmerica, writeMmdb([{ network: '89.160.20.0/24', data: city('US', 'NA', 47.61, -122.33) }], { databaseType: 'GeoIP2-City' }));
  upstreams = {
    europe: await startUpstream((_req, res) => res.end('europe')),
    america: await startUpstream((_req, res) => res.end('america')),
  };
});
afterAll(async () => {
  await Promise.all(Object.values(upstreams).map((u) => u.close()));
  await rm(dir, { recursive: true, force: true });
});

const running: Meridian[] = [];
/** Reloads log their outcome on stderr; the tests read it here instead. */
let log: MockInstance<typeof console.error>;
beforeEach(() => {
  log = vi.spyOn(console, 'error').mockImplementation(() => {});
});
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(running.splice(0).map((m) => m.shutdown()));
});

type Sections = Record<string, Record<string, unknown>>;

/** Two regions, one upstream each; this instance is in europe, and loopback is a trusted proxy. */
function configFor(sections: Sections = {}): Record<string, unknown> {
  const base: Sections = {
    self: { region: 'europe', zone: 'az-1' },
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    regions: {
      europe: { location: [59.33, 18.07], zones: { 'az-1': { endpoints: [upstreams.europe.origin] } } },
      america: { location: [47.61, -122.33], zones: { 'az-1': { endpoints: [upstreams.america.origin] } } },
    },
    geo: { databases: [inEurope], trustedProxies: ['127.0.0.0/8'] },
    headers: { routingHeaders: true },
    health: { interval: '1h' },
    shutdown: { drainDelay: 0 },
  };
  // One data-plane thread: the status figures below (cache bound, counts) are then this thread's own.
  const out: Record<string, unknown> = { ...base, workers: 1 };
  for (const [section, values] of Object.entries(sections)) out[section] = { ...base[section], ...values };
  return out;
}

interface Running {
  readonly proxy: number;
  /** Writes the config file: sections over the defaults, or raw text. */
  write(config: Sections | string): Promise<void>;
  reload(): Promise<Reply>;
  admin(options?: SendOptions): Promise<Reply>;
  status(): Promise<StatusReport>;
  /** The region that served a request from CLIENT_IP. */
  placement(): Promise<string>;
}

let files = 0;
async function start(sections: Sections = {}): Promise<Running> {
  const file = join(dir, `meridian-${++files}.json`);
  const write = (config: Sections | string) => writeFile(file, typeof config === 'string' ? config : JSON.stringify(configFor(config)));
  await write(sections);
  const meridian = await startMeridian(await loadConfigFile(file, {}), { configPath: file });
  running.push(meridian);
  const adminPort = meridian.adminAddress.port;
  const proxy = meridian.proxyAddress.port;
  return {
    proxy,
    write,
    reload: () => send(adminPort, { method: 'POST', path: '/reload' }),
    admin: (options) => send(adminPort, options),
    status: async () => json(await send(adminPort, { path: '/status' })) as unknown as StatusReport,
    placement: async () => {
      const reply = await send(proxy, { headers: { 'x-forwarded-for': CLIENT_IP } });
      expect(reply.status).toBe(200);
      return reply.body.toString();
    },
  };
}

const failedReloads = async (m: Running): Promise<number> =>
  Number(/meridian_config_reloads_total\{result="failure"\} (\d+)/.exec((await m.admin({ path: '/metrics' })).body.toString())?.[1]);

/** Opens a connection and sends half a request head, then waits for the server to answer and close. */
async function slowHeaders(port: number): Promise<{ status: number; afterMs: number }> {
  const started = performance.now();
  const raw = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: example.com\r\nX-Slow: ', 5_000);
  return { status: parseRawResponse(raw).status, afterMs: performance.now() - started };
}

describe('a reload applies live what it can', () => {
  test('a lowered timeouts.requestHeaders cuts a new slow-header client at the new bound', async () => {
    const m = await start({ timeouts: { requestHeaders: '30s' } });
    await m.write({ timeouts: { requestHeaders: '1s' } });
    expect(json(await m.reload())).toEqual({ ok: true, version: 2, restartRequired: [] });
    // Node checks header deadlines once a second, so the cut comes within a second after the bound.
    const cut = await slowHeaders(m.proxy);
    expect(cut.status).toBe(408);
    expect(cut.afterMs).toBeGreaterThanOrEqual(900);
    expect(cut.afterMs).toBeLessThan(3_000);
  });

  test('a lowered timeouts.keepAlive closes a new idle keep-alive connection at the new bound', async () => {
    const m = await start({ timeouts: { keepAlive: '10m' } });
    await m.write({ timeouts: { keepAlive: '1s' } });
    expect((await m.reload()).status).toBe(200);
    const socket = connect(m.proxy, '127.0.0.1');
    await once(socket, 'connect');
    socket.write('GET / HTTP/1.1\r\nHost: example.com\r\n\r\n');
    await once(socket, 'data');
    const answered = performance.now();
    socket.resume();
    await until(() => socket.destroyed || socket.readableEnded, 'the idle keep-alive connection to close', 4_000);
    expect(performance.now() - answered).toBeGreaterThanOrEqual(900);
    socket.destroy();
  });

  test('a new geo.databases list changes where a client is placed, and the cache starts empty', async () => {
    const m = await start();
    expect(await m.placement()).toBe('europe');
    await m.write({ geo: { databases: [inAmerica] } });
    expect(json(await m.reload())).toMatchObject({ ok: true, version: 2 });
    expect(await m.placement()).toBe('america');
    expect((await m.status()).geo.databases.map((db) => db.path)).toEqual([inAmerica]);
  });

  test('a new geo.cacheSize bounds the cache from the reload on', async () => {
    const m = await start();
    for (let i = 1; i <= 5; i++) await send(m.proxy, { headers: { 'x-forwarded-for': `89.160.20.${i}` } });
    expect((await m.status()).geo.cache).toEqual({ max: 100_000, entries: 5 });
    await m.write({ geo: { cacheSize: 2 } });
    expect((await m.reload()).status).toBe(200);
    expect((await m.status()).geo.cache).toEqual({ max: 2, entries: 0 });
    for (let i = 1; i <= 5; i++) await send(m.proxy, { headers: { 'x-forwarded-for': `89.160.20.${i}` } });
    expect((await m.status()).geo.cache).toEqual({ max: 2, entries: 2 });
  });

  test('new upload pin bounds apply and keep the most recent pins', async () => {
    const m = await start();
    // A chunk of an upload whose first chunk this instance never saw pins its upload to the region that took it.
    for (const file of ['a', 'b', 'c']) {
      const headers = { 'content-range': 'bytes 10-19/100', 'x-appwrite-id': file };
      const reply = await send(m.proxy, { method: 'POST', path: '/v1/storage/buckets/photos/files', headers, body: '0123456789' });
      expect(reply.status).toBe(200);
    }
    expect((await m.status()).uploadPins).toEqual({ ttlMs: 3_600_000, maxEntries: 100_000, uploads: 3 });
    await m.write({ routing: { uploadPinning: { ttl: '2h', maxEntries: 2 } } });
    expect((await m.reload()).status).toBe(200);
    expect((await m.status()).uploadPins).toEqual({ ttlMs: 7_200_000, maxEntries: 2, uploads: 2 });
  });

  test('a new admin.token guards the admin API at once', async () => {
    const m = await start();
    const token = 'a-reloaded-admin-token';
    await m.write({ admin: { token } });
    expect((await m.reload()).status).toBe(200);
    expect((await m.admin({ path: '/status' })).status).toBe(401);
    expect((await m.admin({ path: '/status', headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  });
});

describe('a reload names what waits for a restart', () => {
  test('a changed listen.port answers ok with restartRequired, stays listed, and the proxy keeps its old port', async () => {
    const m = await start();
    await m.write({ listen: { port: 1 } });
    const reply = await m.reload();
    expect(reply.status).toBe(200);
    expect(json(reply)).toEqual({ ok: true, version: 2, restartRequired: ['listen.port'] });
    expect(log).toHaveBeenCalledWith('meridian: config reloaded (version 2); these fields change only after a restart: listen.port');
    expect((await m.status()).config).toEqual({ version: 2, restartRequired: ['listen.port'] });
    expect(await m.placement()).toBe('europe');

    // Another reload that leaves the port changed still lists it: the listener is still the one from the start.
    await m.write({ listen: { port: 1 }, headers: { routingHeaders: false } });
    expect(json(await m.reload())).toEqual({ ok: true, version: 3, restartRequired: ['listen.port'] });
    // And putting it back clears it.
    await m.write({});
    expect(json(await m.reload())).toEqual({ ok: true, version: 4, restartRequired: [] });
    expect((await m.status()).config).toEqual({ version: 4, restartRequired: [] });
  });
});

describe('a reload names what waits for a restart, admin listener too', () => {
  test('a changed admin address and handshake timeout are named, and the admin API stays where it was', async () => {
    const m = await start();
    await m.write({ admin: { host: '127.0.0.1', port: 1 }, timeouts: { handshake: '3s' } });
    const reply = await m.reload();
    expect(json(reply)).toEqual({ ok: true, version: 2, restartRequired: ['timeouts.handshake', 'admin.port'] });
    expect(log).toHaveBeenCalledWith('meridian: config reloaded (version 2); these fields change only after a restart: timeouts.handshake, admin.port');
    // Answered on the port it started with.
    expect((await m.status()).config).toEqual({ version: 2, restartRequired: ['timeouts.handshake', 'admin.port'] });
  });
});

describe('a reload that cannot be built whole changes nothing', () => {
  test.each([
    ['an empty file', '', 'the config file is empty'],
    ['a file of comments only', '# nothing yet\n', 'the config file is empty'],
    ['a list at the top', '- listen\n- admin\n', 'must be a mapping of sections, got a list'],
    ['a scalar at the top', '8080\n', 'must be a mapping of sections, got a number'],
  ])('%s answers 400 with a problem at the root, counted as a failed reload', async (_name, text, message) => {
    const m = await start();
    await m.write(text);
    const reply = await m.reload();
    expect(reply.status).toBe(400);
    expect(json(reply)).toEqual({ ok: false, problems: [{ path: '', message }] });
    expect(log).toHaveBeenCalledWith(`meridian: config reload rejected, the old config keeps serving:\n  (root): ${message}`);
    expect(await failedReloads(m)).toBe(1);
    expect((await m.status()).config.version).toBe(1);
    expect(await m.placement()).toBe('europe');
    // `meridian check` and startup read the file the same way.
    const error = await loadConfigFile(join(dir, `meridian-${files}.json`), {}).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain(`(root): ${message}`);
  });

  test('a corrupt or missing new geo database is named by file and field, and the old placement keeps serving', async () => {
    const m = await start();
    const corrupt = join(dir, 'corrupt.mmdb');
    await writeFile(corrupt, Buffer.alloc(4096, 7));
    const missing = join(dir, 'missing.mmdb');
    await m.write({ geo: { databases: [inAmerica, corrupt, missing] } });
    const reply = await m.reload();
    expect(reply.status).toBe(400);
    const { problems } = json(reply) as { problems: { path: string; message: string }[] };
    expect(problems.map((p) => p.path)).toEqual(['geo.databases[1]', 'geo.databases[2]']);
    expect(problems[0].message).toContain(corrupt);
    expect(problems[1].message).toContain(missing);
    expect(await m.placement()).toBe('europe');
    expect((await m.status()).geo.databases.map((db) => db.path)).toEqual([inEurope]);
    expect(await failedReloads(m)).toBe(1);
  });

  test('an unreadable new geo database rejects the whole reload: no other field of it applies', async () => {
    const m = await start();
    // A directory: opening it as a file fails even for root, for whom file modes are no obstacle.
    const unreadable = join(dir, 'unreadable.mmdb');
    await mkdir(unreadable, { recursive: true });
    await m.write({
      geo: { databases: [unreadable], cacheSize: 2 },
      listen: { port: 1 },
      headers: { routingHeaders: false },
      routing: { uploadPinning: { maxEntries: 2 } },
      timeouts: { requestHeaders: '1s' },
    });
    const reply = await m.reload();
    expect(reply.status).toBe(400);
    expect(json(reply)).toEqual({ ok: false, problems: [{ path: 'geo.databases[0]', message: expect.stringContaining(unreadable) }] });

    const status = await m.status();
    expect(status.config).toEqual({ version: 1, restartRequired: [] });
    expect(status.geo.cache.max).toBe(100_000);
    expect(status.uploadPins.maxEntries).toBe(100_000);
    const served = await send(m.proxy, { headers: { 'x-forwarded-for': CLIENT_IP } });
    expect(served.headers['x-meridian-region']).toBe('europe');
    expect(await failedReloads(m)).toBe(1);
  });

  test('an exception while building the new snapshot is a rejected reload, and the next good one applies', async () => {
    const m = await start();
    // The boot health probes have landed, so the only snapshot built from here on is the reload's.
    await until(async () => (await m.status()).topology.regions.every((r) => r.zones.every((z) => z.endpoints.every((e) => e.lastProbe !== null))), 'the boot probes');
    vi.spyOn(UpstreamPools.prototype, 'sync').mockImplementationOnce(() => {
      throw new Error('injected failure');
    });
    await m.write({ headers: { routingHeaders: false }, geo: { databases: [inAmerica] } });
    const reply = await m.reload();
    expect(reply.status).toBe(400);
    expect(json(reply)).toEqual({ ok: false, problems: [{ path: '', message: expect.stringContaining('injected failure') }] });
    expect(log).toHaveBeenCalledWith(expect.stringContaining('config reload rejected, the old config keeps serving'));

    expect((await m.status()).config.version).toBe(1);
    const served = await send(m.proxy, { headers: { 'x-forwarded-for': CLIENT_IP } });
    expect(served.body.toString()).toBe('europe');
    expect(served.headers['x-meridian-region']).toBe('europe');
    expect(await failedReloads(m)).toBe(1);

    expect(json(await m.reload())).toEqual({ ok: true, version: 2, restartRequired: [] });
    const after = await send(m.proxy, { headers: { 'x-forwarded-for': CLIENT_IP } });
    expect(after.body.toString()).toBe('america');
    expect(after.headers['x-meridian-region']).toBeUndefined();
  });

  test('an exception after the pools moved to the new endpoint list is rejected, and the old endpoints keep serving', async () => {
    const m = await start();
    await until(async () => (await m.status()).topology.regions.every((r) => r.zones.every((z) => z.endpoints.every((e) => e.lastProbe !== null))), 'the boot probes');
    const replacement = await startUpstream((_req, res) => res.end('replacement'));
    try {
      // The registry takes the new list (retiring the old set, whose idle pools then close), and only then does the build fail.
      const sync = UpstreamPools.prototype.sync;
      vi.spyOn(UpstreamPools.prototype, 'sync').mockImplementationOnce(function (this: UpstreamPools, ...args: Parameters<typeof sync>) {
        sync.apply(this, args);
        throw new Error('injected failure after the pools moved');
      });
      const europe = { location: [59.33, 18.07], zones: { 'az-1': { endpoints: [replacement.origin] } } };
      await m.write({ regions: { europe } });
      const reply = await m.reload();
      expect(reply.status).toBe(400);
      expect(json(reply)).toEqual({ ok: false, problems: [{ path: '', message: expect.stringContaining('injected failure after the pools moved') }] });
      // The old config serves on its own endpoint, whose pool the failed build had let go of.
      for (let i = 0; i < 3; i++) {
        const served = await send(m.proxy, { headers: { 'x-forwarded-for': CLIENT_IP } });
        expect(served.body.toString()).toBe('europe');
      }
      expect(replacement.requests).toBe(0);
    } finally {
      await replacement.close();
    }
  });
});
