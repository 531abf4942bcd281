// Header rewriting (DESIGN.md §5) as an upstream and a client see it: connection-scoped headers stop at
// Meridian in both directions, forwarding headers cannot be forged or listed away, client-address headers pass only
// from trusted proxies, and end-to-end headers and bodies pass untouched.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  json,
  parseRawResponse,
  rawExchange,
  send,
  startProxy,
  startUpstream,
  type RawResponse,
  type Reply,
  type RunningProxy,
  type Upstream,
} from './support/harness.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz';
const GZIPPED = gzipSync(Buffer.from('{"documents":[' + '{"$id":"x","name":"Meridian"},'.repeat(200) + '{}]}'));

/** Answers with what it received, or with a response exercising one header rule, chosen by path. */
function appwriteLike(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    switch (req.url) {
      case '/hop-by-hop':
        res.writeHead(200, [
          'Content-Type', 'text/plain',
          'Connection', 'keep-alive, X-Upstream-Secret',
          'X-Upstream-Secret', 'leak',
          'Keep-Alive', 'timeout=5, max=1000',
          'Proxy-Authenticate', 'Basic realm="upstream"',
          'Proxy-Anything', 'x',
          'Trailer', 'X-Checksum',
          'Upgrade', 'h2c',
          'X-End-To-End', 'kept',
        ]);
        res.end('ok');
        return;
      case '/cookies':
        res.setHeader('set-cookie', ['a_session=1; Path=/; HttpOnly', 'b_legacy=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Secure']);
        res.end('cookies');
        return;
      case '/range': {
        const match = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
        if (!match) {
          res.writeHead(200, { 'accept-ranges': 'bytes', 'content-length': ALPHABET.length });
          res.end(ALPHABET);
          return;
        }
        const [start, end] = [Number(match[1]), Number(match[2])];
        res.writeHead(206, { 'accept-ranges': 'bytes', 'content-range': `bytes ${start}-${end}/${ALPHABET.length}`, 'content-length': end - start + 1 });
        res.end(ALPHABET.slice(start, end + 1));
        return;
      }
      case '/gzip':
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': GZIPPED.length, vary: 'Accept-Encoding' });
        res.end(GZIPPED);
        return;
      default: {
        const body = Buffer.concat(chunks);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ rawHeaders: req.rawHeaders, sha256: createHash('sha256').update(body).digest('hex'), bytes: body.length }));
      }
    }
  });
}

/** The loopback address a test client binds to when it plays a trusted proxy; 127.0.0.1 is an ordinary client. */
const TRUSTED = '127.0.0.2';

let upstream: Upstream;
let plain: RunningProxy;
let appending: RunningProxy;
/** Behind an edge that is trusted at 127.0.0.2 and names the client in its own header. */
let edge: RunningProxy;

beforeAll(async () => {
  upstream = await startUpstream(appwriteLike);
  // A WebSocket handshake is answered with what arrived, as a plain response the tunnel carries back.
  upstream.server.on('upgrade', (req: IncomingMessage, socket) => {
    const body = JSON.stringify({ rawHeaders: req.rawHeaders });
    socket.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  plain = await startProxy([upstream.origin]);
  appending = await startProxy([upstream.origin], { headers: { forwardedFor: 'append', routingHeaders: true } });
  edge = await startProxy([upstream.origin], { geo: { trustedProxies: [`${TRUSTED}/32`], clientIpHeader: 'X-Edge-Client-IP' } });
});

afterAll(async () => {
  await plain?.shutdown();
  await appending?.shutdown();
  await edge?.shutdown();
  await upstream?.close();
});

/** Every value the upstream received for a header name, in order, one entry per header line. */
function seen(reply: Reply | RawResponse, name: string): string[] {
  const raw = (Buffer.isBuffer(reply.body) ? json(reply as Reply).rawHeaders : JSON.parse(reply.body).rawHeaders) as string[];
  const values: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === name) values.push(raw[i + 1]);
  return values;
}

/**
 * One request written byte for byte on a fresh connection from `localAddress` (node's client would tidy the head);
 * resolves with the first complete content-length framed response, then hangs up.
 */
async function rawRequest(port: number, head: readonly string[], localAddress = '127.0.0.1'): Promise<RawResponse> {
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  let received = Buffer.alloc(0);
  try {
    await once(socket, 'connect');
    socket.write(`${head.join('\r\n')}\r\n\r\n`);
    for await (const chunk of socket) {
      received = Buffer.concat([received, chunk as Buffer]);
      const text = received.toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, split));
      if (split !== -1 && length !== null && text.length >= split + 4 + Number(length[1])) return parseRawResponse(received);
    }
    throw new Error(`the connection closed before a complete response: ${JSON.stringify(received.toString('latin1'))}`);
  } finally {
    socket.destroy();
  }
}

