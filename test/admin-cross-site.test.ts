// Security regression: an admin plane without a token was open to the operator's browser. A DNS-rebinding page
// (its name now resolving to the admin address) could read /status and /metrics, and any site could POST /reload.
// Raw node:http requests with Host, Origin and Sec-Fetch-Site set as a browser would set them.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { loadConfigFile } from '../src/config/load.ts';
import { startMeridian, type Meridian } from '../src/main.ts';
import type { StatusReport } from '../src/admin/status.ts';
import { json, rawConfig, send, startUpstream, type Overrides, type Reply, type Upstream } from './support/harness.ts';

const TOKEN = 'correct-horse-battery-staple';
const EVIL = 'https://evil.example';

let dir: string;
let upstream: Upstream;
const running: Meridian[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-cross-site-'));
  upstream = await startUpstream((_req, res) => res.end('upstream'));
});

afterAll(async () => {
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((m) => m.shutdown()));
});

interface Admin {
  readonly meridian: Meridian;
  readonly file: string;
  readonly port: number;
  /** The admin listener's own address, as a browser that opened it would write Host. */
  readonly self: string;
  request(method: string, path: string, headers: Record<string, string>): Promise<Reply>;
  /** The config version, read the way an operator's script would (own Host, no browser headers). */
  configVersion(): Promise<number>;
  /** `meridian_config_reloads_total`, all results summed. */
  reloads(): Promise<number>;
  rewrite(overrides: Overrides): Promise<void>;
}

