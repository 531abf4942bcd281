// Request targets per RFC 9112 §3.2, through a running Meridian with raw sockets: `OPTIONS *` and other targets
// undici cannot send used to be translated as upstream resets, retried on three endpoints and counted as outlier
// failures, so a dozen of them ejected the local region. A client's mistake never touches endpoint health.
import { afterEach, expect, test } from 'vitest';
import type { IncomingHttpHeaders } from 'node:http';
import { parseRawResponse, rawExchange, send, startProxy, startUpstream, type RunningProxy, type Upstream } from './support/harness.ts';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

interface Seen {
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
}

async function world(overrides: Record<string, Record<string, unknown>> = {}): Promise<{ proxy: RunningProxy; local: Upstream; fallback: Upstream; seen: Seen[] }> {
  const seen: Seen[] = [];
  const local = await startUpstream((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    req.resume();
    res.end('local');
  });
  const fallback = await startUpstream((req, res) => {
    req.resume();
    res.end('fallback');
  });
  cleanup.push(() => local.close(), () => fallback.close());
  // One failure ejects: anything counted against the local endpoint moves the next request to the fallback.
  const proxy = await startProxy([local.origin, fallback.origin], { outlierDetection: { consecutiveFailures: 1 }, ...overrides });
  cleanup.push(() => proxy.shutdown());
  return { proxy, local, fallback, seen };
}

const request = (line: string, headers = 'Host: appwrite.test\r\n'): string => `${line}\r\n${headers}Connection: close\r\n\r\n`;

test('OPTIONS * is answered by Meridian, and a dozen of them leave the local region in service', async () => {
  const { proxy, local, fallback } = await world();
  for (let i = 0; i < 12; i++) {
    const answer = parseRawResponse(await rawExchange(proxy.port, request('OPTIONS * HTTP/1.1')));
    expect(answer.status).toBe(200);
    expect(answer.headers['allow']).toContain('GET');
    expect(answer.headers['content-length']).toBe('0');
  }
  expect(local.requests + fallback.requests).toBe(0);
  const after = await send(proxy.port, { path: '/v1/health' });
  expect(after.body.toString()).toBe('local');
});

test.each([
  ['a scheme other than http(s)', 'GET x://y HTTP/1.1'],
  ['an asterisk on a method other than OPTIONS', 'GET * HTTP/1.1'],
  ['authority-form outside CONNECT', 'GET appwrite.test:443 HTTP/1.1'],
  ['user info in the authority', 'GET http://user:pass@appwrite.test/v1 HTTP/1.1'],
  ['an empty authority', 'GET http:///v1 HTTP/1.1'],
  ['a fragment', 'GET http://appwrite.test/v1#frag HTTP/1.1'],
])('%s is a 400 JSON answer that reaches no upstream and is never retried', async (_name, line) => {
  const { proxy, local, fallback } = await world();
  for (let i = 0; i < 3; i++) {
    const answer = parseRawResponse(await rawExchange(proxy.port, request(line)));
    expect(answer.status).toBe(400);
    expect(answer.headers['content-type']).toBe('application/json');
    expect(JSON.parse(answer.body)).toMatchObject({ code: 400, type: 'meridian_bad_request' });
  }
  expect(local.requests + fallback.requests).toBe(0);
  expect((await send(proxy.port)).body.toString()).toBe('local');
});

test('absolute-form is sent upstream in origin-form, with its authority as Host', async () => {
  const { proxy, seen } = await world();
  const answer = parseRawResponse(await rawExchange(proxy.port, request('GET http://Cloud.Example.com:8443/v1/account?x=1 HTTP/1.1', 'Host: ignored.example\r\n')));
  expect(answer.status).toBe(200);
  expect(seen[0].url).toBe('/v1/account?x=1');
  expect(seen[0].headers.host).toBe('Cloud.Example.com:8443');
  expect(seen[0].headers['x-forwarded-host']).toBe('Cloud.Example.com:8443');
});

test('absolute-form without a path becomes /, and its query keeps its place', async () => {
  const { proxy, seen } = await world();
  await rawExchange(proxy.port, request('GET http://appwrite.test HTTP/1.1'));
  await rawExchange(proxy.port, request('GET https://appwrite.test?project=p HTTP/1.1'));
  expect(seen.map((s) => s.url)).toEqual(['/', '/?project=p']);
});

test("host rules read an absolute-form target's authority, not the Host header it replaces", async () => {
  const { proxy, seen } = await world({ routing: { hosts: [{ host: 'eu.example.com', region: 'fallback-1' }] } });
  const answer = parseRawResponse(await rawExchange(proxy.port, request('GET http://eu.example.com/v1/locale HTTP/1.1', 'Host: us.example.com\r\n')));
  expect(answer.body).toBe('fallback');
  expect(seen).toHaveLength(0);
});

test('a WebSocket handshake with two Host headers or a target that is not a path is refused before any upstream', async () => {
  const { proxy, local, fallback } = await world();
  const handshake = (line: string, hosts: string): string =>
    `${line}\r\n${hosts}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
  for (const raw of [
    handshake('GET /v1/realtime HTTP/1.1', 'Host: a.example\r\nHost: b.example\r\n'),
    handshake('GET * HTTP/1.1', 'Host: a.example\r\n'),
    handshake('GET x://y/v1/realtime HTTP/1.1', 'Host: a.example\r\n'),
  ]) {
    const answer = parseRawResponse(await rawExchange(proxy.port, raw));
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 400 });
  }
  expect(local.requests + fallback.requests).toBe(0);
});
