// Observers are handed plain records, not the live exchange: through a real Meridian, what a subscriber reads for a
// served, a failed-over, an abandoned and a Meridian-answered request, for a failover and for a tunnel. The data
// plane reuses one record of each kind, so a subscriber copies what it keeps.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { once } from 'node:events';
import { request, type ServerResponse } from 'node:http';
import diagnostics from 'node:diagnostics_channel';
import { WebSocket } from 'ws';
import { exchangeEnd, exchangeFailover, tunnelClose, tunnelOpen } from '../src/proxy/events.ts';
import { METHOD_CLASSES, type ExchangeRecord, type FailoverRecord, type TunnelRecord } from '../src/proxy/record.ts';
import { deadPort, send, startProxy, startUpstream, until, type RunningProxy, type Upstream } from './support/harness.ts';
import { startWebSocketUpstream } from './support/websocket-upstream.ts';

const LONDON = '81.2.69.142';
/** Client addresses from loopback are taken from X-Forwarded-For, so LONDON is located. */
const TRUST_LOOPBACK = { geo: { trustedProxies: ['127.0.0.1/32'] } };

const ends: ExchangeRecord[] = [];
const failovers: FailoverRecord[] = [];
const tunnels: (TunnelRecord & { readonly event: 'open' | 'close' })[] = [];
/** The messages themselves, not copies: the data plane's reused objects. */
const messages = new Set<unknown>();

const subscriptions: [string, (message: unknown) => void][] = [
  [exchangeEnd.name as string, (m) => void (messages.add(m), ends.push({ ...(m as ExchangeRecord) }))],
  [exchangeFailover.name as string, (m) => void (messages.add(m), failovers.push({ ...(m as FailoverRecord) }))],
  [tunnelOpen.name as string, (m) => void (messages.add(m), tunnels.push({ ...(m as TunnelRecord), event: 'open' }))],
  [tunnelClose.name as string, (m) => void (messages.add(m), tunnels.push({ ...(m as TunnelRecord), event: 'close' }))],
];
beforeAll(() => {
  for (const [name, listener] of subscriptions) diagnostics.subscribe(name, listener);
});
afterAll(() => {
  for (const [name, listener] of subscriptions) diagnostics.unsubscribe(name, listener);
});

let proxy: RunningProxy | undefined;
let closers: (() => Promise<void>)[] = [];
const held: ServerResponse[] = [];
afterEach(async () => {
  for (const res of held.splice(0)) res.destroy();
  await proxy?.shutdown();
  proxy = undefined;
  await Promise.all(closers.splice(0).map((close) => close()));
  ends.length = 0;
  failovers.length = 0;
  tunnels.length = 0;
  messages.clear();
});

/** Answers `hello` once it has read the body, or 503 when `busy`; holds `/hang` unanswered. */
async function upstream(busy = false): Promise<Upstream> {
  const started = await startUpstream((req, res) => {
    if (req.url === '/hang') {
      held.push(res);
      return;
    }
    req.resume();
    req.on('end', () => (busy ? res.writeHead(503).end('busy') : res.end('hello')));
  });
  closers.push(() => started.close());
  return started;
}

async function meridian(origins: string[]): Promise<RunningProxy> {
  proxy = await startProxy(origins, TRUST_LOOPBACK);
  return proxy;
}

const dead = async (): Promise<string> => `http://127.0.0.1:${await deadPort()}`;

/** The record of the one exchange a test made. */
async function onlyEnd(): Promise<ExchangeRecord> {
  await until(() => ends.length === 1, 'the exchange record');
  return ends[0];
}

