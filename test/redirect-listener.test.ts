// The redirect listener beside an HTTPS one, over raw sockets: every request gets a 308 to the same host, path and
// query over HTTPS, except ACME HTTP-01 challenges (proxied by default), and a Host that is not a plain host[:port]
// gets a 400 rather than a Location pointing somewhere else. The upstream records what reaches it.
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCa, makeCertificate, type Ca, type MadeCertificate } from './support/certs.ts';
import { deadPort, parseRawResponse, startProxy, startUpstream, type RawResponse, type RunningProxy, type Upstream } from './support/harness.ts';

let dir: string;
let ca: Ca;
let leaf: MadeCertificate;
let upstream: Upstream;
/** Upgrade requests that reached the upstream. */
let upgrades = 0;
/** Redirects to port 8443, ACME challenges proxied (the default). */
let proxy: RunningProxy;

const listeners = (redirect: Record<string, unknown> | undefined) => [
  { protocol: 'https', host: '127.0.0.1', port: 0 },
  { protocol: 'redirect', host: '127.0.0.1', port: 0, ...(redirect === undefined ? {} : { redirect }) },
];
const tls = () => ({ certificates: [{ cert: leaf.certFile, key: leaf.keyFile }] });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-redirect-listener-'));
  ca = makeCa(dir);
  leaf = makeCertificate(dir, { names: ['example.test'], ca });
  upstream = await startUpstream((req, res) => {
    req.resume();
    req.on('end', () => res.end(`upstream answered ${req.url}`));
  });
  upstream.server.on('upgrade', (_req, socket: Socket) => {
    upgrades++;
    socket.destroy();
  });
  proxy = await startProxy([upstream.origin], { listen: listeners({ httpsPort: 8443 }), tls: tls() });
});

