// Redirect mode end to end: Meridian in Frankfurt, a second region in Virginia, each with a public host, and clients
// placed by a fixture geo database through a trusted loopback proxy. A client whose home is Virginia gets a 307/308 to
// Virginia's public host for the requests a rule names; everything else (other requests, WebSockets, fenced clients,
// a home region that is down) is proxied as before.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { EDGE_STAT } from '../src/observe/edge-stats.ts';
import { json, metricValue, parseRawResponse, rawExchange, send, startProxy, startUpstream, until, type Overrides, type RunningProxy, type Upstream } from './support/harness.ts';
import { cityFixture, cityRecord as city } from './support/mmdb-writer.ts';
import { startWorld, type Layout, type World } from './support/zones.ts';
import { makeCa, makeCertificate } from './support/certs.ts';
import { H2_SITE, h2Connect, h2Request } from './support/h2-client.ts';

const HOME = 'us-east';
const LAYOUT: Layout = {
  'eu-central': { location: [50.11, 8.68], publicHost: 'eu.meridian.test', zones: { 'az-1': ['eu-1'] } },
  [HOME]: { location: [39.04, -77.49], publicHost: 'us.meridian.test:8443', zones: { 'az-1': ['us-1'] } },
};
const SELF = { region: 'eu-central', zone: 'az-1' };
/** Quick checks, so a test sees an endpoint go down or come back within a second. */
const HEALTH = { interval: '200ms', unhealthyInterval: '100ms', timeout: '150ms', rise: 2, fall: 2 };
const REDIRECTS = [
  { name: 'downloads', pathPrefix: '/v1/storage/', methods: ['GET', 'HEAD'] },
  { name: 'exports', pathPrefix: '/v1/exports/', status: 308 },
  { name: 'realtime', pathPrefix: '/v1/realtime' },
];
/** Placed near Virginia (home us-east) and near Frankfurt (home eu-central) by the fixture database. */
const NEW_YORK_IP = '66.108.1.2';
const STOCKHOLM_IP = '89.160.20.112';
/** Odd on purpose: encoded bytes, a repeated key, empty names and values, a semicolon. None of it may change. */
const TARGET = '/v1/storage/buckets/b1/files/f1/download?project=demo&a=%2Fx%20y&a=2&empty=&=odd;k=v&Z=%7e';

const database = cityFixture([
  { network: '89.160.20.0/24', data: city('SE', 'EU', 59.33, 18.07) },
  { network: '66.108.0.0/16', data: city('US', 'NA', 40.71, -74.01) },
]);

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function world(routing: Record<string, unknown> = {}): Promise<World> {
  const started = await startWorld(LAYOUT, SELF, {
    geo: { databases: [database()], trustedProxies: ['127.0.0.0/8'] },
    health: HEALTH,
    routing: { redirects: REDIRECTS, ...routing },
  });
  cleanup.push(() => started.close());
  return started;
}

/** Redirects counted toward the home region, in the process's edge stats. */
function redirectsTo(w: World, region: string): number {
  const index = w.meridian.runtime.plane().config.topology.regions.findIndex((r) => r.name === region);
  expect(index).toBeGreaterThanOrEqual(0);
  return w.meridian.runtime.edgeStats.total(EDGE_STAT.redirected + index);
}

/** Requests, not health checks, that reached any backend. */
const upstreamRequests = (w: World): number => Object.values(w.backends).reduce((sum, b) => sum + b.requests, 0);

const fromNewYork = (headers: Record<string, string> = {}) => ({ 'x-forwarded-for': NEW_YORK_IP, ...headers });

