// What the edge's TLS work shows on /metrics and /status: real clients make full, resumed and failed handshakes,
// HTTP/2 and HTTP/1.1 requests, and connections a PROXY protocol listener refuses, and every counter moves by exactly
// what they did; the expiry gauge is each certificate's notAfter; with two worker threads the counts are the process's.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as h2Connect, type ClientHttp2Session } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { makeCa, makeCertificate, type Ca, type MadeCertificate } from './support/certs.ts';
import { metricValue, parseRawResponse, rawExchange, send, startProxy, startUpstream, until, type ProxyOptions, type RunningProxy, type Upstream } from './support/harness.ts';

const DAY_MS = 86_400_000;
const SITE = 'edge.test';
const SOON = 'soon.test';

let dir: string;
let ca: Ca;
let site: MadeCertificate;
let soon: MadeCertificate;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'meridian-tls-metrics-'));
  ca = makeCa(dir);
  site = makeCertificate(dir, { names: [SITE], ca });
  soon = makeCertificate(dir, { names: [SOON], ca, days: 5 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function upstream(): Promise<Upstream> {
  const started = await startUpstream((req, res) => {
    req.resume();
    res.end(`served ${req.url}`);
  });
  cleanups.push(() => started.close());
  return started;
}

/**
 * A plain listener, an HTTPS one serving both certificates (SITE is the default) and a plain one that takes the
 * PROXY protocol only from a documentation range, so loopback is refused there.
 */
async function edge(options: ProxyOptions = {}): Promise<RunningProxy> {
  const proxy = await startProxy(
    [(await upstream()).origin],
    {
      listen: [
        { name: 'plain', host: '127.0.0.1', port: 0 },
        { protocol: 'https', host: '127.0.0.1', port: 0 },
        { name: 'lb', host: '127.0.0.1', port: 0, proxyProtocol: { trusted: ['192.0.2.0/24'] } },
      ],
      tls: { certificates: [{ cert: site.certFile, key: site.keyFile }, { cert: soon.certFile, key: soon.keyFile }] },
    },
    options,
  );
  cleanups.push(() => proxy.shutdown());
  return proxy;
}

interface TlsVisit {
  readonly reused: boolean;
  readonly status: number;
  /** The last session ticket the server issued (TLS 1.3 sends them after a full handshake), if any. */
  readonly session: Buffer | undefined;
}

/** One HTTP/1.1 request over a fresh TLS connection, resuming `session` when given; resolves once the server closed. */
async function tlsVisit(port: number, session?: Buffer): Promise<TlsVisit> {
  const options: ConnectionOptions = { host: '127.0.0.1', port, servername: SITE, ca: ca.cert, ALPNProtocols: ['http/1.1'], session };
  const socket = tlsConnect(options);
  let issued: Buffer | undefined;
  socket.on('session', (ticket: Buffer) => (issued = ticket));
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(socket, 'secureConnect');
  const reused = socket.isSessionReused();
  // Not end(): a close_notify before the answer would end the exchange; `Connection: close` has the server end it.
  socket.write(`GET /visit HTTP/1.1\r\nHost: ${SITE}\r\nConnection: close\r\n\r\n`);
  await once(socket, 'close');
  return { reused, status: parseRawResponse(Buffer.concat(chunks)).status, session: issued };
}

/** A client that offers only TLS 1.0 and 1.1 (which Meridian refuses); resolves with the client's error code. */
async function oldTlsClient(port: number): Promise<string | undefined> {
  const socket = tlsConnect({ host: '127.0.0.1', port, servername: SITE, ca: ca.cert, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
  const [error] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
  socket.destroy();
  return error.code;
}

/** `count` requests on one HTTP/2 connection, one after another. */
async function h2Requests(port: number, count: number): Promise<number[]> {
  const session: ClientHttp2Session = h2Connect(`https://127.0.0.1:${port}`, { ca: ca.cert, servername: SITE });
  session.on('error', () => {});
  const statuses: number[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const stream = session.request({ ':path': `/h2/${i}`, ':authority': SITE });
      const [headers] = (await once(stream, 'response')) as [Record<string, unknown>];
      stream.resume();
      await once(stream, 'end');
      statuses.push(Number(headers[':status']));
    }
    if (session.alpnProtocol !== 'h2') throw new Error(`ALPN chose ${session.alpnProtocol}`);
  } finally {
    session.close();
  }
  return statuses;
}

interface Handshakes {
  readonly new: number;
  readonly resumed: number;
  readonly failed: number;
}

async function handshakes(adminPort: number, listener = 'https'): Promise<Handshakes> {
  const read = (result: string): Promise<number> => metricValue(adminPort, `meridian_tls_handshakes_total{listener="${listener}",result="${result}"}`);
  return { new: await read('new'), resumed: await read('resumed'), failed: await read('failed') };
}

/** Polls until the handshake counters read `expected`, and returns what they read last, for a clear failure. */
async function handshakesReach(adminPort: number, expected: Handshakes): Promise<Handshakes> {
  let last: Handshakes | undefined;
  await until(async () => {
    last = await handshakes(adminPort);
    return last.new === expected.new && last.resumed === expected.resumed && last.failed === expected.failed;
  }, `handshakes ${JSON.stringify(expected)}`).catch(() => undefined);
  return last!;
}

const byProtocol = (adminPort: number, protocol: string): Promise<number> => metricValue(adminPort, `meridian_http_requests_by_protocol_total{protocol="${protocol}"}`);

/** The certificate's own notAfter, in epoch seconds, read from the leaf (the first block of the chain file). */
function notAfterSeconds(made: MadeCertificate): number {
  return Date.parse(new X509Certificate(made.cert).validTo) / 1000;
}

describe('in-process', () => {
  test('a full, a resumed and two failed handshakes each move their counter by exactly one', async () => {
    const proxy = await edge();
    const https = proxy.ports.https;
    // Every series exists from the start, so increase() sees the first handshake of each kind.
    expect(await handshakes(proxy.adminPort)).toEqual({ new: 0, resumed: 0, failed: 0 });

    const first = await tlsVisit(https);
    expect({ reused: first.reused, status: first.status, ticket: first.session !== undefined }).toEqual({ reused: false, status: 200, ticket: true });
    expect(await handshakesReach(proxy.adminPort, { new: 1, resumed: 0, failed: 0 })).toEqual({ new: 1, resumed: 0, failed: 0 });

    const again = await tlsVisit(https, first.session);
    expect({ reused: again.reused, status: again.status }).toEqual({ reused: true, status: 200 });
    expect(await handshakesReach(proxy.adminPort, { new: 1, resumed: 1, failed: 0 })).toEqual({ new: 1, resumed: 1, failed: 0 });

    // The server answers a TLS 1.1 hello with a protocol_version alert.
    expect(await oldTlsClient(https)).toBe('ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
    expect(await handshakesReach(proxy.adminPort, { new: 1, resumed: 1, failed: 1 })).toEqual({ new: 1, resumed: 1, failed: 1 });

    // Plain HTTP to the HTTPS port: not a TLS record at all.
    await rawExchange(https, `GET / HTTP/1.1\r\nHost: ${SITE}\r\n\r\n`);
    expect(await handshakesReach(proxy.adminPort, { new: 1, resumed: 1, failed: 2 })).toEqual({ new: 1, resumed: 1, failed: 2 });

    // Only HTTPS listeners have handshake series; only the PROXY protocol listener has a refusal series.
    const text = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
    expect(text.match(/^meridian_tls_handshakes_total\{[^}]*\}/gm)?.sort()).toEqual([
      'meridian_tls_handshakes_total{listener="https",result="failed"}',
      'meridian_tls_handshakes_total{listener="https",result="new"}',
      'meridian_tls_handshakes_total{listener="https",result="resumed"}',
    ]);
    expect(text.match(/^meridian_proxy_protocol_refused_total\{[^}]*\}/gm)).toEqual(['meridian_proxy_protocol_refused_total{listener="lb"}']);
  });

  test('a connection to the PROXY protocol listener from outside its trusted peers counts as refused, once', async () => {
    const proxy = await edge();
    const refused = (): Promise<number> => metricValue(proxy.adminPort, 'meridian_proxy_protocol_refused_total{listener="lb"}');
    expect(await refused()).toBe(0);
    // Closed without a byte: loopback is not 192.0.2.0/24.
    expect((await rawExchange(proxy.ports.lb, `GET / HTTP/1.1\r\nHost: ${SITE}\r\n\r\n`)).length).toBe(0);
    await until(async () => (await refused()) === 1, 'one refusal');
    // The plain listener next to it refuses nothing, and no handshake was counted.
    expect((await send(proxy.ports.plain)).status).toBe(200);
    expect(await refused()).toBe(1);
    expect(await handshakes(proxy.adminPort)).toEqual({ new: 0, resumed: 0, failed: 0 });
  });

  test('the expiry gauge of each certificate is its notAfter in seconds, the one made for 5 days five days out', async () => {
    const proxy = await edge();
    const expiry = (label: string): Promise<number> => metricValue(proxy.adminPort, `meridian_tls_certificate_expiry_timestamp_seconds{certificate="${label}"}`);
    expect(await expiry(SITE)).toBe(notAfterSeconds(site));
    expect(await expiry(SOON)).toBe(notAfterSeconds(soon));
    expect(await expiry(SOON)).toBe(proxy.meridian.runtime.certificates()[1].notAfter / 1000);
    expect(Math.abs(notAfterSeconds(soon) - (Date.now() + 5 * DAY_MS) / 1000)).toBeLessThan(120);
  });

  test('requests count by protocol: HTTP/2 through ALPN as h2, HTTP/1.1 over TLS and plain HTTP as http/1.1', async () => {
    const proxy = await edge();
    expect([await byProtocol(proxy.adminPort, 'http/1.1'), await byProtocol(proxy.adminPort, 'h2')]).toEqual([0, 0]);

    expect(await h2Requests(proxy.ports.https, 3)).toEqual([200, 200, 200]);
    expect((await tlsVisit(proxy.ports.https)).status).toBe(200);
    expect((await tlsVisit(proxy.ports.https)).status).toBe(200);
    expect((await send(proxy.ports.plain)).status).toBe(200);

    await until(async () => (await byProtocol(proxy.adminPort, 'h2')) === 3 && (await byProtocol(proxy.adminPort, 'http/1.1')) === 3, 'three of each');
    // And no more after another scrape: each scrape adds only what came since the last.
    expect([await byProtocol(proxy.adminPort, 'http/1.1'), await byProtocol(proxy.adminPort, 'h2')]).toEqual([3, 3]);
    // The h2 connection and the two HTTP/1.1 ones: three full handshakes.
    expect(await handshakes(proxy.adminPort)).toEqual({ new: 3, resumed: 0, failed: 0 });
  });

  test('/status lists every listener and every certificate with its expiry, and never a key', async () => {
    const proxy = await edge();
    const reply = await send(proxy.adminPort, { path: '/status' });
    const body = reply.body.toString('utf8');
    const status = JSON.parse(body) as { listeners: unknown[]; certificates: { label: string; notAfter: string; daysLeft: number; fingerprint: string }[] };
    // The ports each listener is bound to, not the configured 0.
    expect(status.listeners).toEqual([
      { name: 'plain', protocol: 'http', host: '127.0.0.1', port: proxy.ports.plain, proxyProtocol: false, http2: false },
      { name: 'https', protocol: 'https', host: '127.0.0.1', port: proxy.ports.https, proxyProtocol: false, http2: true },
      { name: 'lb', protocol: 'http', host: '127.0.0.1', port: proxy.ports.lb, proxyProtocol: true, http2: false },
    ]);
    expect(proxy.ports.https).toBeGreaterThan(0);
    const [siteLeaf, soonLeaf] = [site, soon].map((made) => new X509Certificate(made.cert));
    expect(status.certificates).toEqual([
      {
        label: SITE,
        names: [SITE],
        notAfter: new Date(Date.parse(siteLeaf.validTo)).toISOString(),
        daysLeft: Math.floor((Date.parse(siteLeaf.validTo) - Date.now()) / DAY_MS),
        fingerprint: siteLeaf.fingerprint256,
        certFile: site.certFile,
      },
      {
        label: SOON,
        names: [SOON],
        notAfter: new Date(Date.parse(soonLeaf.validTo)).toISOString(),
        daysLeft: 4,
        fingerprint: soonLeaf.fingerprint256,
        certFile: soon.certFile,
      },
    ]);
    // Made for 5 days a moment ago: 4 whole days and most of a fifth left.
    expect(status.certificates[1].daysLeft).toBe(Math.floor((Date.parse(soonLeaf.validTo) - Date.now()) / DAY_MS));
    expect(body).not.toContain('PRIVATE KEY');
    expect(body).not.toContain(site.keyFile);
    expect(body).not.toContain('keyFile');
  });
});

/** Each worker's request count on /status. */
async function workerRequests(adminPort: number): Promise<number[]> {
  const status = JSON.parse((await send(adminPort, { path: '/status' })).body.toString('utf8')) as { workers: { threads: { requests: number }[] } };
  return status.workers.threads.map((t) => t.requests);
}

describe('with two worker threads', () => {
  test('the counters are the process totals, whichever worker took each connection', { timeout: 30_000 }, async () => {
    const proxy = await edge({ workers: 2 });
    const https = proxy.ports.https;
    // Fresh connections until both workers have served some: the kernel spreads new connections between them.
    let full = 0;
    let session: Buffer | undefined;
    while (full < 6 || (await workerRequests(proxy.adminPort)).some((n) => n === 0)) {
      if (full === 60) throw new Error(`60 connections and still one worker served none: ${await workerRequests(proxy.adminPort)}`);
      const visit = await tlsVisit(https);
      expect(visit.reused).toBe(false);
      session ??= visit.session;
      full++;
    }
    // The ticket key is shared, so a session from either worker resumes on either.
    const resumptions = 6;
    for (let i = 0; i < resumptions; i++) expect((await tlsVisit(https, session)).reused).toBe(true);
    for (let i = 0; i < 3; i++) await rawExchange(https, 'not TLS\r\n\r\n');
    const h2Sessions = 4;
    for (let i = 0; i < h2Sessions; i++) expect(await h2Requests(https, 2)).toEqual([200, 200]);
    for (let i = 0; i < 3; i++) await rawExchange(proxy.ports.lb, 'GET / HTTP/1.1\r\n\r\n');

    const expected = { new: full + h2Sessions, resumed: resumptions, failed: 3 };
    expect(await handshakesReach(proxy.adminPort, expected)).toEqual(expected);
    await until(async () => (await metricValue(proxy.adminPort, 'meridian_proxy_protocol_refused_total{listener="lb"}')) === 3, 'three refusals');
    await until(async () => (await byProtocol(proxy.adminPort, 'h2')) === 2 * h2Sessions, 'the h2 requests');
    await until(async () => (await byProtocol(proxy.adminPort, 'http/1.1')) === full + resumptions, 'the HTTP/1.1 requests');
    // What the workers served adds up to what the protocol counters show.
    expect((await workerRequests(proxy.adminPort)).reduce((a, b) => a + b, 0)).toBe(full + resumptions + 2 * h2Sessions);
    expect(await metricValue(proxy.adminPort, `meridian_tls_certificate_expiry_timestamp_seconds{certificate="${SOON}"}`)).toBe(notAfterSeconds(soon));
  });
});