function rawResponseValues(reply: Reply, name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < reply.rawHeaders.length; i += 2) if (reply.rawHeaders[i].toLowerCase() === name) values.push(reply.rawHeaders[i + 1]);
  return values;
}

describe('hop-by-hop headers', () => {
  test('are removed on the way up, including the headers Connection names', async () => {
    // Raw bytes: node:http's client refuses to send some of these (Trailer without chunked encoding).
    const head = [
      'GET /echo HTTP/1.1',
      'Host: cloud.example.com',
      'Connection: close',
      'Connection: X-Secret, x-other-secret',
      'X-Secret: must not leave',
      'X-Other-Secret: must not leave either',
      'Keep-Alive: timeout=5',
      'TE: trailers',
      'Trailer: X-Checksum',
      'Proxy-Authorization: Basic Zm9vOmJhcg==',
      'Proxy-Connection: keep-alive',
      'Proxy-Anything: x',
      'Upgrade: h2c',
      'X-End-To-End: kept',
    ];
    const reply = parseRawResponse(await rawExchange(plain.port, `${head.join('\r\n')}\r\n\r\n`));
    expect(reply.status).toBe(200);
    const upstreamSaw = JSON.parse(reply.body) as { rawHeaders: string[] };
    const names = upstreamSaw.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());
    for (const name of ['x-secret', 'x-other-secret', 'keep-alive', 'te', 'trailer', 'proxy-authorization', 'proxy-connection', 'proxy-anything', 'upgrade']) {
      expect(names, name).not.toContain(name);
    }
    // The upstream connection has its own Connection header; ours must not leak into it.
    const connection = upstreamSaw.rawHeaders.filter((_, i) => i % 2 === 1 && names[(i - 1) / 2] === 'connection');
    for (const value of connection) expect(value.toLowerCase()).not.toContain('secret');
    expect(names).toContain('x-end-to-end');
    expect(names.filter((name) => name === 'host')).toHaveLength(1);
  });

  test('are removed on the way down, including the headers Connection names', async () => {
    const reply = await send(plain.port, { path: '/hop-by-hop' });
    expect(reply.status).toBe(200);
    expect(reply.body.toString()).toBe('ok');
    for (const name of ['x-upstream-secret', 'keep-alive', 'proxy-authenticate', 'proxy-anything', 'trailer', 'upgrade']) {
      expect(reply.headers[name], name).toBeUndefined();
    }
    expect(String(reply.headers.connection ?? '').toLowerCase()).not.toContain('x-upstream-secret');
    expect(reply.headers['x-end-to-end']).toBe('kept');
  });
});

