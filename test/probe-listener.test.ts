// The probe listener is what GeoDNS checkers poll from the internet: /readyz and /healthz with any Host and no
// token, and nothing else of the admin plane (metrics, status, route, reload, dashboard).
import { afterEach, expect, test } from 'vitest';
import { request } from 'node:http';
import { compileConfig } from '../src/config/compile.ts';
import { send, startProxy, startUpstream, until, json, type RunningProxy, type Reply } from './support/harness.ts';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function meridian(overrides: Record<string, Record<string, unknown>> = {}): Promise<{ proxy: RunningProxy; probePort: number }> {
  const upstream = await startUpstream((_req, res) => res.end('ok'));
  cleanup.push(() => upstream.close());
  const proxy = await startProxy([upstream.origin], { probe: { host: '127.0.0.1', port: 0 }, admin: { token: 'a-token-of-sixteen-chars' }, ...overrides });
  let stopped = false;
  cleanup.push(async () => {
    if (!stopped) await proxy.shutdown();
  });
  const probe = proxy.meridian.probeAddress;
  expect(probe).not.toBeNull();
  return { proxy: { ...proxy, shutdown: () => ((stopped = true), proxy.shutdown()) }, probePort: probe!.port };
}

test('readiness and liveness answer any Host without a token', async () => {
  const { probePort } = await meridian();
  for (const host of ['appwrite.example.com', '203.0.113.7:8081', 'checker.invalid']) {
    const ready = await send(probePort, { path: '/readyz', headers: { host } });
    expect(ready.status).toBe(200);
    expect(json(ready)).toMatchObject({ status: 'ready' });
    expect(ready.headers['cache-control']).toBe('no-store');
    expect((await send(probePort, { path: '/healthz', headers: { host } })).status).toBe(200);
  }
});

test('nothing else of the admin plane is reachable through it', async () => {
  const { proxy, probePort } = await meridian();
  const token = { authorization: 'Bearer a-token-of-sixteen-chars' };
  for (const path of ['/metrics', '/status', '/route?ip=81.2.69.142', '/']) {
    const reply = await send(probePort, { path, headers: token });
    expect(reply.status, path).toBe(404);
    expect(json(reply)).toMatchObject({ code: 404 });
  }
  const reload = await send(probePort, { method: 'POST', path: '/reload', headers: token });
  expect(reload.status).toBe(404);
  // The same token does open them on the admin port: the probe listener is not simply broken.
  expect((await send(proxy.adminPort, { path: '/status', headers: token })).status).toBe(200);
});

test('the probe turns 503 as soon as shutdown begins and stays up through the drain', async () => {
  const { proxy, probePort } = await meridian({ shutdown: { drainDelay: '600ms' } });
  const stopped = proxy.shutdown();
  const notReady: Reply = await until(async () => {
    const reply = await send(probePort, { path: '/readyz' });
    return reply.status === 503 ? reply : null;
  }, 'the probe to report not ready');
  expect(json(notReady)).toMatchObject({ status: 'not ready' });
  // Still answering traffic while checkers learn.
  expect((await send(proxy.port)).status).toBe(200);
  await stopped;
  await expect(new Promise((resolve, reject) => request({ port: probePort, host: '127.0.0.1', path: '/readyz' }, resolve).on('error', reject).end())).rejects.toThrow(/ECONNREFUSED/);
});

test('without a probe section there is no probe listener', async () => {
  const upstream = await startUpstream((_req, res) => res.end('ok'));
  cleanup.push(() => upstream.close());
  const proxy = await startProxy([upstream.origin]);
  cleanup.push(() => proxy.shutdown());
  expect(proxy.meridian.probeAddress).toBeNull();
});

test('an empty probe section is publishable as it stands (all interfaces, 8081) while the admin port stays on loopback', () => {
  const regions = { 'us-east': { location: 'aws:us-east-1', zones: { 'az-1': { endpoints: ['http://10.2.1.10'] } } } };
  const config = compileConfig({ self: { region: 'us-east', zone: 'az-1' }, regions, probe: {} }, {}, 'test');
  expect(config.probe).toEqual({ host: '0.0.0.0', port: 8081 });
  expect(config.admin.host).toBe('127.0.0.1');
});
