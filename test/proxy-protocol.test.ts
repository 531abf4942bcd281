// Listeners that take the PROXY protocol, end to end: raw sockets write hand-built v1 and v2 headers before HTTP (or
// TLS), a real HAProxy sends them as a load balancer would, and real upstreams record the client address Meridian
// passes on. Only the configured peers may connect, and only with a header; everyone else is closed without a byte.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { connect as http2Connect } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LISTENER_STAT } from '../src/observe/listener-stats.ts';
import { makeCa, makeCertificate, type Ca, type MadeCertificate } from './support/certs.ts';
import { deadPort, parseRawResponse, startProxy, startUpstream, until, type RunningProxy, type Upstream } from './support/harness.ts';

/** What an upstream saw of one request. */
interface Seen {
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
}

/** An upstream that records each request and answers 200 with its path. */
async function recordingUpstream(): Promise<Upstream & { readonly seen: Seen[] }> {
  const seen: Seen[] = [];
  const upstream = await startUpstream((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      res.end(`answered ${req.url}`);
    });
  });
  return Object.assign(upstream, { seen });
}

// --- PROXY headers, built by hand from the spec (haproxy.org/download/2.9/doc/proxy-protocol.txt) ---

function v1(family: 'TCP4' | 'TCP6', source: string, destination: string): Buffer {
  return Buffer.from(`PROXY ${family} ${source} ${destination} 51234 80\r\n`, 'latin1');
}

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

function ipv6Bytes(address: string): Buffer {
  const [head, tail] = address.includes('::') ? address.split('::') : [address, undefined];
  const groups = (part: string | undefined): number[] => (part === undefined || part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const first = groups(head);
  const last = groups(tail);
  const all = tail === undefined ? first : [...first, ...new Array<number>(8 - first.length - last.length).fill(0), ...last];
  const out = Buffer.alloc(16);
  all.forEach((group, i) => out.writeUInt16BE(group, i * 2));
  return out;
}

/** A v2 PROXY command over TCP, IPv4 or IPv6, with one TLV after the addresses (receivers must skip TLVs). */
function v2(family: 4 | 6, source: string, destination: string): Buffer {
  const addresses = family === 4 ? Buffer.concat([ipv4Bytes(source), ipv4Bytes(destination)]) : Buffer.concat([ipv6Bytes(source), ipv6Bytes(destination)]);
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(51234, 0);
  ports.writeUInt16BE(443, 2);
  // PP2_TYPE_AUTHORITY (0x02), as HAProxy sends the SNI it saw.
  const tlv = Buffer.concat([Buffer.from([0x02, 0x00, 0x0c]), Buffer.from('edge.example', 'latin1')]);
  const body = Buffer.concat([addresses, ports, tlv]);
  const head = Buffer.from([0x21, family === 4 ? 0x11 : 0x21, 0, 0]);
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, body]);
}

/** A v2 LOCAL command: the load balancer speaking for itself (a health check), no addresses. */
function v2Local(): Buffer {
  return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
}

