// The admin plane as an operator and GeoDNS meet it on its own port: liveness and readiness, /status, /route with
// live health, validate-then-swap reload, the bearer token, and that none of it answers on the data-plane port.
import { afterEach, beforeAll, afterAll, describe, expect, test } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile } from '../src/config/load.ts';
import { startMeridian, type Meridian } from '../src/main.ts';
import { DEFAULT_GEO_DATABASES } from '../src/geo/locator.ts';
import { DBIP_CREDIT, type StatusReport } from '../src/admin/status.ts';
import { ADMIN_COOKIE } from '../src/admin/auth.ts';
import { deadPort, json, send, startUpstream, until, type Reply, type SendOptions, type Upstream } from './support/harness.ts';

const TOKEN = 'correct-horse-battery-staple';

let dir: string;
let usEast: Upstream;
let euSouth: Upstream;
const running: Meridian[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-admin-'));
  const echo = (region: string) => startUpstream((req, res) => res.end(JSON.stringify({ upstream: region, path: req.url })));
  [usEast, euSouth] = await Promise.all([echo('us-east'), echo('eu-south')]);
});

afterAll(async () => {
  await Promise.all([usEast.close(), euSouth.close()]);
  await rm(dir, { recursive: true, force: true });
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((m) => m.shutdown()));
});

/** Two regions, this instance in us-east; loopback is trusted, as in the demo. Health checks run at boot only. */
function rawConfig(overrides: Record<string, unknown> = {}, usEastOrigin = usEast.origin): Record<string, unknown> {
  return {
    self: { region: 'us-east', zone: 'az-1' },
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    geo: { trustedProxies: ['127.0.0.0/8', '::1'] },
    regions: {
      'us-east': { location: [39.04, -77.49], zones: { 'az-1': { endpoints: [usEastOrigin] } } },
      'eu-south': { location: [45.46, 9.19], zones: { 'az-1': { endpoints: [euSouth.origin] } } },
    },
    health: { interval: '1h' },
    shutdown: { drainDelay: 0 },
    ...overrides,
  };
}

interface Running {
  readonly meridian: Meridian;
  readonly file: string;
  readonly proxy: number;
  /** One request to the admin port. */
  admin(options?: SendOptions): Promise<Reply>;
}

let files = 0;
/** Writes the config to a file and starts Meridian from it, so POST /reload has something to read again. */
async function start(raw: Record<string, unknown>): Promise<Running> {
  const file = join(dir, `meridian-${++files}.json`);
  await writeFile(file, JSON.stringify(raw));
  const meridian = await startMeridian(await loadConfigFile(file, {}), { configPath: file });
  running.push(meridian);
  return { meridian, file, proxy: meridian.proxyAddress.port, admin: (options) => send(meridian.adminAddress.port, options) };
}

const status = async (m: Running, headers = {}): Promise<StatusReport> => json(await m.admin({ path: '/status', headers })) as unknown as StatusReport;

describe('liveness and readiness', () => {
  test('/healthz answers 200 and /readyz 200 while the local region is up, then 503 once shutdown begins', async () => {
    const m = await start(rawConfig({ shutdown: { drainDelay: '400ms' } }));
    const live = await m.admin({ path: '/healthz' });
    expect(live.status).toBe(200);
    expect(json(live)).toEqual({ status: 'ok' });
    const ready = await m.admin({ path: '/readyz' });
    expect(ready.status).toBe(200);
    expect(json(ready)).toMatchObject({ status: 'ready', reason: expect.stringContaining('1 of 1 endpoints healthy in us-east') });

    const stopping = m.meridian.shutdown();
    const draining = await m.admin({ path: '/readyz' });
    expect(draining.status).toBe(503);
    expect(draining.headers['content-type']).toMatch(/^application\/json/);
    expect(json(draining)).toMatchObject({ status: 'not ready', reason: expect.stringContaining('draining') });
    expect((await m.admin({ path: '/healthz' })).status).toBe(200);
    await stopping;
  });

  test('/readyz turns 503 when the local region goes down, and /status and /route show it', async () => {
    const dead = `http://127.0.0.1:${await deadPort()}`;
    const m = await start(rawConfig({ health: { interval: '50ms', unhealthyInterval: '50ms', timeout: '500ms', fall: 1 } }, dead));
    const notReady = await until(async () => {
      const reply = await m.admin({ path: '/readyz' });
      return reply.status === 503 ? reply : undefined;
    }, 'readiness to turn 503');
    expect(json(notReady)).toEqual({ status: 'not ready', reason: 'no healthy endpoint in us-east (policy local-region)' });

    const st = await status(m);
    expect(st.readiness.ok).toBe(false);
    const local = st.topology.regions.find((r) => r.name === 'us-east')!.zones[0].endpoints[0];
    expect(local).toMatchObject({ origin: dead, up: false, usable: false, lastProbe: { ok: false } });

    // The explanation uses the live health: the dead local endpoint is no candidate.
    const route = json(await m.admin({ path: '/route?ip=8.8.8.8' }));
    expect(route.candidates).toEqual([{ region: 'eu-south', zone: 'az-1', endpoint: euSouth.origin }]);
    expect(route.panic).toBe(false);
  });
});