describe('a client whose home is the remote region', () => {
  test('a matching GET or HEAD gets 307 to the home region’s public host with the path and query as sent; no upstream sees it', async () => {
    const w = await world();
    const origin = 'https://console.example.test';
    const reply = await send(w.port, { path: TARGET, headers: fromNewYork({ origin, 'x-request-id': 'redirect-1' }) });
    expect(reply.status).toBe(307);
    expect(reply.headers.location).toBe(`http://us.meridian.test:8443${TARGET}`);
    expect(reply.headers['content-length']).toBe('0');
    expect(reply.headers['cache-control']).toBe('no-store');
    expect(reply.headers['x-request-id']).toBe('redirect-1');
    expect(reply.headers['access-control-allow-origin']).toBe(origin);
    expect(reply.headers['access-control-allow-credentials']).toBe('true');
    expect(reply.headers['vary']).toBe('Origin');
    expect(reply.body.length).toBe(0);
    expect(redirectsTo(w, HOME)).toBe(1);

    // A trusted proxy in front that took the client's TLS says so: the Location keeps https.
    const secure = await send(w.port, { path: TARGET, headers: fromNewYork({ 'x-forwarded-proto': 'https' }) });
    expect(secure.status).toBe(307);
    expect(secure.headers.location).toBe(`https://us.meridian.test:8443${TARGET}`);
    expect(secure.headers['access-control-allow-origin']).toBeUndefined();
    expect(redirectsTo(w, HOME)).toBe(2);

    const head = await send(w.port, { method: 'HEAD', path: '/v1/storage/buckets/b1/files/f1/view', headers: fromNewYork() });
    expect(head.status).toBe(307);
    expect(head.headers.location).toBe('http://us.meridian.test:8443/v1/storage/buckets/b1/files/f1/view');
    expect(redirectsTo(w, HOME)).toBe(3);
    expect(redirectsTo(w, 'eu-central')).toBe(0);

    expect(upstreamRequests(w)).toBe(0);
    // Answers Meridian made itself, by no region's endpoint: counted as 3xx under none/none.
    const sample = (method: string) => `meridian_requests_total{region="none",zone="none",method="${method}",code="3xx"}`;
    await until(async () => (await metricValue(w.adminPort, sample('GET'))) === 2, 'two GET redirects on /metrics');
    expect(await metricValue(w.adminPort, sample('HEAD'))).toBe(1);
    expect(await metricValue(w.adminPort, `meridian_requests_total{region="${HOME}",zone="az-1",method="GET",code="2xx"}`)).toBeNaN();
  });

  test('a rule’s 308 is answered, and a body still arriving closes the connection after the answer', async () => {
    const w = await world();
    const head = [`POST /v1/exports/run?format=csv HTTP/1.1`, 'Host: api.example.test', `X-Forwarded-For: ${NEW_YORK_IP}`, 'Content-Length: 100000', '', ''].join('\r\n');
    // Ten bytes of a hundred thousand: the rest never comes, and only the server's close ends the exchange.
    const raw = await rawExchange(w.port, head + '0123456789');
    const answer = parseRawResponse(raw);
    expect(answer.status).toBe(308);
    expect(answer.headers.location).toBe('http://us.meridian.test:8443/v1/exports/run?format=csv');
    expect(answer.headers.connection).toBe('close');
    expect(upstreamRequests(w)).toBe(0);
    expect(redirectsTo(w, HOME)).toBe(1);
  });

  test('with two worker threads, each redirect is counted once in the process total', async () => {
    const w = await startWorld(LAYOUT, SELF, { geo: { databases: [database()], trustedProxies: ['127.0.0.0/8'] }, routing: { redirects: REDIRECTS } }, 2);
    cleanup.push(() => w.close());
    for (let i = 0; i < 6; i++) expect((await send(w.port, { path: TARGET, headers: fromNewYork() })).status).toBe(307);
    expect(redirectsTo(w, HOME)).toBe(6);
  });

  test('requests no rule matches are proxied to the home region', async () => {
    const w = await world();
    const post = await send(w.port, { method: 'POST', path: TARGET, headers: fromNewYork(), body: 'x' });
    expect([post.status, post.body.toString()]).toEqual([200, 'us-1']);
    const other = await send(w.port, { path: '/v1/databases/main/collections?limit=5', headers: fromNewYork() });
    expect([other.status, other.body.toString()]).toEqual([200, 'us-1']);
    expect(redirectsTo(w, HOME)).toBe(0);
  });

  test('the home region down: the request is proxied to the next region, and redirected again once the home is back', async () => {
    const w = await world();
    const home = w.backends['us-1'];
    home.probeAnswer = 'fail';
    await until(() => !w.usable('us-1'), 'the checks to take us-1 down');
    const reply = await send(w.port, { path: TARGET, headers: fromNewYork() });
    expect([reply.status, reply.body.toString()]).toEqual([200, 'eu-1']);
    expect(redirectsTo(w, HOME)).toBe(0);

    home.probeAnswer = 'pass';
    await until(() => w.usable('us-1'), 'the checks to bring us-1 back');
    expect((await send(w.port, { path: TARGET, headers: fromNewYork() })).status).toBe(307);
    expect(redirectsTo(w, HOME)).toBe(1);
    expect(home.requests).toBe(0);
  });
});