let files = 0;
async function start(overrides: Overrides = {}): Promise<Admin> {
  const file = join(dir, `meridian-${++files}.json`);
  const write = (o: Overrides) => writeFile(file, JSON.stringify(rawConfig([upstream.origin], o)));
  await write(overrides);
  const meridian = await startMeridian(await loadConfigFile(file, {}), { configPath: file });
  running.push(meridian);
  const port = meridian.adminAddress.port;
  const self = `127.0.0.1:${port}`;
  const auth: Record<string, string> = (overrides.admin as Record<string, unknown> | undefined)?.token === undefined ? {} : { authorization: `Bearer ${TOKEN}` };
  const request = (method: string, path: string, headers: Record<string, string>) => send(port, { method, path, headers: { ...auth, ...headers } });
  return {
    meridian,
    file,
    port,
    self,
    request,
    configVersion: async () => (json(await request('GET', '/status', { host: self })) as unknown as StatusReport).version.config,
    reloads: async () => {
      const text = (await request('GET', '/metrics', { host: self })).body.toString();
      return [...text.matchAll(/^meridian_config_reloads_total\{[^}]*\} (\d+)$/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
    },
    rewrite: write,
  };
}

function expectMisdirected(reply: Reply, host: string): void {
  expect(reply.status).toBe(421);
  const body = json(reply);
  expect(body).toMatchObject({ code: 421, type: 'meridian_admin_misdirected' });
  expect(body.message).toContain(`Host ${JSON.stringify(host)}`);
  expect(body.message).toContain('admin.allowedHosts');
}

function expectCrossSite(reply: Reply): void {
  expect(reply.status).toBe(403);
  expect(json(reply)).toMatchObject({ code: 403, type: 'meridian_admin_cross_site' });
}

describe.each([
  ['without a token', {}],
  ['with a token', { admin: { token: TOKEN } }],
] as const)('the admin plane %s', (_label, overrides: Overrides) => {
  test('a DNS-rebinding Host cannot read /status, /metrics, /route or the dashboard', async () => {
    const m = await start(overrides);
    for (const host of [`evil.example:${m.port}`, 'evil.example', `127.0.0.1.nip.io:${m.port}`]) {
      for (const path of ['/status', '/metrics', '/route?ip=81.2.69.142', '/']) {
        const reply = await m.request('GET', path, { host });
        expectMisdirected(reply, host);
        expect(reply.body.toString()).not.toContain('"topology"');
      }
    }
  });

  test('its own address and localhost at its port can read; another port of the same host cannot', async () => {
    const m = await start(overrides);
    for (const host of [m.self, `localhost:${m.port}`, `LOCALHOST:${m.port}`, `[::1]:${m.port}`]) {
      const reply = await m.request('GET', '/status', { host });
      expect(reply.status, host).toBe(200);
      expect(json(reply)).toHaveProperty('topology');
      expect((await m.request('GET', '/metrics', { host })).status, host).toBe(200);
    }
    const proxyPort = m.meridian.proxyAddress.port;
    expectMisdirected(await m.request('GET', '/status', { host: `127.0.0.1:${proxyPort}` }), `127.0.0.1:${proxyPort}`);
  });

  test('/healthz and /readyz answer GeoDNS checkers whatever Host they send', async () => {
    const m = await start(overrides);
    for (const host of ['evil.example', `checker.dns-provider.example:${m.port}`, '203.0.113.9']) {
      expect((await m.request('GET', '/readyz', { host })).status, host).toBe(200);
      expect((await m.request('GET', '/healthz', { host })).status, host).toBe(200);
    }
  });

  test('POST /reload from another site is refused and reloads nothing', async () => {
    const m = await start(overrides);
    const version = await m.configVersion();
    const reloads = await m.reloads();
    // The file now allows a new name: had any of these reloaded, that name would start to work.
    await m.rewrite({ ...overrides, admin: { ...overrides.admin, allowedHosts: ['meridian.internal'] } });
    const attempts: Record<string, string>[] = [
      { origin: EVIL },
      { origin: EVIL, 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
      { origin: 'null' },
      // A page served through the data plane on the same host is same-site, but not this origin.
      { origin: `http://127.0.0.1:${m.meridian.proxyAddress.port}`, 'sec-fetch-site': 'same-site' },
      { origin: `http://127.0.0.1:${m.meridian.proxyAddress.port}` },
    ];
    for (const headers of attempts) {
      const reply = await m.request('POST', '/reload', { host: m.self, 'content-type': 'text/plain', ...headers });
      expectCrossSite(reply);
    }
    // A form on a rebinding page posts same-origin to its own name: the Host check stops it first.
    expectMisdirected(await m.request('POST', '/reload', { host: `evil.example:${m.port}`, origin: `http://evil.example:${m.port}`, 'sec-fetch-site': 'same-origin' }), `evil.example:${m.port}`);
    expect(await m.configVersion()).toBe(version);
    expect(await m.reloads()).toBe(reloads);
    expectMisdirected(await m.request('GET', '/status', { host: `meridian.internal:${m.port}` }), `meridian.internal:${m.port}`);
  });

  test('a same-origin POST /reload from the admin page, or one with no browser headers, reloads', async () => {
    const m = await start(overrides);
    const version = await m.configVersion();
    const sameOrigin = await m.request('POST', '/reload', { host: m.self, origin: `http://${m.self}`, 'sec-fetch-site': 'same-origin' });
    expect(sameOrigin.status).toBe(200);
    expect(await m.configVersion()).toBe(version + 1);
    const viaLocalhost = await m.request('POST', '/reload', { host: `localhost:${m.port}`, origin: `http://localhost:${m.port}`, 'sec-fetch-site': 'same-origin' });
    expect(viaLocalhost.status).toBe(200);
    const curl = await m.request('POST', '/reload', { host: m.self });
    expect(curl.status).toBe(200);
    expect(await m.configVersion()).toBe(version + 3);
  });
});

describe('admin.allowedHosts', () => {
  test('names it lists can read and post same-origin; a reload that adds one applies at once', async () => {
    const m = await start({ admin: { allowedHosts: ['meridian.internal', '*.admin.example', 'tunnel.example:19090'] } });
    for (const host of [`meridian.internal:${m.port}`, 'meridian.internal', `eu-1.admin.example:${m.port}`, 'tunnel.example:19090']) {
      expect((await m.request('GET', '/status', { host })).status, host).toBe(200);
    }
    for (const host of [`admin.example:${m.port}`, `tunnel.example:${m.port}`, `meridian.internal.evil.example:${m.port}`]) {
      expectMisdirected(await m.request('GET', '/status', { host }), host);
    }
    // Behind a TLS proxy at https://meridian.internal, the browser's Origin has no port.
    const behindProxy = await m.request('POST', '/reload', { host: m.self, origin: 'https://meridian.internal', 'sec-fetch-site': 'same-origin' });
    expect(behindProxy.status).toBe(200);

    await m.rewrite({ admin: { allowedHosts: ['ops.example'] } });
    expectMisdirected(await m.request('GET', '/status', { host: `ops.example:${m.port}` }), `ops.example:${m.port}`);
    expect((await m.request('POST', '/reload', { host: m.self })).status).toBe(200);
    expect((await m.request('GET', '/status', { host: `ops.example:${m.port}` })).status).toBe(200);
    expectMisdirected(await m.request('GET', '/status', { host: `meridian.internal:${m.port}` }), `meridian.internal:${m.port}`);
  });
});

/** This machine's first non-loopback IPv4 address: the interface a wildcard-bound admin plane is reached on from outside. */
const external = Object.values(networkInterfaces())
  .flat()
  .find((i) => i !== undefined && i.family === 'IPv4' && !i.internal)?.address;

/** One GET to `address:port` with the Host given. */
function getFrom(address: string, port: number, path: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: address, port, path, headers: { host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

describe.skipIf(external === undefined)('bound to a wildcard or to one outside address', () => {
  test.each(['0.0.0.0', '::'])('bound to %s and reached on an outside interface, it answers to that address and to loopback names, and to nothing else', async (bind) => {
    const m = await start({ admin: { host: bind, port: 0 } });
    const address = external!;
    for (const host of [`${address}:${m.port}`, `localhost:${m.port}`, `127.0.0.1:${m.port}`]) {
      expect(await getFrom(address, m.port, '/status', host), host).toBe(200);
    }
    for (const host of [`evil.example:${m.port}`, `192.0.2.254:${m.port}`, `${address}:${m.port + 1}`]) {
      expect(await getFrom(address, m.port, '/status', host), host).toBe(421);
    }
  });

  test('bound to one outside address, loopback names are not its own', async () => {
    const address = external!;
    const m = await start({ admin: { host: address, port: 0 } });
    expect(await getFrom(address, m.port, '/status', `${address}:${m.port}`)).toBe(200);
    for (const host of [`localhost:${m.port}`, `127.0.0.1:${m.port}`, `evil.example:${m.port}`]) {
      expect(await getFrom(address, m.port, '/status', host), host).toBe(421);
    }
  });
});