describe('exchange records', () => {
  test('served: what the client got, from which endpoint, both body sizes, the timings and where the client is', async () => {
    const up = await upstream();
    const { port } = await meridian([up.origin]);
    const before = Date.now();
    const reply = await send(port, { method: 'POST', path: '/v1/storage/files?token=secret', headers: { 'x-request-id': 'rec-1', 'x-forwarded-for': LONDON }, body: 'chunk!' });
    expect(reply.status).toBe(200);
    const record = await onlyEnd();
    expect(record).toMatchObject({
      requestId: 'rec-1',
      method: 'POST',
      host: `127.0.0.1:${port}`,
      path: '/v1/storage/files',
      peerIp: '127.0.0.1',
      clientIp: LONDON,
      country: 'GB',
      continent: 'EU',
      status: 200,
      completed: true,
      bytesIn: 6,
      bytesOut: 5,
      attempts: 1,
      retryReason: null,
      failedEndpoint: null,
      errorCode: null,
      misrouteNearest: null,
    });
    expect(METHOD_CLASSES[record.methodClass]).toBe('POST');
    expect(record.endpoint).toMatchObject({ origin: up.origin, region: 'local', zone: 'az-1' });
    // The endpoint is the snapshot's own, so observers can count by its index in the record's topology.
    expect(record.topology.endpoints[record.endpoint!.index]).toBe(record.endpoint);
    expect(record.routeReason).toMatch(/^nearest region local/);
    expect(record.upstreamHeadersMs).toBeGreaterThanOrEqual(0);
    expect(record.durationMs).toBeGreaterThanOrEqual(record.upstreamHeadersMs);
    expect(record.startedAt).toBeGreaterThanOrEqual(before - 1);
    expect(record.startedAt).toBeLessThanOrEqual(Date.now());
    // Plain data all through: no request, response, socket or exchange rides along, so it clones as it is.
    expect(structuredClone(record)).toEqual(record);
  });

  test('failed over: the endpoint that served, the one that failed before it and why, and a failover record', async () => {
    const up = await upstream();
    const refused = await dead();
    const { port } = await meridian([refused, up.origin]);
    expect((await send(port, { path: '/v1/account', headers: { 'x-request-id': 'rec-2' } })).status).toBe(200);
    const record = await onlyEnd();
    expect(record).toMatchObject({ status: 200, completed: true, attempts: 2, retryReason: 'connect_failure', bytesOut: 5 });
    expect(record.endpoint?.origin).toBe(up.origin);
    expect(record.failedEndpoint?.origin).toBe(refused);
    // Served: no Meridian error, though the first attempt failed (retryReason and failedEndpoint tell that).
    expect(record.errorCode).toBeNull();
    expect(failovers).toHaveLength(1);
    expect(failovers[0]).toMatchObject({ requestId: 'rec-2', reason: 'connect_failure' });
    expect([failovers[0].from.origin, failovers[0].to.origin]).toEqual([refused, up.origin]);
    expect(failovers[0].topology).toBe(record.topology);
  });

  test('a held PUT replayed after a 503 counts its body once, as the attempt that served passed it', async () => {
    const busy = await upstream(true);
    const up = await upstream();
    const { port } = await meridian([busy.origin, up.origin]);
    expect((await send(port, { method: 'PUT', path: '/v1/storage/files/f', headers: { 'content-length': '4' }, body: 'abcd' })).status).toBe(200);
    const record = await onlyEnd();
    expect(record).toMatchObject({ method: 'PUT', status: 200, attempts: 2, retryReason: 'upstream_5xx', bytesIn: 4 });
    expect([record.failedEndpoint?.origin, record.endpoint?.origin]).toEqual([busy.origin, up.origin]);
  });

  test('abandoned by the client: no status, not completed, the endpoint that had it, and the downstream code', async () => {
    const up = await upstream();
    const { port } = await meridian([up.origin]);
    const req = request({ host: '127.0.0.1', port, path: '/hang', agent: false });
    req.on('error', () => {});
    req.end();
    await until(() => held.length === 1, 'the upstream to hold /hang');
    req.destroy();
    const record = await onlyEnd();
    expect(record).toMatchObject({ status: 0, completed: false, bytesOut: 0, upstreamHeadersMs: -1, attempts: 1, errorCode: 'MERIDIAN_DOWNSTREAM_ABORTED' });
    expect(record.endpoint?.origin).toBe(up.origin);
  });

  test("answered by Meridian: its status, code and JSON body size, with the endpoint that failed or none", async () => {
    const refused = await dead();
    const { port } = await meridian([refused]);
    const reply = await send(port, { path: '/v1/databases' });
    expect(reply.status).toBe(502);
    const record = await onlyEnd();
    expect(record).toMatchObject({ status: 502, completed: true, bytesOut: reply.body.length, attempts: 1, errorCode: 'MERIDIAN_UPSTREAM_CONNECT' });
    expect(record.endpoint?.origin).toBe(refused);

    // Two Host headers are refused before routing: no endpoint, no attempt.
    const refusedEarly = await send(port, { headers: ['Host', 'a.example', 'Host', 'b.example'] });
    expect(refusedEarly.status).toBe(400);
    await until(() => ends.length === 2, 'the second record');
    expect(ends[1]).toMatchObject({ status: 400, completed: true, bytesOut: refusedEarly.body.length, attempts: 0, endpoint: null, errorCode: 'MERIDIAN_BAD_REQUEST', routeReason: 'not routed' });
  });

  test('every exchange is published in the same reused object', async () => {
    const up = await upstream();
    const { port } = await meridian([up.origin]);
    for (let i = 0; i < 3; i++) await send(port, { headers: { 'x-request-id': `same-${i}` } });
    await until(() => ends.length === 3, 'three records');
    expect(ends.map((record) => record.requestId)).toEqual(['same-0', 'same-1', 'same-2']);
    expect(messages.size).toBe(1);
  });
});