describe('GET /status', () => {
  test('shows the topology with per-endpoint health and load, the geo database with the DB-IP credit, and traffic', async () => {
    const m = await start(rawConfig());
    await until(async () => (await status(m)).topology.regions.every((r) => r.zones.every((z) => z.endpoints.every((e) => e.lastProbe !== null))), 'the boot probes');
    const reply = await m.admin({ path: '/status' });
    expect(reply.status).toBe(200);
    expect(reply.headers['cache-control']).toBe('no-store');
    const st = json(reply) as unknown as StatusReport;

    expect(st.self).toEqual({ region: 'us-east', zone: 'az-1' });
    expect(st.version).toEqual({ meridian: expect.stringMatching(/^\d+\.\d+\.\d+/), config: 1 });
    expect(st.uptimeSeconds).toBeGreaterThanOrEqual(0);
    expect(Date.parse(st.startedAt)).toBeLessThanOrEqual(Date.now());
    expect(st.draining).toBe(false);
    expect(st.readiness).toEqual({ ok: true, reason: '1 of 1 endpoints healthy in us-east' });

    expect(st.topology.regions.map((r) => [r.name, r.lat, r.lon, r.local])).toEqual([
      ['us-east', 39.04, -77.49, true],
      ['eu-south', 45.46, 9.19, false],
    ]);
    const [east, south] = st.topology.regions;
    expect(east.zones).toEqual([{ name: 'az-1', local: true, endpoints: [expect.objectContaining({ origin: usEast.origin })] }]);
    expect(south.zones[0].local).toBe(false);
    for (const endpoint of [east.zones[0].endpoints[0], south.zones[0].endpoints[0]]) {
      expect(endpoint).toEqual({
        index: expect.any(Number),
        origin: expect.any(String),
        up: true,
        usable: true,
        ejectedUntil: null,
        timesEjected: 0,
        lastProbe: { at: expect.any(String), ok: true, detail: 'status 200' },
        rttMs: expect.any(Number),
        inflight: 0,
      });
    }

    expect(st.geo.databases.map((d) => d.path)).toEqual([...DEFAULT_GEO_DATABASES]);
    for (const db of st.geo.databases) {
      expect(db).toMatchObject({ schema: 'flat-city', bundled: true, buildDate: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
    }
    expect(st.geo.credit).toBe(DBIP_CREDIT);
    expect(st.geo.lookups).toEqual({ hit: expect.any(Number), miss: expect.any(Number), private: expect.any(Number), error: expect.any(Number) });
    expect(st.traffic).toEqual({ inflight: 0, connections: expect.any(Number), websockets: 0 });
    expect(st.summary).toBeTypeOf('object');
  });
});

describe('GET /route', () => {
  test('explains a London client: a European home, its location, regions by distance and the candidates', async () => {
    const m = await start(rawConfig());
    const reply = await m.admin({ path: '/route?ip=81.2.69.142' });
    expect(reply.status).toBe(200);
    const x = json(reply);
    expect(x).toMatchObject({ ip: '81.2.69.142', location: { country: 'GB', continent: 'EU' }, home: 'eu-south', code: 'nearest', fence: null, misrouteNearest: 'eu-south' });
    expect(x.candidates).toEqual([
      { region: 'eu-south', zone: 'az-1', endpoint: euSouth.origin },
      { region: 'us-east', zone: 'az-1', endpoint: usEast.origin },
    ]);
    expect((x.regions as { region: string }[]).map((r) => r.region)).toEqual(['eu-south', 'us-east']);
    expect(x.reason).toEqual(expect.any(String));
  });

  test('a bad or missing ip is a 400 with a JSON error', async () => {
    const m = await start(rawConfig());
    for (const path of ['/route?ip=not-an-ip', '/route?ip=300.1.1.1', '/route']) {
      const reply = await m.admin({ path });
      expect(reply.status, path).toBe(400);
      expect(json(reply)).toEqual({ message: expect.any(String), code: 400, type: 'meridian_admin_bad_request' });
    }
  });
});

describe('POST /reload', () => {
  test('a good changed file is validated and swapped in; a bad one is refused with field paths and changes nothing', async () => {
    const m = await start(rawConfig());
    const before = await send(m.proxy, { path: '/x' });
    expect(before.headers['x-meridian-region']).toBeUndefined();

    await writeFile(m.file, JSON.stringify(rawConfig({ headers: { routingHeaders: true } })));
    const good = await m.admin({ method: 'POST', path: '/reload' });
    expect(good.status).toBe(200);
    expect(json(good)).toEqual({ ok: true, version: 2, restartRequired: [] });
    const after = await send(m.proxy, { path: '/x' });
    expect(after.headers['x-meridian-region']).toBe('us-east');
    expect((await status(m)).version.config).toBe(2);

    const bad = rawConfig({ listen: { host: '127.0.0.1', port: 'eighty' } });
    (bad.regions as Record<string, { zones: Record<string, { endpoints: string[] }> }>)['eu-south'].zones['az-1'].endpoints = ['ftp://nope'];
    await writeFile(m.file, JSON.stringify(bad));
    const refused = await m.admin({ method: 'POST', path: '/reload' });
    expect(refused.status).toBe(400);
    const body = json(refused) as { ok: boolean; problems: { path: string; message: string }[] };
    expect(body.ok).toBe(false);
    expect(body.problems.map((p) => p.path).sort()).toEqual(['listen.port', 'regions.eu-south.zones.az-1.endpoints[0]']);
    for (const p of body.problems) expect(p.message).toEqual(expect.any(String));

    const still = await send(m.proxy, { path: '/x' });
    expect(still.status).toBe(200);
    expect(still.headers['x-meridian-region']).toBe('us-east');
    expect((await status(m)).version.config).toBe(2);

    const metrics = (await m.admin({ path: '/metrics' })).body.toString();
    expect(metrics).toMatch(/meridian_config_reloads_total\{result="(ok|success)"\} 1/);
    expect(metrics).toMatch(/meridian_config_reloads_total\{result="(error|failure|failed)"\} 1/);
  });

  test('is POST only', async () => {
    const m = await start(rawConfig());
    const reply = await m.admin({ path: '/reload' });
    expect(reply.status).toBe(405);
    expect(reply.headers.allow).toBe('POST');
    expect(json(reply)).toMatchObject({ code: 405, type: 'meridian_admin_method_not_allowed' });
  });
});

describe('GET /metrics and the rest', () => {
  test('/metrics is the Prometheus exposition; an unknown path is a JSON 404', async () => {
    const m = await start(rawConfig());
    const metrics = await m.admin({ path: '/metrics' });
    expect(metrics.status).toBe(200);
    expect(metrics.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(metrics.body.toString()).toContain('meridian_endpoint_up');

    const missing = await m.admin({ path: '/nope' });
    expect(missing.status).toBe(404);
    expect(json(missing)).toEqual({ message: 'no admin endpoint at GET /nope', code: 404, type: 'meridian_admin_not_found' });
  });

  test('/ is one self-contained page under a strict content security policy', async () => {
    const m = await start(rawConfig());
    const page = await m.admin({ path: '/' });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toMatch(/default-src 'none'; script-src 'sha256-[^']+'; style-src 'sha256-[^']+'; connect-src 'self'/);
    const html = page.body.toString();
    expect(html).not.toMatch(/\ssrc=|<link rel="stylesheet"|@import|url\((?!#)/); // in-document references (an SVG marker) are fine
    expect(html).not.toContain('__LAND__');
    expect(html.split('\n').length).toBeLessThan(400);
  });
});

describe('the bearer token', () => {
  test('guards every route but /healthz and /readyz, compared whole', async () => {
    const m = await start(rawConfig({ admin: { host: '127.0.0.1', port: 0, token: TOKEN } }));
    for (const path of ['/status', '/route?ip=81.2.69.142', '/metrics', '/']) {
      const none = await m.admin({ path });
      expect(none.status, path).toBe(401);
      expect(none.headers['www-authenticate']).toBe('Bearer realm="meridian-admin"');
      expect(json(none)).toEqual({ message: expect.any(String), code: 401, type: 'meridian_admin_unauthorized' });
      for (const wrong of ['wrong', `${TOKEN}x`, TOKEN.slice(0, -1), TOKEN.toUpperCase()]) {
        expect((await m.admin({ path, headers: { authorization: `Bearer ${wrong}` } })).status, `${path} with ${wrong}`).toBe(401);
      }
      expect((await m.admin({ path, headers: { authorization: `Basic ${TOKEN}` } })).status).toBe(401);
      expect((await m.admin({ path, headers: { authorization: `Bearer ${TOKEN}` } })).status, path).toBe(200);
    }
    expect((await m.admin({ method: 'POST', path: '/reload' })).status).toBe(401);
    expect((await m.admin({ method: 'POST', path: '/reload', headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    expect((await m.admin({ path: '/healthz' })).status).toBe(200);
    expect((await m.admin({ path: '/readyz' })).status).toBe(200);
  });

  test('the dashboard takes ?token= once, trades it for an HttpOnly SameSite=Strict cookie that is not the token, for GETs only', async () => {
    const m = await start(rawConfig({ admin: { host: '127.0.0.1', port: 0, token: TOKEN } }));
    expect((await m.admin({ path: '/?token=wrong' })).status).toBe(401);
    expect((await m.admin({ path: `/status?token=${TOKEN}` })).status).toBe(401);

    const exchange = await m.admin({ path: `/?token=${TOKEN}` });
    expect(exchange.status).toBe(303);
    expect(exchange.headers.location).toBe('./');
    const setCookie = exchange.headers['set-cookie']?.[0] ?? '';
    expect(setCookie).toMatch(new RegExp(`^${ADMIN_COOKIE}=`));
    expect(setCookie).toContain('HttpOnly');
    expect(setCookie).toContain('SameSite=Strict');
    expect(setCookie).not.toContain(TOKEN);
    const cookie = setCookie.split(';')[0];

    expect((await m.admin({ path: '/', headers: { cookie } })).status).toBe(200);
    expect((await m.admin({ path: '/status', headers: { cookie } })).status).toBe(200);
    expect((await m.admin({ path: '/status', headers: { cookie: `${ADMIN_COOKIE}=forged` } })).status).toBe(401);
    // A cookie rides along on cross-site form posts where SameSite is not honoured; reload wants the header.
    expect((await m.admin({ method: 'POST', path: '/reload', headers: { cookie } })).status).toBe(401);
  });
});

test('the admin routes are not reachable through the data-plane port: there they are proxied upstream', async () => {
  const m = await start(rawConfig());
  for (const path of ['/status', '/healthz', '/readyz', '/metrics', '/route?ip=81.2.69.142', '/']) {
    const reply = await send(m.proxy, { path });
    expect(reply.status, path).toBe(200);
    expect(json(reply), path).toEqual({ upstream: 'us-east', path });
  }
  const reload = await send(m.proxy, { method: 'POST', path: '/reload' });
  expect(json(reload)).toEqual({ upstream: 'us-east', path: '/reload' });
});