describe('headers Connection may not remove', () => {
  test('`Connection: keep-alive, Host` keeps Host: Appwrite routes by it', async () => {
    const reply = await rawRequest(plain.port, ['GET /echo HTTP/1.1', 'Host: cloud.example.com', 'Connection: keep-alive, Host']);
    expect(reply.status).toBe(200);
    expect(seen(reply, 'host')).toEqual(['cloud.example.com']);
    expect(seen(reply, 'x-forwarded-host')).toEqual(['cloud.example.com']);
  });

  test('Connection cannot list away the forwarding headers Meridian sets', async () => {
    const reply = await rawRequest(plain.port, [
      'GET /echo HTTP/1.1',
      'Host: cloud.example.com',
      'Connection: X-Forwarded-For, X-Request-Id, X-Forwarded-Proto, X-Forwarded-Host',
      'X-Request-Id: trace-7f3a-0002',
    ]);
    expect(seen(reply, 'x-forwarded-for')).toEqual(['127.0.0.1']);
    expect(seen(reply, 'x-forwarded-proto')).toEqual(['http']);
    expect(seen(reply, 'x-forwarded-host')).toEqual(['cloud.example.com']);
    expect(seen(reply, 'x-request-id')).toEqual(['trace-7f3a-0002']);
    expect(seen(reply, 'host')).toEqual(['cloud.example.com']);
  });

  test('any other name in Connection is still removed', async () => {
    const closing = await rawRequest(plain.port, ['GET /echo HTTP/1.1', 'Host: cloud.example.com', 'Connection: close, x-foo', 'X-Foo: hop', 'X-Bar: kept']);
    expect(seen(closing, 'x-foo')).toEqual([]);
    expect(seen(closing, 'x-bar')).toEqual(['kept']);
    const mixed = await rawRequest(plain.port, ['GET /echo HTTP/1.1', 'Host: cloud.example.com', 'Connection: keep-alive, Host, X-Foo', 'X-Foo: hop']);
    expect(seen(mixed, 'x-foo')).toEqual([]);
    expect(seen(mixed, 'host')).toEqual(['cloud.example.com']);
  });

  test('a WebSocket handshake goes up with `Connection: upgrade`, so the next hop cannot drop Host or X-Forwarded-*', async () => {
    const reply = await rawRequest(plain.port, [
      'GET /v1/realtime?project=demo HTTP/1.1',
      'Host: cloud.example.com',
      'Connection: Upgrade, Host, X-Forwarded-For, X-Foo',
      'Upgrade: websocket',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      'Sec-WebSocket-Version: 13',
      'X-Foo: hop',
    ]);
    expect(reply.status).toBe(200);
    expect(seen(reply, 'connection')).toEqual(['upgrade']);
    expect(seen(reply, 'upgrade')).toEqual(['websocket']);
    expect(seen(reply, 'host')).toEqual(['cloud.example.com']);
    expect(seen(reply, 'x-forwarded-for')).toEqual(['127.0.0.1']);
    expect(seen(reply, 'x-foo')).toEqual([]);
  });
});

describe('two Host headers', () => {
  test.each([
    ['the same value twice', 'HTTP/1.1', ['Host: cloud.example.com', 'Host: cloud.example.com']],
    ['two values in different case', 'HTTP/1.1', ['Host: cloud.example.com', 'host: evil.example']],
    ['HTTP/1.0, where Host is optional', 'HTTP/1.0', ['HOST: cloud.example.com', 'hOsT: evil.example']],
  ])('are refused with a JSON 400 that no upstream sees: %s', async (_, version, hosts) => {
    const before = upstream.requests;
    // rawExchange waits for the close: the connection must not be reused after a malformed request.
    const reply = parseRawResponse(await rawExchange(plain.port, `GET /echo ${version}\r\n${hosts.join('\r\n')}\r\nX-Pad: 1\r\n\r\n`));
    expect(reply.status).toBe(400);
    expect(reply.headers['content-type']).toBe('application/json');
    expect(JSON.parse(reply.body)).toMatchObject({ code: 400, type: 'meridian_bad_request' });
    expect(upstream.requests).toBe(before);
  });

  test('names that merely look like Host are no second Host', async () => {
    const reply = await rawRequest(plain.port, ['GET /echo HTTP/1.1', 'Host: cloud.example.com', 'Hast: 1', 'X-Host: 2', 'Hosts: 3']);
    expect(reply.status).toBe(200);
    expect(seen(reply, 'host')).toEqual(['cloud.example.com']);
  });
});