function httpRequest(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: app.example.test\r\n${extra}Connection: close\r\n\r\n`;
}

// --- Raw connections ---

interface Exchange {
  readonly bytes: Buffer;
  /** From connect to the server's close. */
  readonly elapsedMs: number;
}

/**
 * Connect (from `localAddress`), write `data` in one write (nothing when null), and collect what the server sends
 * until it closes. Fails after `deadlineMs` instead of waiting on a server that never closes.
 */
async function exchange(port: number, data: Buffer | string | null, localAddress = '127.0.0.1', deadlineMs = 5_000): Promise<Exchange> {
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(socket, 'connect');
  const started = performance.now();
  if (data !== null) socket.write(data);
  await closed(socket, deadlineMs);
  return { bytes: Buffer.concat(chunks), elapsedMs: performance.now() - started };
}

function closed(socket: Socket, deadlineMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server did not close the connection within ${deadlineMs} ms`));
    }, deadlineMs);
    // A refused connection may be reset, or fail a write that raced the server's close: both are closes here.
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return;
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Every response status line in raw bytes, in order. */
function statuses(bytes: Buffer): number[] {
  return [...bytes.toString('latin1').matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

/** One request through the proxy at `port` with `header` before it; the upstream's record of it. */
async function throughHeader(port: number, upstream: { readonly seen: Seen[] }, header: Buffer, path: string, localAddress = '127.0.0.1'): Promise<Seen> {
  // A client's own X-Forwarded-For must lose to the header: the listener trusts the load balancer, not the client.
  const { bytes } = await exchange(port, Buffer.concat([header, Buffer.from(httpRequest(path, 'X-Forwarded-For: 6.6.6.6\r\n'))]), localAddress);
  const reply = parseRawResponse(bytes);
  expect(reply.status, reply.body).toBe(200);
  expect(reply.body).toBe(`answered ${path}`);
  const seen = upstream.seen.find((s) => s.url === path);
  expect(seen, `the upstream saw ${path}`).toBeDefined();
  return seen!;
}

const refusals = (proxy: RunningProxy): number => proxy.meridian.runtime.listenerStats.total(0, LISTENER_STAT.proxyRefused);

/** A listener list of one plain HTTP listener that takes the PROXY protocol from `trusted`. */
const proxiedListener = (trusted: string[]) => [{ host: '127.0.0.1', port: 0, proxyProtocol: { trusted } }];

describe('a plain listener that takes the PROXY protocol from 127.0.0.0/8', () => {
  let upstream: Awaited<ReturnType<typeof recordingUpstream>>;
  let proxy: RunningProxy;

  beforeAll(async () => {
    upstream = await recordingUpstream();
    proxy = await startProxy([upstream.origin], { listen: proxiedListener(['127.0.0.0/8']), timeouts: { handshake: '300ms' } });
  });
  afterAll(async () => {
    await proxy?.shutdown();
    await upstream?.close();
  });

  it('passes on the client a v1 header names as X-Forwarded-For', async () => {
    const seen = await throughHeader(proxy.port, upstream, v1('TCP4', '203.0.113.7', '127.0.0.1'), '/v1-ipv4');
    expect(seen.headers['x-forwarded-for']).toBe('203.0.113.7');
  });

  it('passes on the IPv6 client of a v1 TCP6 header', async () => {
    const seen = await throughHeader(proxy.port, upstream, v1('TCP6', '2001:db8::17', '::1'), '/v1-ipv6');
    expect(seen.headers['x-forwarded-for']).toBe('2001:db8::17');
  });

  it('passes on the IPv4 client of a v2 header, skipping its TLVs', async () => {
    const seen = await throughHeader(proxy.port, upstream, v2(4, '198.51.100.23', '127.0.0.1'), '/v2-ipv4');
    expect(seen.headers['x-forwarded-for']).toBe('198.51.100.23');
  });

  it('passes on the IPv6 client of a v2 header', async () => {
    const seen = await throughHeader(proxy.port, upstream, v2(6, '2001:db8:85a3::8a2e:370:7334', '::1'), '/v2-ipv6');
    expect(seen.headers['x-forwarded-for']).toBe('2001:db8:85a3::8a2e:370:7334');
  });

  it('keeps the socket’s own address for a v2 LOCAL command, the balancer speaking for itself', async () => {
    // From 127.0.0.3, so the address seen can only be the socket's own.
    const seen = await throughHeader(proxy.port, upstream, v2Local(), '/v2-local', '127.0.0.3');
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.3');
  });

  it('answers both pipelined requests that came in the same write as the header', async () => {
    const pipelined = `GET /first HTTP/1.1\r\nHost: app.example.test\r\n\r\n${httpRequest('/second')}`;
    const { bytes } = await exchange(proxy.port, Buffer.concat([v1('TCP4', '203.0.113.8', '127.0.0.1'), Buffer.from(pipelined)]));
    expect(statuses(bytes)).toEqual([200, 200]);
    const text = bytes.toString('latin1');
    expect(text.indexOf('answered /first')).toBeGreaterThan(-1);
    expect(text.indexOf('answered /second')).toBeGreaterThan(text.indexOf('answered /first'));
    const seen = upstream.seen.filter((s) => s.url === '/first' || s.url === '/second');
    expect(seen.map((s) => [s.url, s.headers['x-forwarded-for']])).toEqual([
      ['/first', '203.0.113.8'],
      ['/second', '203.0.113.8'],
    ]);
  });

  it('answers a request whose header arrives split across writes', async () => {
    const header = v2(4, '198.51.100.99', '127.0.0.1');
    const socket = connect({ port: proxy.port, host: '127.0.0.1' });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    await once(socket, 'connect');
    const done = closed(socket, 5_000);
    socket.setNoDelay(true);
    socket.write(header.subarray(0, 7));
    await new Promise((resolve) => setTimeout(resolve, 30));
    socket.write(header.subarray(7));
    await new Promise((resolve) => setTimeout(resolve, 30));
    socket.write(httpRequest('/split'));
    await done;
    expect(statuses(Buffer.concat(chunks))).toEqual([200]);
    expect(upstream.seen.find((s) => s.url === '/split')?.headers['x-forwarded-for']).toBe('198.51.100.99');
  });

  it('closes a trusted peer’s plain HTTP request without a header, answering nothing and counting a refusal', async () => {
    const before = refusals(proxy);
    const requests = upstream.requests;
    const { bytes } = await exchange(proxy.port, httpRequest('/no-header'));
    expect(bytes.length).toBe(0);
    expect(upstream.requests).toBe(requests);
    expect(refusals(proxy)).toBe(before + 1);
  });

  it.each([
    ['a v1 header with an unknown protocol', Buffer.from('PROXY TCP9 203.0.113.7 127.0.0.1 1 2\r\n')],
    ['a v1 header with a bad address', Buffer.from('PROXY TCP4 203.0.113.777 127.0.0.1 1 2\r\n')],
    ['a v1 line longer than the spec allows', Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}\r\n`)],
    ['a v2 header of version 3', Buffer.concat([V2_SIGNATURE, Buffer.from([0x31, 0x11, 0x00, 0x0c]), Buffer.alloc(12)])],
    ['a v2 header shorter than its IPv4 addresses', Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0x00, 0x04]), Buffer.alloc(4)])],
  ])('closes a trusted peer that sends %s, answering nothing and counting a refusal', async (_what, header) => {
    const before = refusals(proxy);
    const requests = upstream.requests;
    const { bytes } = await exchange(proxy.port, Buffer.concat([header, Buffer.from(httpRequest('/malformed'))]));
    expect(bytes.length).toBe(0);
    expect(upstream.requests).toBe(requests);
    expect(refusals(proxy)).toBe(before + 1);
  });

  it('closes a trusted peer that sends nothing once timeouts.handshake (300 ms) has passed', async () => {
    const before = refusals(proxy);
    const { bytes, elapsedMs } = await exchange(proxy.port, null, '127.0.0.1', 3_000);
    expect(bytes.length).toBe(0);
    expect(elapsedMs).toBeGreaterThanOrEqual(250);
    expect(elapsedMs).toBeLessThan(2_000);
    expect(refusals(proxy)).toBe(before + 1);
  });

  it('closes a trusted peer that stops halfway through the header once timeouts.handshake has passed', async () => {
    const before = refusals(proxy);
    const { bytes, elapsedMs } = await exchange(proxy.port, 'PROXY TCP4 203.0.11', '127.0.0.1', 3_000);
    expect(bytes.length).toBe(0);
    expect(elapsedMs).toBeGreaterThanOrEqual(250);
    expect(elapsedMs).toBeLessThan(2_000);
    expect(refusals(proxy)).toBe(before + 1);
  });
});

describe('shutdown', () => {
  // A socket still owing its PROXY header is not yet one of the HTTP server's connections: closeAllConnections()
  // would leave it, and server.close() would wait for it until the header timeout, up to timeouts.handshake past
  // drainTimeout. Shutdown cuts it itself.
  it('does not wait on a connection that still owes its PROXY header', async () => {
    const upstream = await recordingUpstream();
    const proxy = await startProxy([upstream.origin], {
      listen: proxiedListener(['127.0.0.0/8']),
      timeouts: { handshake: '4s' },
      shutdown: { drainDelay: 0, drainTimeout: '200ms' },
    });
    const socket = connect({ port: proxy.port, host: '127.0.0.1' });
    socket.on('error', () => {});
    try {
      await once(socket, 'connect');
      // A connection made after it is answered first, so the listener has accepted it, not merely the kernel.
      await throughHeader(proxy.port, upstream, v1('TCP4', '203.0.113.80', '127.0.0.1'), '/before-shutdown');
      const started = performance.now();
      await proxy.shutdown();
      expect(performance.now() - started).toBeLessThan(2_000);
    } finally {
      socket.destroy();
      await proxy.shutdown();
      await upstream.close();
    }
  }, 15_000);
});

describe('a listener that trusts only 10.0.0.0/8', () => {
  it('closes a connection from 127.0.0.1 even with a valid header, answering nothing and counting a refusal', async () => {
    const upstream = await recordingUpstream();
    const proxy = await startProxy([upstream.origin], { listen: proxiedListener(['10.0.0.0/8']) });
    try {
      const data = Buffer.concat([v1('TCP4', '203.0.113.7', '127.0.0.1'), Buffer.from(httpRequest('/untrusted'))]);
      for (let i = 1; i <= 2; i++) {
        const { bytes } = await exchange(proxy.port, data);
        expect(bytes.length).toBe(0);
        expect(refusals(proxy)).toBe(i);
      }
      expect(upstream.requests).toBe(0);
    } finally {
      await proxy.shutdown();
      await upstream.close();
    }
  });
});

describe('geo routing behind a PROXY header', () => {
  it('routes by the address the header names, not the balancer’s loopback address', async () => {
    // Meridian runs in Oregon; the bundled DB-IP database places 81.2.69.142 in Great Britain, near the London region.
    const oregon = await recordingUpstream();
    const london = await recordingUpstream();
    const proxy = await startProxy([oregon.origin, london.origin], {
      listen: proxiedListener(['127.0.0.0/8']),
      regions: {
        local: { location: [45.52, -122.68], zones: { 'az-1': { endpoints: [oregon.origin] } } },
        'fallback-1': { location: [51.51, -0.13], zones: { 'az-1': { endpoints: [london.origin] } } },
      },
    });
    try {
      const seen = await throughHeader(proxy.port, london, v2(4, '81.2.69.142', '127.0.0.1'), '/from-london');
      expect(seen.headers['x-forwarded-for']).toBe('81.2.69.142');
      expect(oregon.requests).toBe(0);
      // The same balancer speaking for itself: loopback has no location, so the local region answers.
      await throughHeader(proxy.port, oregon, v2Local(), '/from-the-balancer');
      expect(london.requests).toBe(1);
    } finally {
      await proxy.shutdown();
      await oregon.close();
      await london.close();
    }
  }, 20_000);
});

describe('TLS after the PROXY header', () => {
  let dir: string;
  let ca: Ca;
  let leaf: MadeCertificate;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meridian-proxy-protocol-tls-'));
    ca = makeCa(dir);
    leaf = makeCertificate(dir, { names: ['edge.example.test'], ca });
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  /** An HTTPS listener (h2 and http/1.1) that takes the PROXY protocol from 127.0.0.1. */
  const startTlsProxy = (upstream: Upstream): Promise<RunningProxy> =>
    startProxy([upstream.origin], {
      listen: [{ protocol: 'https', host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['127.0.0.1/32'] } }],
      tls: { certificates: [{ cert: leaf.certFile, key: leaf.keyFile }] },
      // A handshake that cannot complete fails the test in 2 s rather than the default 10.
      timeouts: { handshake: '2s' },
    });

  it('passes on the header’s client and x-forwarded-proto https for a request over the TLS that follows', async () => {
    const upstream = await recordingUpstream();
    const proxy = await startTlsProxy(upstream);
    try {
      for (const [header, client] of [
        [v1('TCP4', '203.0.113.50', '127.0.0.1'), '203.0.113.50'],
        [v2(6, '2001:db8::50', '::1'), '2001:db8::50'],
      ] as const) {
        const raw = connect({ port: proxy.ports.https, host: '127.0.0.1' });
        await once(raw, 'connect');
        raw.write(header);
        const secure = tlsConnect({ socket: raw, servername: 'edge.example.test', ca: ca.cert });
        const chunks: Buffer[] = [];
        secure.on('data', (chunk: Buffer) => chunks.push(chunk));
        await once(secure, 'secureConnect');
        secure.write(httpRequest(`/tls-${client}`));
        await closed(secure, 5_000);
        const reply = parseRawResponse(Buffer.concat(chunks));
        expect(reply.status, reply.body).toBe(200);
        const seen = upstream.seen.find((s) => s.url === `/tls-${client}`);
        expect(seen?.headers['x-forwarded-for']).toBe(client);
        expect(seen?.headers['x-forwarded-proto']).toBe('https');
      }
    } finally {
      await proxy.shutdown();
      await upstream.close();
    }
  }, 15_000);

  it('keeps a ClientHello that arrived in the same write as the header', async () => {
    const upstream = await recordingUpstream();
    const proxy = await startTlsProxy(upstream);
    try {
      const raw = connect({ port: proxy.ports.https, host: '127.0.0.1' });
      await once(raw, 'connect');
      const secure = tlsConnect({ socket: headerFirst(raw, v2(4, '203.0.113.60', '127.0.0.1')), servername: 'edge.example.test', ca: ca.cert });
      const chunks: Buffer[] = [];
      secure.on('data', (chunk: Buffer) => chunks.push(chunk));
      await once(secure, 'secureConnect');
      secure.write(httpRequest('/tls-one-write'));
      await closed(secure, 5_000);
      expect(parseRawResponse(Buffer.concat(chunks)).status).toBe(200);
      expect(upstream.seen.find((s) => s.url === '/tls-one-write')?.headers['x-forwarded-for']).toBe('203.0.113.60');
    } finally {
      await proxy.shutdown();
      await upstream.close();
    }
  }, 15_000);

  it('passes on the header’s client for HTTP/2 requests on a connection that chose h2', async () => {
    const upstream = await recordingUpstream();
    const proxy = await startTlsProxy(upstream);
    try {
      const raw = connect({ port: proxy.ports.https, host: '127.0.0.1' });
      await once(raw, 'connect');
      raw.write(v1('TCP4', '203.0.113.70', '127.0.0.1'));
      const secure = tlsConnect({ socket: raw, servername: 'edge.example.test', ca: ca.cert, ALPNProtocols: ['h2'] });
      await once(secure, 'secureConnect');
      expect(secure.alpnProtocol).toBe('h2');
      const session = http2Connect('https://edge.example.test', { createConnection: () => secure });
      session.on('error', () => {});
      try {
        for (const path of ['/h2-first', '/h2-second']) {
          const stream = session.request({ ':path': path });
          let body = '';
          stream.setEncoding('utf8');
          stream.on('data', (chunk: string) => (body += chunk));
          const [headers] = (await once(stream, 'response')) as [Record<string, unknown>];
          await once(stream, 'end');
          expect(headers[':status']).toBe(200);
          expect(body).toBe(`answered ${path}`);
          expect(upstream.seen.find((s) => s.url === path)?.headers['x-forwarded-for']).toBe('203.0.113.70');
        }
      } finally {
        session.destroy();
      }
    } finally {
      await proxy.shutdown();
      await upstream.close();
    }
  }, 15_000);
});

/**
 * A transport for a TLS client over `raw` whose first write (the ClientHello) goes out in one write with `header`,
 * so the listener reads TLS bytes in the same chunk as the header and must hand them on.
 */
function headerFirst(raw: Socket, header: Buffer): Duplex {
  let first = true;
  const transport = new Duplex({
    write(chunk: Buffer, _encoding, callback) {
      raw.write(first ? Buffer.concat([header, chunk]) : chunk, callback);
      first = false;
    },
    read() {
      raw.resume();
    },
    final(callback) {
      raw.end(callback);
    },
    destroy(err, callback) {
      raw.destroy();
      callback(err);
    },
  });
  raw.on('data', (chunk: Buffer) => {
    if (!transport.push(chunk)) raw.pause();
  });
  raw.on('end', () => transport.push(null));
  raw.on('close', () => transport.destroy());
  raw.on('error', (err) => transport.destroy(err));
  return transport;
}

describe('two worker threads', () => {
  it('pass on the client a v2 header names', async () => {
    const upstream = await recordingUpstream();
    const proxy = await startProxy([upstream.origin], { listen: proxiedListener(['127.0.0.0/8']) }, { workers: 2 });
    try {
      // Several connections, so both workers are likely to take some; each must read its own header.
      for (let i = 1; i <= 6; i++) {
        const seen = await throughHeader(proxy.port, upstream, v2(4, `198.51.100.${i}`, '127.0.0.1'), `/worker-${i}`);
        expect(seen.headers['x-forwarded-for']).toBe(`198.51.100.${i}`);
      }
      const before = refusals(proxy);
      expect((await exchange(proxy.port, httpRequest('/no-header'))).bytes.length).toBe(0);
      await until(() => refusals(proxy) === before + 1, 'the refusal counted across worker rows');
    } finally {
      await proxy.shutdown();
      await upstream.close();
    }
  }, 20_000);
});

/** Debian's HAProxy, or one on PATH; null when neither is installed. */
const HAPROXY = ['/usr/sbin', ...(process.env.PATH ?? '').split(delimiter)].map((d) => join(d, 'haproxy')).find((file) => existsSync(file)) ?? null;

describe.skipIf(HAPROXY === null)('a real HAProxy in front (skipped: haproxy is not installed; apt-get install haproxy)', () => {
  let dir: string;
  let upstream: Awaited<ReturnType<typeof recordingUpstream>>;
  let proxy: RunningProxy;
  let haproxy: ChildProcess;
  let haproxyLog = '';
  /** HAProxy's frontends: one sends PROXY v2 to Meridian, the other v1. */
  let v2Port: number;
  let v1Port: number;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meridian-haproxy-'));
    upstream = await recordingUpstream();
    proxy = await startProxy([upstream.origin], { listen: proxiedListener(['127.0.0.1/32']) });
    v2Port = await deadPort();
    v1Port = await deadPort();
    const config = [
      'global',
      '  maxconn 64',
      'defaults',
      '  mode tcp',
      '  timeout connect 2s',
      '  timeout client 5s',
      '  timeout server 5s',
      `frontend via_v2`,
      `  bind 127.0.0.1:${v2Port}`,
      '  default_backend meridian_v2',
      `frontend via_v1`,
      `  bind 127.0.0.1:${v1Port}`,
      '  default_backend meridian_v1',
      'backend meridian_v2',
      `  server m 127.0.0.1:${proxy.port} send-proxy-v2`,
      'backend meridian_v1',
      `  server m 127.0.0.1:${proxy.port} send-proxy`,
      '',
    ].join('\n');
    const file = join(dir, 'haproxy.cfg');
    await writeFile(file, config);
    haproxy = spawn(HAPROXY!, ['-f', file, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] });
    haproxy.stdout!.on('data', (chunk: Buffer) => (haproxyLog += chunk.toString()));
    haproxy.stderr!.on('data', (chunk: Buffer) => (haproxyLog += chunk.toString()));
    await until(
      async () => {
        if (haproxy.exitCode !== null) throw new Error(`haproxy exited with ${haproxy.exitCode}: ${haproxyLog}`);
        return (await accepts(v2Port)) && (await accepts(v1Port));
      },
      'haproxy to listen on both frontends',
      5_000,
      25,
    );
  }, 15_000);

  afterAll(async () => {
    if (haproxy?.pid !== undefined && haproxy.exitCode === null) {
      const exited = once(haproxy, 'exit');
      process.kill(haproxy.pid, 'SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3_000))]);
      if (haproxy.exitCode === null && haproxy.signalCode === null) process.kill(haproxy.pid, 'SIGKILL');
    }
    await proxy?.shutdown();
    await upstream?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it.each([
    ['send-proxy-v2', () => v2Port],
    ['send-proxy (v1)', () => v1Port],
  ])('with %s, a request reaches the upstream with the real client as X-Forwarded-For', async (mode, port) => {
    // The client connects from 127.0.0.2 and HAProxy from 127.0.0.1: only the header can carry 127.0.0.2 through.
    const path = `/via-haproxy-${mode.replace(/\W+/g, '-')}`;
    const req = request({ host: '127.0.0.1', port: port(), localAddress: '127.0.0.2', path, headers: { host: 'app.example.test' }, agent: false }).end();
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    let body = '';
    for await (const chunk of res) body += String(chunk);
    expect(res.statusCode, `${body}\n${haproxyLog}`).toBe(200);
    expect(body).toBe(`answered ${path}`);
    expect(upstream.seen.find((s) => s.url === path)?.headers['x-forwarded-for']).toBe('127.0.0.2');
  });
});

/** Whether a TCP connection to 127.0.0.1:port is accepted. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