describe('requests that are never redirected', () => {
  test('a client whose home is this region, or whose location is unknown, is proxied here', async () => {
    const w = await world();
    const stockholm = await send(w.port, { path: TARGET, headers: { 'x-forwarded-for': STOCKHOLM_IP } });
    expect([stockholm.status, stockholm.body.toString()]).toEqual([200, 'eu-1']);
    const unknown = await send(w.port, { path: TARGET });
    expect([unknown.status, unknown.body.toString()]).toEqual([200, 'eu-1']);
    expect(redirectsTo(w, HOME) + redirectsTo(w, 'eu-central')).toBe(0);
  });

  test('a client that already asked for the home region’s public host is proxied there, never sent to the same name again', async () => {
    const w = await world();
    const reply = await send(w.port, { path: TARGET, headers: fromNewYork({ host: 'US.meridian.test:8443' }) });
    expect([reply.status, reply.body.toString()]).toEqual([200, 'us-1']);
    expect(redirectsTo(w, HOME)).toBe(0);
  });

  test('a WebSocket upgrade the realtime rule matches is tunnelled to the home region, while a plain GET there is redirected', async () => {
    const w = await world();
    const plain = await send(w.port, { path: '/v1/realtime?project=demo', headers: fromNewYork() });
    expect(plain.status).toBe(307);
    expect(redirectsTo(w, HOME)).toBe(1);

    const ws = new WebSocket(`ws://127.0.0.1:${w.port}/v1/realtime?project=demo`, { headers: fromNewYork() });
    cleanup.push(async () => ws.terminate());
    const first = await new Promise<string>((resolve, reject) => {
      ws.once('message', (data) => resolve(String(data)));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`got ${res.statusCode} ${res.headers.location ?? ''} instead of 101`)));
      ws.once('error', reject);
    });
    expect(first).toBe('us-1');
    expect(w.backends['us-1'].requests).toBe(1);
    expect(redirectsTo(w, HOME)).toBe(1);
  });

  test('a strict fence keeping US clients in this region: served here, then its 503 when this region is down, never sent to the nearer one', async () => {
    const w = await world({ fences: [{ name: 'eu-processing', match: { country: ['US'] }, regions: ['eu-central'], mode: 'strict' }] });
    const served = await send(w.port, { path: TARGET, headers: fromNewYork() });
    expect([served.status, served.body.toString()]).toEqual([200, 'eu-1']);

    w.backends['eu-1'].probeAnswer = 'fail';
    await until(() => !w.usable('eu-1'), 'the checks to take eu-1 down');
    const refused = await send(w.port, { path: TARGET, headers: fromNewYork() });
    expect(refused.status).toBe(503);
    expect(refused.headers.location).toBeUndefined();
    expect(json(refused)).toMatchObject({ type: 'meridian_fence_exhausted' });
    expect(w.backends['us-1'].requests).toBe(0);
    expect(redirectsTo(w, HOME)).toBe(0);
  });

  test('a strict fence that allows the remote region lets the redirect through: it stays inside the fence', async () => {
    const w = await world({ fences: [{ name: 'atlantic', match: { country: ['US'] }, regions: [HOME, 'eu-central'], mode: 'strict' }] });
    const reply = await send(w.port, { path: TARGET, headers: fromNewYork() });
    expect([reply.status, reply.headers.location]).toEqual([307, `http://us.meridian.test:8443${TARGET}`]);
  });
});

describe('over TLS', () => {
  let tlsDir: string;
  let ca: string;
  let certificate: { cert: string; key: string };
  beforeAll(async () => {
    tlsDir = await mkdtemp(join(tmpdir(), 'meridian-redirect-tls-'));
    const authority = makeCa(tlsDir);
    ca = authority.cert;
    const leaf = makeCertificate(tlsDir, { names: [H2_SITE], ca: authority });
    certificate = { cert: leaf.certFile, key: leaf.keyFile };
  });
  afterAll(() => rm(tlsDir, { recursive: true, force: true }));

  test('a client of the HTTPS listener gets an https Location, over HTTP/1.1 and HTTP/2', async () => {
    const upstreams: Upstream[] = await Promise.all([0, 1].map(() => startUpstream((_req, res) => res.end('proxied'))));
    cleanup.push(async () => void (await Promise.all(upstreams.map((u) => u.close()))));
    const overrides: Overrides = {
      listen: [{ host: '127.0.0.1', port: 0 }, { protocol: 'https', host: '127.0.0.1', port: 0 }],
      tls: { certificates: [certificate] },
      geo: { databases: [database()], trustedProxies: ['127.0.0.0/8'] },
      regions: { 'fallback-1': { location: [39.04, -77.49], publicHost: 'us.meridian.test', zones: { 'az-1': { endpoints: [upstreams[1].origin] } } } },
      routing: { redirects: REDIRECTS },
    };
    const proxy: RunningProxy = await startProxy([upstreams[0].origin, upstreams[1].origin], overrides);
    cleanup.push(() => proxy.shutdown());

    const h1 = await new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
      const req = httpsGet({ host: '127.0.0.1', port: proxy.ports.https, path: TARGET, servername: H2_SITE, ca, headers: fromNewYork(), agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location }));
      });
      req.on('error', reject);
    });
    expect(h1).toEqual({ status: 307, location: `https://us.meridian.test${TARGET}` });

    const client = await h2Connect(proxy.ports.https, ca);
    cleanup.push(async () => void client.session.close());
    const h2 = await h2Request(client.session, { path: TARGET, headers: fromNewYork() });
    expect([h2.status, h2.headers.location, h2.body.length]).toEqual([307, `https://us.meridian.test${TARGET}`, 0]);
    expect(upstreams.map((u) => u.requests)).toEqual([0, 0]);
  });
});