describe('client-address headers', () => {
  /** Each header Appwrite can be told to trust (`_APP_TRUSTED_HEADERS`), plus the one this edge is configured with. */
  const CLIENT_ADDRESS: [string, string][] = [
    ['X-Real-IP', '198.51.100.1'],
    ['Forwarded', 'for=198.51.100.2;proto=https'],
    ['Forwarded', 'for=198.51.100.3'],
    ['True-Client-IP', '198.51.100.4'],
    ['X-Client-IP', '198.51.100.5'],
    ['CF-Connecting-IP', '198.51.100.6'],
    ['X-Edge-Client-IP', '198.51.100.7'],
  ];
  const head = ['GET /echo HTTP/1.1', 'Host: cloud.example.com', 'Connection: close', ...CLIENT_ADDRESS.map(([name, value]) => `${name}: ${value}`)];

  test('never reach the upstream from a peer that is not a trusted proxy', async () => {
    const reply = await rawRequest(edge.port, head);
    expect(reply.status).toBe(200);
    for (const [name] of CLIENT_ADDRESS) expect(seen(reply, name.toLowerCase()), name).toEqual([]);
    expect(seen(reply, 'x-forwarded-for')).toEqual(['127.0.0.1']);
  });

  test('the configured geo.clientIpHeader is the one name added to the fixed list', async () => {
    const reply = await rawRequest(plain.port, head);
    expect(seen(reply, 'cf-connecting-ip')).toEqual([]);
    expect(seen(reply, 'x-edge-client-ip')).toEqual(['198.51.100.7']);
  });

  test('pass as sent from a trusted proxy', async () => {
    const reply = await rawRequest(edge.port, head, TRUSTED);
    expect(reply.status).toBe(200);
    for (const name of new Set(CLIENT_ADDRESS.map(([n]) => n))) {
      // node's parser joins repeated lines into one list (RFC 9110 §5.3), in order.
      const sent = CLIENT_ADDRESS.filter(([n]) => n === name).map(([, value]) => value);
      expect(seen(reply, name.toLowerCase()), name).toEqual([sent.join(', ')]);
    }
    // The edge's own header names the client, so that is who Appwrite hears about.
    expect(seen(reply, 'x-forwarded-for')).toEqual(['198.51.100.7']);
  });

  test('follow the same rule on a WebSocket handshake', async () => {
    const handshake = [
      'GET /v1/realtime?project=demo HTTP/1.1',
      'Host: cloud.example.com',
      'Connection: Upgrade',
      'Upgrade: websocket',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      'Sec-WebSocket-Version: 13',
      ...CLIENT_ADDRESS.map(([name, value]) => `${name}: ${value}`),
    ];
    const untrusted = await rawRequest(edge.port, handshake);
    expect(untrusted.status).toBe(200);
    for (const [name] of CLIENT_ADDRESS) expect(seen(untrusted, name.toLowerCase()), name).toEqual([]);
    expect(seen(untrusted, 'x-forwarded-for')).toEqual(['127.0.0.1']);
    const trusted = await rawRequest(edge.port, handshake, TRUSTED);
    expect(seen(trusted, 'x-real-ip')).toEqual(['198.51.100.1']);
    expect(seen(trusted, 'x-edge-client-ip')).toEqual(['198.51.100.7']);
    expect(seen(trusted, 'x-forwarded-for')).toEqual(['198.51.100.7']);
  });
});

