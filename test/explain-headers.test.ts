// Explain headers end to end (`headers.explain`): off by default; on, every HTTP answer says where it was routed and
// why (`x-meridian-route`) and where its time went (`Server-Timing`), retries and Meridian's own answers included,
// while a WebSocket's 101 passes without them.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { send, until, type Overrides } from './support/harness.ts';
import { double, uint16, writeMmdb } from './support/mmdb-writer.ts';
import { startWorld, type Layout, type World } from './support/zones.ts';

/** This instance is eu-central; us-east is the other region, and the nearest one for a New York client. */
const LAYOUT: Layout = {
  'eu-central': { location: [50.11, 8.68], publicHost: 'eu.meridian.test', zones: { 'az-1': ['eu-1'] } },
  'us-east': { location: [39.04, -77.49], publicHost: 'us.meridian.test', zones: { 'az-1': ['us-1'] } },
};
const SELF = { region: 'eu-central', zone: 'az-1' };
const HEALTH = { interval: '200ms', unhealthyInterval: '100ms', timeout: '150ms', rise: 2, fall: 2 };
const NEW_YORK_IP = '66.108.1.2';
/** `home=…; tier=…; reason=…; retry=…` with the bounded tokens only. */
const ROUTE = /^home=([a-z0-9-]+); tier=(\d+|none); reason=([a-z-]+); retry=([01])$/;
/** RFC-shaped Server-Timing: `name;dur=<ms with one decimal>`, comma-separated. */
const TIMING = /^meridian;dur=(\d+\.\d)(?:, upstream;dur=(\d+\.\d))?$/;

let dir: string;
let database: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-explain-'));
  database = join(dir, 'GeoIP2-City-Fixture.mmdb');
  const newYork = {
    continent: { code: 'NA' },
    country: { iso_code: 'US' },
    location: { latitude: double(40.71), longitude: double(-74.01), accuracy_radius: uint16(20) },
  };
  await writeFile(database, writeMmdb([{ network: '66.108.0.0/16', data: newYork }], { databaseType: 'GeoIP2-City', ipVersion: 6 }));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const worlds: World[] = [];
const sockets: WebSocket[] = [];
afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  await Promise.all(worlds.splice(0).map((w) => w.close()));
});

async function world(overrides: Overrides = {}): Promise<World> {
  const started = await startWorld(LAYOUT, SELF, { geo: { databases: [database], trustedProxies: ['127.0.0.0/8'] }, health: HEALTH, ...overrides });
  worlds.push(started);
  return started;
}

const EXPLAIN: Overrides = { headers: { explain: true } };

/** The parts of `x-meridian-route`, after checking its shape. */
function route(headers: IncomingHttpHeaders): { home: string; tier: string; reason: string; retry: string } {
  const value = headers['x-meridian-route'];
  expect(value, 'x-meridian-route').toMatch(ROUTE);
  const [, home, tier, reason, retry] = ROUTE.exec(value as string)!;
  return { home, tier, reason, retry };
}

/** Meridian's and the upstream's milliseconds, after checking the shape; upstream is null when none answered. */
function timing(headers: IncomingHttpHeaders): { meridian: number; upstream: number | null } {
  const value = headers['server-timing'];
  expect(value, 'server-timing').toMatch(TIMING);
  const [, meridian, upstream] = TIMING.exec(value as string)!;
  return { meridian: Number(meridian), upstream: upstream === undefined ? null : Number(upstream) };
}

describe('off by default', () => {
  test('answers carry neither header', async () => {
    const w = await world();
    const reply = await send(w.port, { path: '/v1/health' });
    expect([reply.status, reply.body.toString()]).toEqual([200, 'eu-1']);
    expect(reply.headers['x-meridian-route']).toBeUndefined();
    expect(reply.headers['server-timing']).toBeUndefined();
    expect(w.meridian.runtime.plane().config.headers.explain).toBe(false);
  });
});

