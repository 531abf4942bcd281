// When upstreams fail, Meridian answers in Appwrite's JSON error shape, fails over only when nothing was
// sent, never sends a request body twice, and keeps serving everyone else while one exchange waits.
import { afterEach, describe, expect, test } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { deadPort, json, send, startProxy, startUpstream, until, type Handler, type Overrides, type Reply, type RunningProxy, type Upstream } from './support/harness.ts';
import { MERIDIAN_VERSION } from '../src/version.ts';
import { exchangeFailover } from '../src/proxy/events.ts';
import type { FailoverRecord } from '../src/proxy/record.ts';

const upstreams: Upstream[] = [];
let proxy: RunningProxy | undefined;
/** Each failover as the data plane announces it (after dispatching to the next candidate): the endpoint that failed, by origin. */
const failovers: string[] = [];
const onFailover = (message: unknown): void => {
  failovers.push((message as FailoverRecord).from.origin);
};
exchangeFailover.subscribe(onFailover);

afterEach(async () => {
  failovers.length = 0;
  await proxy?.shutdown();
  proxy = undefined;
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
});

async function upstream(handler: Handler): Promise<Upstream> {
  const started = await startUpstream(handler);
  upstreams.push(started);
  return started;
}

async function meridian(origins: string[], overrides?: Overrides): Promise<RunningProxy> {
  proxy = await startProxy(origins, overrides);
  return proxy;
}

/** Reads the whole request body, then answers with its size and hash. */
function bodyDigest(req: IncomingMessage, res: ServerResponse): void {
  const hash = createHash('sha256');
  let bytes = 0;
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    hash.update(chunk);
  });
  req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') })));
}

function expectMeridianError(reply: Reply, status: number, type: string): void {
  expect(reply.status).toBe(status);
  expect(reply.headers['content-type']).toBe('application/json');
  expect(reply.headers['cache-control']).toBe('no-store');
  const body = json(reply);
  expect(Object.keys(body).sort()).toEqual(['code', 'message', 'type', 'version']);
  expect(body).toMatchObject({ code: status, type, version: MERIDIAN_VERSION });
  expect(typeof body.message).toBe('string');
}

describe('error responses', () => {
  test('a refused upstream is a JSON 502 with CORS headers echoing the Origin', async () => {
    const { port } = await meridian([`http://127.0.0.1:${await deadPort()}`]);
    const reply = await send(port, { path: '/v1/databases', headers: { origin: 'https://console.example.com', 'x-request-id': 'req-502' } });
    expectMeridianError(reply, 502, 'meridian_upstream_unreachable');
    expect(reply.headers['access-control-allow-origin']).toBe('https://console.example.com');
    expect(reply.headers['access-control-allow-credentials']).toBe('true');
    expect(reply.headers.vary).toBe('Origin');
    expect(reply.headers['x-request-id']).toBe('req-502');
  });

  test('without an Origin there are no CORS headers', async () => {
    const { port } = await meridian([`http://127.0.0.1:${await deadPort()}`]);
    const reply = await send(port, { path: '/v1/databases' });
    expectMeridianError(reply, 502, 'meridian_upstream_unreachable');
    expect(reply.headers['access-control-allow-origin']).toBeUndefined();
  });

  test('an upstream that never answers is a JSON 504 after timeouts.response', async () => {
    const slow = await upstream(() => {});
    const { port } = await meridian([slow.origin], { timeouts: { response: '300ms' } });
    const startedAt = performance.now();
    const reply = await send(port, { path: '/v1/functions/f/executions', headers: { origin: 'https://app.example.com' } });
    expectMeridianError(reply, 504, 'meridian_upstream_timeout');
    expect(reply.headers['access-control-allow-origin']).toBe('https://app.example.com');
    expect(slow.requests).toBe(1);
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(290);
  });
});

describe('failover', () => {
  test('a POST whose first candidate refuses the connection is sent to the next one with its body intact', async () => {
    const second = await upstream(bodyDigest);
    const refused = `http://127.0.0.1:${await deadPort()}`;
    const { port } = await meridian([refused, second.origin]);
    const body = randomBytes(1024 * 1024);
    const reply = await send(port, { method: 'POST', path: '/v1/storage/buckets/b/files', headers: { 'content-type': 'application/octet-stream' }, body });
    expect(reply.status).toBe(200);
    expect(json(reply)).toEqual({ bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') });
    expect(second.requests).toBe(1);
    expect(failovers).toEqual([refused]);
  });

  test('a chunked POST whose first two candidates refuse reaches the third with its body intact', async () => {
    const third = await upstream(bodyDigest);
    const refused = [`http://127.0.0.1:${await deadPort()}`, `http://127.0.0.1:${await deadPort()}`];
    const { port } = await meridian([...refused, third.origin]);
    const body = randomBytes(256 * 1024);
    // No content-length: node:http sends it chunked.
    const reply = await send(port, { method: 'POST', path: '/v1/functions/f/executions', headers: { 'transfer-encoding': 'chunked' }, body });
    expect(reply.status).toBe(200);
    expect(json(reply)).toEqual({ bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') });
    expect(failovers).toEqual(refused);
  });

  test('an upstream that resets after taking a POST is a 502, and the POST is not sent anywhere else', async () => {
    let received = 0;
    const resetting = await upstream((req) => {
      req.on('data', (chunk: Buffer) => (received += chunk.length));
      req.on('end', () => req.socket.destroy());
    });
    const spare = await upstream(bodyDigest);
    const { port } = await meridian([resetting.origin, spare.origin]);
    const reply = await send(port, { method: 'POST', path: '/v1/account/sessions/email', headers: { 'content-type': 'application/json' }, body: '{"email":"a@b.c"}' });
    expectMeridianError(reply, 502, 'meridian_upstream_error');
    expect(resetting.requests).toBe(1);
    expect(received).toBe('{"email":"a@b.c"}'.length);
    expect(spare.requests).toBe(0);
    expect(failovers).toEqual([]);
  });
});

describe('isolation', () => {
  test('requests keep flowing while other requests wait on a slow upstream answer', async () => {
    const held: ServerResponse[] = [];
    const app = await upstream((req, res) => {
      if (req.url === '/slow') held.push(res);
      else res.end('fast');
    });
    const { port } = await meridian([app.origin]);
    const slow = Array.from({ length: 5 }, () => send(port, { path: '/slow' }));
    await until(() => held.length === 5, 'five slow requests at the upstream');

    const fast = await Promise.all(Array.from({ length: 50 }, () => send(port, { path: '/fast' })));
    expect(fast.map((r) => `${r.status} ${r.body.toString()}`)).toEqual(Array(50).fill('200 fast'));
    expect(held.every((res) => !res.writableEnded)).toBe(true);

    for (const res of held) res.end('slow');
    expect((await Promise.all(slow)).map((r) => `${r.status} ${r.body.toString()}`)).toEqual(Array(5).fill('200 slow'));
  });
});