describe('forwarding headers', () => {
  test('Host is preserved and X-Forwarded-Host names it, whatever the client claims', async () => {
    const reply = await send(plain.port, { path: '/echo', headers: { host: 'cloud.example.com', 'x-forwarded-host': 'evil.example' } });
    expect(seen(reply, 'host')).toEqual(['cloud.example.com']);
    expect(seen(reply, 'x-forwarded-host')).toEqual(['cloud.example.com']);
  });

  test('X-Forwarded-For is overwritten with the client address, even when the client sends its own', async () => {
    const reply = await send(plain.port, {
      path: '/echo',
      headers: ['Host', 'cloud.example.com', 'X-Forwarded-For', '203.0.113.7', 'X-Forwarded-For', '198.51.100.1, 192.0.2.9'],
    });
    expect(seen(reply, 'x-forwarded-for')).toEqual(['127.0.0.1']);
  });

  test('X-Forwarded-For in append mode keeps the incoming chain and adds the peer', async () => {
    const chained = await send(appending.port, { path: '/echo', headers: { 'x-forwarded-for': '203.0.113.7, 198.51.100.1' } });
    expect(seen(chained, 'x-forwarded-for')).toEqual(['203.0.113.7, 198.51.100.1, 127.0.0.1']);
    const direct = await send(appending.port, { path: '/echo' });
    expect(seen(direct, 'x-forwarded-for')).toEqual(['127.0.0.1']);
  });

  test('X-Forwarded-Proto is http on a plain listener, even when an untrusted client claims https', async () => {
    const reply = await send(plain.port, { path: '/echo', headers: { 'x-forwarded-proto': 'https' } });
    expect(seen(reply, 'x-forwarded-proto')).toEqual(['http']);
  });

  test('X-Forwarded-Proto: https from a trusted proxy reaches the upstream, since Appwrite marks cookies Secure by it', async () => {
    const head = ['GET /echo HTTP/1.1', 'Host: cloud.example.com', 'X-Forwarded-Proto: https', 'X-Forwarded-Host: console.example.com'];
    const trusted = await rawRequest(edge.port, head, TRUSTED);
    expect(seen(trusted, 'x-forwarded-proto')).toEqual(['https']);
    expect(seen(trusted, 'x-forwarded-host')).toEqual(['console.example.com']);
    const untrusted = await rawRequest(edge.port, head);
    expect(seen(untrusted, 'x-forwarded-proto')).toEqual(['http']);
    expect(seen(untrusted, 'x-forwarded-host')).toEqual(['cloud.example.com']);
  });

  test('X-Request-Id is generated as a UUID when absent, fresh for every request', async () => {
    const first = seen(await send(plain.port, { path: '/echo' }), 'x-request-id');
    const second = seen(await send(plain.port, { path: '/echo' }), 'x-request-id');
    expect(first).toHaveLength(1);
    expect(first[0]).toMatch(UUID);
    expect(second[0]).toMatch(UUID);
    expect(second[0]).not.toBe(first[0]);
  });

  test('X-Request-Id is kept when the client sends one', async () => {
    const reply = await send(plain.port, { path: '/echo', headers: { 'x-request-id': 'trace-7f3a-0001' } });
    expect(seen(reply, 'x-request-id')).toEqual(['trace-7f3a-0001']);
  });
});

describe('end-to-end headers and bodies', () => {
  test('several Set-Cookie headers stay separate header lines', async () => {
    const reply = await send(plain.port, { path: '/cookies' });
    const expected = ['a_session=1; Path=/; HttpOnly', 'b_legacy=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Secure'];
    expect(reply.headers['set-cookie']).toEqual(expected);
    expect(rawResponseValues(reply, 'set-cookie')).toEqual(expected);
  });

  test('a Range request gets the upstream 206 and Content-Range', async () => {
    const reply = await send(plain.port, { path: '/range', headers: { range: 'bytes=2-5' } });
    expect(reply.status).toBe(206);
    expect(reply.headers['content-range']).toBe('bytes 2-5/26');
    expect(reply.body.toString()).toBe('cdef');
  });

  test('a gzip response body passes through byte for byte, still encoded', async () => {
    const reply = await send(plain.port, { path: '/gzip', headers: { 'accept-encoding': 'gzip' } });
    expect(reply.headers['content-encoding']).toBe('gzip');
    expect(reply.headers['content-length']).toBe(String(GZIPPED.length));
    expect(reply.body.equals(GZIPPED)).toBe(true);
  });

  test('a gzip request body passes through byte for byte, with its encoding header', async () => {
    const reply = await send(plain.port, { method: 'POST', path: '/echo', headers: { 'content-encoding': 'gzip', 'content-type': 'application/json' }, body: GZIPPED });
    expect(seen(reply, 'content-encoding')).toEqual(['gzip']);
    expect(json(reply).sha256).toBe(createHash('sha256').update(GZIPPED).digest('hex'));
  });
});

describe('routing headers', () => {
  test('are absent by default', async () => {
    const reply = await send(plain.port, { path: '/echo' });
    expect(reply.headers['x-meridian-region']).toBeUndefined();
    expect(reply.headers['x-meridian-zone']).toBeUndefined();
  });

  test('name the serving region and zone when turned on', async () => {
    const reply = await send(appending.port, { path: '/echo' });
    expect(reply.headers['x-meridian-region']).toBe('local');
    expect(reply.headers['x-meridian-zone']).toBe('az-1');
  });
});