describe('turned on', () => {
  test('an upstream’s answer says home, tier, reason and no retry, and splits its time between Meridian and the upstream', async () => {
    const w = await world(EXPLAIN);
    // The upstream takes its time, so its share is told apart from Meridian's.
    w.backends['eu-1'].handler = (_req, res) => void setTimeout(() => res.end('slow'), 80);
    const local = await send(w.port, { path: '/v1/health' });
    expect(local.body.toString()).toBe('slow');
    expect(route(local.headers)).toEqual({ home: 'eu-central', tier: '0', reason: 'unknown-location', retry: '0' });
    const { meridian, upstream } = timing(local.headers);
    expect(upstream).toBeGreaterThanOrEqual(75);
    expect(meridian).toBeLessThan(upstream!);

    const remote = await send(w.port, { path: '/v1/health', headers: { 'x-forwarded-for': NEW_YORK_IP } });
    expect(remote.body.toString()).toBe('us-1');
    expect(route(remote.headers)).toEqual({ home: 'us-east', tier: '0', reason: 'nearest', retry: '0' });
    expect(timing(remote.headers).upstream).not.toBeNull();
  });

  test('a retried request says retry=1 and the tier that answered; once the checks agree, reason=failover without a retry', async () => {
    const w = await world(EXPLAIN);
    await w.backends['eu-1'].kill();
    // Before any check notices: the refused connect moves on to the next region.
    const retried = await send(w.port, { path: '/v1/health' });
    expect(retried.body.toString()).toBe('us-1');
    expect(route(retried.headers)).toEqual({ home: 'eu-central', tier: '1', reason: 'unknown-location', retry: '1' });
    expect(timing(retried.headers).upstream).not.toBeNull();

    await until(() => !w.usable('eu-1'), 'the checks to take eu-1 down');
    const routedAround = await send(w.port, { path: '/v1/health' });
    expect(routedAround.body.toString()).toBe('us-1');
    expect(route(routedAround.headers)).toEqual({ home: 'eu-central', tier: '0', reason: 'failover', retry: '0' });
  });

  test('Meridian’s own answers carry them too, with all the time Meridian’s: an error after retries, and a redirect', async () => {
    const w = await world({ ...EXPLAIN, routing: { redirects: [{ pathPrefix: '/v1/storage/' }] } });
    const redirect = await send(w.port, { path: '/v1/storage/files/f1/download', headers: { 'x-forwarded-for': NEW_YORK_IP } });
    expect(redirect.status).toBe(307);
    expect(route(redirect.headers)).toEqual({ home: 'us-east', tier: 'none', reason: 'nearest', retry: '0' });
    expect(timing(redirect.headers).upstream).toBeNull();

    await Promise.all([w.backends['eu-1'].kill(), w.backends['us-1'].kill()]);
    const failed = await send(w.port, { path: '/v1/health' });
    expect(failed.status).toBe(502);
    expect(route(failed.headers)).toEqual({ home: 'eu-central', tier: '1', reason: 'unknown-location', retry: '1' });
    expect(timing(failed.headers).upstream).toBeNull();
  });

  test('a WebSocket’s 101 never carries them', async () => {
    const w = await world(EXPLAIN);
    const ws = new WebSocket(`ws://127.0.0.1:${w.port}/v1/realtime?project=demo`);
    sockets.push(ws);
    const upgrade = new Promise<IncomingHttpHeaders>((resolve, reject) => {
      ws.once('upgrade', (res) => resolve(res.headers));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`got ${res.statusCode} instead of 101`)));
      ws.once('error', reject);
    });
    const message = new Promise<string>((resolve) => ws.once('message', (data) => resolve(String(data))));
    const headers = await upgrade;
    expect(await message).toBe('eu-1');
    expect(headers['x-meridian-route']).toBeUndefined();
    expect(headers['server-timing']).toBeUndefined();
    // The same world's plain requests do carry them: the WebSocket is the exception, not the config.
    expect((await send(w.port, { path: '/v1/health' })).headers['x-meridian-route']).toMatch(ROUTE);
  });
});