describe('tunnel records', () => {
  async function wsUpstream(): Promise<string> {
    const started = await startWebSocketUpstream();
    closers.push(() => started.close());
    return started.origin;
  }

  function connectClient(port: number, id: string): WebSocket {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/realtime?project=p`, { headers: { 'x-request-id': id, 'x-forwarded-for': LONDON } });
    ws.on('error', () => {});
    return ws;
  }

  test('open names the request; close names the endpoint, the client, the bytes and how it closed', async () => {
    const origin = await wsUpstream();
    const { port } = await meridian([origin]);
    const ws = connectClient(port, 'ws-1');
    await once(ws, 'open');
    ws.send('ping');
    await once(ws, 'message');
    ws.close();
    await until(() => tunnels.length === 2, 'the close record');
    const [opened, closed] = tunnels;
    expect(opened).toMatchObject({ event: 'open', requestId: 'ws-1', endpoint: null, closeReason: null, durationMs: 0, bytesIn: 0 });
    expect(closed).toMatchObject({ event: 'close', requestId: 'ws-1', clientIp: LONDON, country: 'GB', continent: 'EU', closeReason: 'closed', errorCode: null });
    expect(closed.endpoint?.origin).toBe(origin);
    expect(closed.durationMs).toBeGreaterThan(0);
    // The handshake and the frame each way.
    expect(closed.bytesIn).toBeGreaterThan(100);
    expect(closed.bytesOut).toBeGreaterThan(100);
  });

  test('a tunnel that could not open closes as refused, with the code of the answer the client got', async () => {
    const refused = await dead();
    const { port } = await meridian([refused]);
    const ws = connectClient(port, 'ws-2');
    const [, res] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number }];
    expect(res.statusCode).toBe(502);
    ws.terminate();
    await until(() => tunnels.length === 2, 'the close record');
    expect(tunnels[1]).toMatchObject({ event: 'close', requestId: 'ws-2', closeReason: 'refused', errorCode: 'MERIDIAN_UPSTREAM_CONNECT' });
    expect(tunnels[1].endpoint?.origin).toBe(refused);
  });
});