afterAll(async () => {
  await proxy?.shutdown();
  await upstream?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/**
 * Write `data` on a fresh connection and read the first response (its head and content-length body), returned with
 * the socket for what comes next; fails after `deadlineMs` rather than hang on a server that never answers.
 */
async function ask(port: number, data: string, deadlineMs = 5_000): Promise<RawResponse & { readonly socket: Socket }> {
  const socket = connect({ port, host: '127.0.0.1' });
  await once(socket, 'connect');
  socket.write(data);
  const bytes = await firstResponse(socket, deadlineMs);
  return { ...parseRawResponse(bytes), socket };
}

/** Bytes until one complete response has arrived (or the connection closed). */
function firstResponse(socket: Socket, deadlineMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let bytes = Buffer.alloc(0);
    const done = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve(bytes);
    };
    const onData = (chunk: Buffer): void => {
      bytes = Buffer.concat([bytes, chunk]);
      const text = bytes.toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      if (split === -1) return;
      const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, split));
      if (length !== null && bytes.length >= split + 4 + Number(length[1])) done();
    };
    const onClose = (): void => done();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete response within ${deadlineMs} ms: ${JSON.stringify(bytes.toString('latin1'))}`));
    }, deadlineMs);
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', () => {});
  });
}

/** Resolves true when the server closes `socket` within `deadlineMs`, false when it is still open then. */
function closesWithin(socket: Socket, deadlineMs: number): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), deadlineMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

const get = (path: string, host: string | null, extra = ''): string =>
  `GET ${path} HTTP/1.1\r\n${host === null ? '' : `Host: ${host}\r\n`}${extra}Connection: close\r\n\r\n`;

describe('a redirect listener', () => {
  it('answers 308 to the same host, path and query on the configured HTTPS port, without reaching the upstream', async () => {
    const before = upstream.requests;
    const reply = await ask(proxy.ports.redirect, get('/path?q=1&x=%20y', 'example.test'));
    expect(reply.status).toBe(308);
    expect(reply.headers.location).toBe('https://example.test:8443/path?q=1&x=%20y');
    expect(upstream.requests).toBe(before);
  });

  it('replaces the port of a Host that names one', async () => {
    const reply = await ask(proxy.ports.redirect, get('/a', 'example.test:8080'));
    expect(reply.status).toBe(308);
    expect(reply.headers.location).toBe('https://example.test:8443/a');
  });

  it('keeps the brackets of an IPv6 literal Host, with or without a port', async () => {
    for (const host of ['[::1]:8080', '[::1]']) {
      const reply = await ask(proxy.ports.redirect, get('/v6', host));
      expect(reply.status).toBe(308);
      expect(reply.headers.location).toBe('https://[::1]:8443/v6');
    }
  });

  it('takes the host of an absolute-form target over the Host header', async () => {
    const reply = await ask(proxy.ports.redirect, get('http://example.test/abs?z=2', 'other.test'));
    expect(reply.status).toBe(308);
    expect(reply.headers.location).toBe('https://example.test:8443/abs?z=2');
  });

  it('answers a POST with a body 308 too, and the connection either serves on or closes cleanly', async () => {
    const before = upstream.requests;
    const body = 'name=value&other=1';
    const post = `POST /submit?x=1 HTTP/1.1\r\nHost: example.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    const reply = await ask(proxy.ports.redirect, post);
    expect(reply.status).toBe(308);
    expect(reply.headers.location).toBe('https://example.test:8443/submit?x=1');
    // Kept open: a next request on it is answered; closed: the close has come, nothing hangs.
    if (!reply.socket.destroyed && reply.socket.writable) {
      reply.socket.write(get('/after-post', 'example.test'));
      const bytes = await firstResponse(reply.socket, 5_000);
      if (bytes.length > 0) expect(parseRawResponse(bytes).headers.location).toBe('https://example.test:8443/after-post');
    }
    expect(await closesWithin(reply.socket, 5_000)).toBe(true);
    expect(upstream.requests).toBe(before);
  });

  it('answers a POST whose body is still arriving at once with 308, then closes instead of waiting for the rest', async () => {
    const post = 'POST /upload HTTP/1.1\r\nHost: example.test\r\nContent-Length: 1000000\r\n\r\nfirst bytes of a long body';
    const reply = await ask(proxy.ports.redirect, post);
    expect(reply.status).toBe(308);
    expect(reply.headers.connection).toBe('close');
    expect(await closesWithin(reply.socket, 5_000)).toBe(true);
  });

  it('proxies an ACME HTTP-01 challenge to the backends by default', async () => {
    const before = upstream.requests;
    const reply = await ask(proxy.ports.redirect, get('/.well-known/acme-challenge/token123', 'example.test'));
    expect(reply.status, reply.body).toBe(200);
    expect(reply.body).toBe('upstream answered /.well-known/acme-challenge/token123');
    expect(upstream.requests).toBe(before + 1);
  });

  // Only a challenge token passes: a path that merely starts with the folder, dot segments included, would reach the
  // backends over plain HTTP, where a path-normalising proxy (Traefik in Appwrite's stack) serves the API without TLS.
  it('redirects a path that only starts like a challenge and leaves its folder, instead of proxying it', async () => {
    const before = upstream.requests;
    for (const path of ['/.well-known/acme-challenge/../../v1/account', '/.well-known/acme-challenge/%2e%2e/%2e%2e/v1/account']) {
      const reply = await ask(proxy.ports.redirect, get(path, 'example.test'));
      expect(reply.status).toBe(308);
      expect(reply.headers.location).toBe(`https://example.test:8443${path}`);
    }
    expect(upstream.requests).toBe(before);
  });

  it('redirects other /.well-known paths', async () => {
    const reply = await ask(proxy.ports.redirect, get('/.well-known/security.txt', 'example.test'));
    expect(reply.status).toBe(308);
    expect(reply.headers.location).toBe('https://example.test:8443/.well-known/security.txt');
  });

  it.each([
    ['an HTTP/1.0 request without Host', 'GET /x HTTP/1.0\r\n\r\n'],
    ['an HTTP/1.1 request without Host', get('/x', null)],
    ['a Host with user info', get('/x', 'evil@x')],
    ['a Host with a path', get('/x', 'a/b')],
    ['a Host that smuggles another URL', get('/x', 'example.test@evil.test:443')],
    ['an empty Host', get('/x', '')],
  ])('answers %s with 400 and Appwrite-shaped JSON, never a Location', async (_what, data) => {
    const before = upstream.requests;
    const reply = await ask(proxy.ports.redirect, data);
    expect(reply.status).toBe(400);
    expect(reply.headers.location).toBeUndefined();
    expect(reply.headers['content-type']).toBe('application/json');
    const body = JSON.parse(reply.body) as Record<string, unknown>;
    expect(body).toMatchObject({ code: 400, type: 'meridian_bad_request', message: expect.any(String), version: expect.any(String) });
    expect(upstream.requests).toBe(before);
  });

  it('answers a WebSocket upgrade with 308 instead of tunnelling it', async () => {
    const before = upstream.requests;
    const upgradesBefore = upgrades;
    const upgrade =
      'GET /v1/realtime?project=p HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
    const reply = await ask(proxy.ports.redirect, upgrade);
    expect(reply.status).toBe(308);
    expect(reply.headers.location).toBe('https://example.test:8443/v1/realtime?project=p');
    expect(reply.headers.upgrade).toBeUndefined();
    reply.socket.destroy();
    expect(upgrades).toBe(upgradesBefore);
    expect(upstream.requests).toBe(before);
  });

  it('leaves the HTTPS listener beside it serving', async () => {
    const req = httpsRequest({ host: '127.0.0.1', port: proxy.ports.https, path: '/over-tls', servername: 'example.test', ca: ca.cert, agent: false }).end();
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    let body = '';
    for await (const chunk of res) body += String(chunk);
    expect(res.statusCode).toBe(200);
    expect(body).toBe('upstream answered /over-tls');
  });
});

describe('redirect settings', () => {
  it('leaves port 443 out of the Location and redirects ACME challenges with acmeChallenge: redirect', async () => {
    const other = await startProxy([upstream.origin], { listen: listeners({ httpsPort: 443, acmeChallenge: 'redirect' }), tls: tls() });
    try {
      const before = upstream.requests;
      const reply = await ask(other.ports.redirect, get('/path?q=1', 'example.test:80'));
      expect(reply.status).toBe(308);
      expect(reply.headers.location).toBe('https://example.test/path?q=1');
      const acme = await ask(other.ports.redirect, get('/.well-known/acme-challenge/token123', 'example.test'));
      expect(acme.status).toBe(308);
      expect(acme.headers.location).toBe('https://example.test/.well-known/acme-challenge/token123');
      expect(upstream.requests).toBe(before);
    } finally {
      await other.shutdown();
    }
  });

  it('defaults the HTTPS port to the first https listener’s', async () => {
    // A port that was free a moment ago, so the default has a number to take.
    const httpsPort = await deadPort();
    const other = await startProxy([upstream.origin], {
      listen: [
        { protocol: 'redirect', host: '127.0.0.1', port: 0 },
        { protocol: 'https', host: '127.0.0.1', port: httpsPort },
      ],
      tls: tls(),
    });
    try {
      expect(other.ports.https).toBe(httpsPort);
      const reply = await ask(other.ports.redirect, get('/default', 'example.test'));
      expect(reply.status).toBe(308);
      expect(reply.headers.location).toBe(`https://example.test:${httpsPort}/default`);
    } finally {
      await other.shutdown();
    }
  });
});
