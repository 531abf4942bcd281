// HTTP/2 at the HTTPS listener, as a node:http2 client, the HTTP/1.1 upstream and the admin port see it: ALPN picks
// the protocol per connection, headers cross from HTTP/2 to HTTP/1.1 cleanly both ways, bodies stream both ways with
// backpressure, errors and failover behave as over HTTP/1.1, and the session limits hold against abusive clients.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { get as httpsGet, type RequestOptions } from 'node:https';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { deadPort, metricValue, startProxy, startUpstream, until } from './support/harness.ts';
import type { Overrides, ProxyOptions, RunningProxy, Upstream } from './support/harness.ts';
import { makeCa, makeCertificate } from './support/certs.ts';
import { H2_SITE, h2Collect, h2Connect, h2Open, h2Request, type H2Client, type H2Failure, type H2Reply } from './support/h2-client.ts';
import { MERIDIAN_VERSION } from '../src/version.ts';
import { LISTENER_STAT, listenerSlot } from '../src/observe/listener-stats.ts';

const MIB = 1024 * 1024;
const BIG = randomBytes(4 * MIB);
const BIG_HASH = sha256(BIG);

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

let dir: string;
let ca: string;
let certificate: { cert: string; key: string };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'meridian-h2-'));
  const authority = makeCa(dir);
  ca = authority.cert;
  const leaf = makeCertificate(dir, { names: [H2_SITE], ca: authority });
  certificate = { cert: leaf.certFile, key: leaf.keyFile };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

/** What the upstream saw of one request: its head, the body bytes so far, and how it ended. */
interface Seen {
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly rawNames: string[];
  bytes: number;
  hash: string | undefined;
  aborted: boolean;
}

/** The upstream's record: every request it saw, and how many bytes its flood answer has written so far. */
interface UpstreamLog {
  readonly seen: Seen[];
  floodWritten: number;
  floodClosed: boolean;
}

const FLOOD_BYTES = 64 * MIB;

/** An Appwrite stand-in whose answer depends on the path; it records what it received in `record`. */
function upstreamHandler(record: UpstreamLog): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const rawNames = req.rawHeaders.filter((_, i) => i % 2 === 0);
    const seen: Seen = { url: req.url ?? '', headers: req.headers, rawNames, bytes: 0, hash: undefined, aborted: false };
    record.seen.push(seen);
    const hash = createHash('sha256');
    req.on('data', (chunk: Buffer) => {
      seen.bytes += chunk.length;
      hash.update(chunk);
    });
    // `close` before the body ended: the request was cut (Meridian aborted its attempt).
    req.on('close', () => {
      if (!req.complete) seen.aborted = true;
    });
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/flood') {
      flood(record, res);
      req.resume();
      return;
    }
    if (path === '/stall') return; // reads the body as it comes and never answers
    req.on('end', () => {
      seen.hash = hash.digest('hex');
      switch (path) {
        case '/hop-by-hop':
          res.writeHead(200, [
            'Content-Type', 'text/plain',
            'Connection', 'keep-alive, X-Upstream-Secret',
            'X-Upstream-Secret', 'leak',
            'Keep-Alive', 'timeout=5, max=1000',
            'Transfer-Encoding', 'chunked',
            'Proxy-Connection', 'keep-alive',
            'Upgrade', 'h2c',
            'X-End-To-End', 'kept',
          ]);
          res.end('hop-by-hop stopped');
          return;
        case '/download':
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG.length });
          // In pieces, so the answer streams rather than leaving in one write.
          for (let at = 0; at < BIG.length; at += 256 * 1024) res.write(BIG.subarray(at, at + 256 * 1024));
          res.end();
          return;
        default:
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ from: 'upstream', bytes: seen.bytes, hash: seen.hash }));
      }
    });
  };
}

/** Writes up to 64 MiB as long as `write` says there is room, waiting for `drain` when it does not. */
function flood(record: UpstreamLog, res: ServerResponse): void {
  const chunk = Buffer.alloc(64 * 1024, 0x66);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': FLOOD_BYTES });
  res.on('close', () => (record.floodClosed = true));
  const pump = (): void => {
    while (record.floodWritten < FLOOD_BYTES && !res.destroyed) {
      record.floodWritten += chunk.length;
      if (!res.write(chunk)) {
        res.once('drain', pump);
        return;
      }
    }
    if (!res.destroyed) res.end();
  };
  pump();
}

interface World {
  readonly proxy: RunningProxy;
  readonly upstream: Upstream;
  readonly record: UpstreamLog;
  /** The HTTPS listener's port. */
  readonly port: number;
  /** Open an HTTP/2 session to the HTTPS listener; closed after the test. */
  client(): Promise<H2Client>;
}

interface WorldOptions {
  /** Added to the HTTPS listener's settings. */
  readonly https?: Record<string, unknown>;
  readonly overrides?: Overrides;
  readonly proxy?: ProxyOptions;
  /** The regions' endpoints, nearest first, given the recording upstream; by default that upstream alone. */
  readonly origins?: (upstream: Upstream) => string[];
}

/** One recording upstream behind a Meridian with a plain and an HTTPS listener. */
async function world(options: WorldOptions = {}): Promise<World> {
  const record: UpstreamLog = { seen: [], floodWritten: 0, floodClosed: false };
  const upstream = await startUpstream(upstreamHandler(record));
  cleanup.push(() => upstream.close());
  const origins = options.origins?.(upstream) ?? [upstream.origin];
  const proxy = await startProxy(
    origins,
    {
      listen: [
        { host: '127.0.0.1', port: 0 },
        { protocol: 'https', host: '127.0.0.1', port: 0, ...options.https },
      ],
      tls: { certificates: [certificate] },
      ...options.overrides,
    },
    options.proxy,
  );
  cleanup.push(() => proxy.shutdown());
  const port = proxy.ports.https;
  return {
    proxy,
    upstream,
    record,
    port,
    client: async () => {
      const client = await h2Connect(port, ca);
      cleanup.push(() => void client.session.destroy());
      return client;
    },
  };
}

/** The requests the upstream saw for `path`, in order. */
function seenAt(record: UpstreamLog, path: string): Seen[] {
  return record.seen.filter((s) => s.url.split('?')[0] === path);
}

/** How a stream ended, whether cleanly or not: its status and body if they came, and its reset code (0 for none). */
function settled(reply: Promise<H2Reply>): Promise<{ status: number | undefined; rstCode: number; body: string }> {
  return reply.then(
    (done) => ({ status: done.status, rstCode: 0, body: done.body.toString('utf8') }),
    (err: H2Failure) => ({ status: err.status, rstCode: err.rstCode, body: '' }),
  );
}

/** Meridian's own JSON error of `type`, as opposed to an upstream's answer with the same status. */
function isMeridianError(body: string, type: string): boolean {
  try {
    return (JSON.parse(body) as { type?: unknown }).type === type;
  } catch {
    return false;
  }
}

function jsonOf(body: Buffer): Record<string, unknown> {
  return JSON.parse(body.toString('utf8')) as Record<string, unknown>;
}

/** A GET over HTTPS offering only http/1.1 in ALPN: what came back, and the protocol the handshake chose. */
function http1Get(port: number, path: string): Promise<{ status: number; version: string; alpn: string | false | null; body: string }> {
  return new Promise((resolve, reject) => {
    // node passes ALPNProtocols on to the TLS socket, though https's request options do not list it.
    const options: RequestOptions & Pick<ConnectionOptions, 'ALPNProtocols'> = {
      host: '127.0.0.1',
      port,
      path,
      headers: { host: H2_SITE },
      ca,
      servername: H2_SITE,
      ALPNProtocols: ['http/1.1'],
      agent: false,
    };
    const req = httpsGet(options, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, version: res.httpVersion, alpn: (res.socket as TLSSocket).alpnProtocol, body }));
    });
    req.on('error', reject);
  });
}

describe('ALPN', () => {
  test('a client offering h2 gets HTTP/2 and one offering only http/1.1 gets HTTP/1.1 on the same port', async () => {
    const w = await world();
    const h2 = await w.client();
    expect(h2.session.alpnProtocol).toBe('h2');
    const reply = await h2Request(h2.session, { path: '/echo' });
    expect(reply.status).toBe(200);
    expect(seenAt(w.record, '/echo')).toHaveLength(1);

    const http1 = await http1Get(w.port, '/echo');
    expect(http1).toMatchObject({ status: 200, version: '1.1', alpn: 'http/1.1' });
    expect(JSON.parse(http1.body)).toMatchObject({ from: 'upstream' });
    expect(seenAt(w.record, '/echo')).toHaveLength(2);
  });

  test('with http2 turned off on the listener, a client that offers only h2 cannot negotiate it', async () => {
    const w = await world({ https: { http2: false } });
    const failure = await h2Connect(w.port, ca).then(
      (client) => {
        client.session.destroy();
        return null;
      },
      (err: Error & { code?: string }) => err,
    );
    // The server ends the handshake with a no_application_protocol alert (RFC 7301 §3.2).
    expect(failure?.code).toBe('ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
    expect(w.record.seen).toHaveLength(0);
    // The listener itself serves: HTTP/1.1 clients still get through.
    expect(await http1Get(w.port, '/echo')).toMatchObject({ status: 200, version: '1.1', alpn: 'http/1.1' });
  });
});

describe('headers', () => {
  test('the upstream gets Host from :authority, no pseudo-headers, https as the protocol, its own X-Forwarded-For and no hop-by-hop headers', async () => {
    const w = await world();
    const { session } = await w.client();
    const reply = await h2Request(session, {
      path: '/echo?x=1',
      headers: {
        ':authority': 'cloud.appwrite.test',
        // Forged forwarding headers, and the only hop-by-hop headers an HTTP/2 client may send at all.
        'x-forwarded-for': '203.0.113.9',
        'x-forwarded-proto': 'http',
        te: 'trailers',
        'proxy-authorization': 'Basic c2VjcmV0',
        'x-appwrite-project': 'p1',
        // Browsers split cookies into one field each over HTTP/2 (RFC 9113 §8.2.3); HTTP/1.1 wants them in one line.
        cookie: ['a_session=1', 'b_legacy=2'],
      },
    });
    expect(reply.status).toBe(200);
    const [seen] = seenAt(w.record, '/echo');
    expect(seen.url).toBe('/echo?x=1');
    expect(seen.headers.host).toBe('cloud.appwrite.test');
    expect(seen.rawNames.filter((n) => n.startsWith(':'))).toEqual([]);
    expect(seen.rawNames.filter((n) => n.toLowerCase() === 'host')).toHaveLength(1);
    expect(seen.headers['x-forwarded-proto']).toBe('https');
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers.te).toBeUndefined();
    expect(seen.headers['proxy-authorization']).toBeUndefined();
    expect(seen.headers['x-appwrite-project']).toBe('p1');
    expect(seen.rawNames.filter((n) => n.toLowerCase() === 'cookie')).toHaveLength(1);
    expect(seen.headers.cookie).toBe('a_session=1; b_legacy=2');
  });

  test('connection-scoped headers of the upstream answer never reach the HTTP/2 client, and the answer arrives whole', async () => {
    const w = await world();
    const { session } = await w.client();
    const reply = await h2Request(session, { path: '/hop-by-hop' });
    expect(reply.status).toBe(200);
    expect(reply.body.toString()).toBe('hop-by-hop stopped');
    for (const name of ['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade', 'x-upstream-secret']) {
      expect(reply.headers[name], name).toBeUndefined();
    }
    expect(reply.headers['x-end-to-end']).toBe('kept');
    // The session survived the answer: another request on it works.
    expect((await h2Request(session, { path: '/echo' })).status).toBe(200);
  });
});

describe('streaming', () => {
  test('a 4 MiB upload streams to the upstream byte for byte, its first half arriving before the second is sent', async () => {
    const w = await world();
    const { session } = await w.client();
    const headers = { 'content-type': 'application/octet-stream', 'content-length': BIG.length };
    const stream = h2Open(session, { method: 'POST', path: '/upload', headers, withBody: true });
    const reply = h2Collect(stream);
    const half = BIG.length / 2;
    stream.write(BIG.subarray(0, half));
    // Meridian passes the body on as it arrives: the upstream holds the whole first half while the client holds the rest.
    await until(() => seenAt(w.record, '/upload')[0]?.bytes === half, 'the first half to reach the upstream', 5_000);
    stream.end(BIG.subarray(half));
    const done = await reply;
    expect(done.status).toBe(200);
    expect(jsonOf(done.body)).toMatchObject({ bytes: BIG.length, hash: BIG_HASH });
  });

  test('a 4 MiB answer streams back to the HTTP/2 client byte for byte', async () => {
    const w = await world();
    const { session } = await w.client();
    const reply = await h2Request(session, { path: '/download' });
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/octet-stream');
    expect(reply.body.length).toBe(BIG.length);
    expect(sha256(reply.body)).toBe(BIG_HASH);
  });

  test('a client that never reads a huge answer stalls the upstream instead of making Meridian hold it, and others are still served', async () => {
    const w = await world();
    const reader = await w.client();
    const stream = h2Open(reader.session, { path: '/flood' });
    // No `data` listener: the client takes nothing, so its flow-control window closes.
    await until(() => w.record.floodWritten > 0, 'the flood to start');
    let last = -1;
    let steadySince = performance.now();
    await until(
      () => {
        const now = performance.now();
        if (w.record.floodWritten !== last) {
          last = w.record.floodWritten;
          steadySince = now;
        }
        return now - steadySince > 500;
      },
      'the upstream writes to stall',
      10_000,
      20,
    );
    // Kernel buffers on both sockets and a few windows hold a few MiB at most: nowhere near the 64 MiB on offer.
    expect(w.record.floodWritten).toBeLessThan(16 * MIB);
    const other = await w.client();
    const started = performance.now();
    const reply = await h2Request(other.session, { path: '/echo' });
    expect(reply.status).toBe(200);
    expect(performance.now() - started).toBeLessThan(1_000);
    // Giving up on the stream ends the upstream's answer too.
    stream.close(constants.NGHTTP2_CANCEL);
    await until(() => w.record.floodClosed, 'the upstream answer to be cut', 5_000);
    expect(w.record.floodWritten).toBeLessThan(FLOOD_BYTES);
  });
});

describe('errors and failover', () => {
  test('with the only upstream dead, an HTTP/2 GET gets an Appwrite-shaped JSON gateway error', async () => {
    const dead = await deadPort();
    const w = await world({ origins: () => [`http://127.0.0.1:${dead}`] });
    const { session } = await w.client();
    const reply = await h2Request(session, { path: '/v1/databases' });
    expect([502, 503]).toContain(reply.status);
    expect(reply.headers['content-type']).toBe('application/json');
    const body = jsonOf(reply.body);
    expect(body).toMatchObject({ code: reply.status, version: MERIDIAN_VERSION });
    expect(typeof body.message).toBe('string');
    expect(typeof body.type).toBe('string');
  });

  test('with the first region dead, an HTTP/2 GET is served by the second', async () => {
    const dead = await deadPort();
    const w = await world({ origins: (upstream) => [`http://127.0.0.1:${dead}`, upstream.origin] });
    const { session } = await w.client();
    const reply = await h2Request(session, { path: '/v1/databases' });
    expect(reply.status).toBe(200);
    expect(jsonOf(reply.body)).toMatchObject({ from: 'upstream' });
    expect(seenAt(w.record, '/v1/databases')).toHaveLength(1);
  });
});

test('HTTP/2 requests are counted in meridian_requests_total like HTTP/1.1 ones', async () => {
  const w = await world();
  const sample = 'meridian_requests_total{region="local",zone="az-1",method="GET",code="2xx"}';
  const read = async (): Promise<number> => {
    const value = await metricValue(w.proxy.adminPort, sample);
    return Number.isNaN(value) ? 0 : value;
  };
  const before = await read();
  const { session } = await w.client();
  const N = 7;
  for (let i = 0; i < N; i++) expect((await h2Request(session, { path: `/echo?i=${i}` })).status).toBe(200);
  await until(async () => (await read()) >= before + N, `the count to grow by ${N}`, 5_000, 50);
  expect(await read()).toBe(before + N);
});

/**
 * CVE-2023-44487 from one client: streams opened in batches of 50 and reset with `code` as soon as their HEADERS have
 * left, until the session is closed (or 5,000 streams, or 3 s), while a bystander on another connection makes 20
 * sequential requests. Resolves once both are over.
 */
async function rapidReset(w: World, code: number): Promise<{ attacker: H2Client; opened: number; bystander: { session: ClientHttp2Session; statuses: number[]; ms: number } }> {
  const attacker = await w.client();
  const { session } = await w.client();
  let stop = false;
  const served = (async () => {
    const statuses: number[] = [];
    const started = performance.now();
    for (let i = 0; i < 20; i++) statuses.push((await h2Request(session, { path: `/echo?bystander=${i}` })).status);
    return { statuses, ms: performance.now() - started };
  })();
  const attack = (async () => {
    const started = performance.now();
    let opened = 0;
    const going = (): boolean => !stop && !attacker.session.closed && !attacker.session.destroyed && attacker.goaway === undefined;
    while (going() && opened < 5_000 && performance.now() - started < 3_000) {
      const batch: ClientHttp2Stream[] = [];
      try {
        for (let i = 0; i < 50; i++) {
          const stream = h2Open(attacker.session, { path: `/echo?attack=${opened++}` });
          stream.on('error', () => {});
          batch.push(stream);
        }
      } catch {
        break; // the session is going away
      }
      // A stream reset before its HEADERS left never reaches the server at all: let them go first.
      await new Promise((resolve) => setImmediate(resolve));
      for (const stream of batch) stream.close(code);
      await new Promise((resolve) => setImmediate(resolve));
    }
    return opened;
  })();
  try {
    await until(() => attacker.goaway !== undefined || attacker.session.destroyed, 'the attacker session to be closed', 5_000);
  } finally {
    stop = true;
  }
  const opened = await attack;
  return { attacker, opened, bystander: { session, ...(await served) } };
}

describe('session limits', () => {
  test('a client that opens and cancels streams without pause gets GOAWAY ENHANCE_YOUR_CALM while another client is served throughout', async () => {
    const w = await world();
    const { attacker, opened, bystander } = await rapidReset(w, constants.NGHTTP2_CANCEL);
    expect(attacker.goaway).toBe(constants.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(opened).toBeLessThan(5_000);
    expect(bystander.statuses).toEqual(Array(20).fill(200));
    expect(bystander.ms).toBeLessThan(5_000);
    // The bystander's session is untouched.
    expect((await h2Request(bystander.session, { path: '/echo' })).status).toBe(200);
  });

  // Every stream the client resets before its answer is complete counts, whatever the code: counting only CANCEL
  // would leave an attacker using NO_ERROR to nghttp2's own, five times looser limit (and INTERNAL_ERROR, not 11).
  test('a client that resets its streams with NO_ERROR instead of CANCEL is stopped the same way', async () => {
    const w = await world();
    const { attacker, opened, bystander } = await rapidReset(w, constants.NGHTTP2_NO_ERROR);
    expect(attacker.goaway).toBe(constants.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(opened).toBeLessThan(1_000);
    expect(bystander.statuses).toEqual(Array(20).fill(200));
  });

  test('Meridian advertises 100 concurrent streams per session, and maxHeaderBytes as the header list size', async () => {
    const w = await world();
    const { session } = await w.client();
    expect(session.remoteSettings.maxConcurrentStreams).toBe(100);
    expect(session.remoteSettings.maxHeaderListSize).toBe(16_384);
  });

  test('a header list larger than maxHeaderBytes is refused and the session keeps serving its other streams', async () => {
    const w = await world({ https: { maxHeaderBytes: 16_384 } });
    const { session } = await w.client();
    const outcome = await settled(h2Request(session, { path: '/huge', headers: { 'x-huge': 'a'.repeat(40_000) } }));
    // Refused by Meridian, with a reset stream or its own 431 (an upstream's 431 would mean the list went through).
    const refused = outcome.rstCode > 0 || (outcome.status === 431 && isMeridianError(outcome.body, 'meridian_headers_too_large'));
    expect(refused, JSON.stringify(outcome)).toBe(true);
    expect(seenAt(w.record, '/huge')).toHaveLength(0);
    expect((await h2Request(session, { path: '/echo' })).status).toBe(200);
  });

  test('an upload that stalls half-way is ended by the idle timeout, its upstream request aborted, and the session keeps serving', async () => {
    const w = await world({ overrides: { timeouts: { idle: '500ms' } } });
    const { session } = await w.client();
    const stream = h2Open(session, { method: 'POST', path: '/stall', headers: { 'content-length': 100_000 }, withBody: true });
    const outcome = settled(h2Collect(stream));
    stream.write(Buffer.alloc(50_000, 0x61));
    await until(() => seenAt(w.record, '/stall')[0]?.bytes === 50_000, 'the first half to reach the upstream');
    const stalledAt = performance.now();
    const ended = await Promise.race([outcome, new Promise<null>((resolve) => setTimeout(() => resolve(null), 3_000))]);
    expect(ended, 'the stalled stream ended within 3 s').not.toBeNull();
    expect(performance.now() - stalledAt).toBeGreaterThanOrEqual(400);
    expect(ended!.status === 408 || ended!.rstCode > 0, JSON.stringify(ended)).toBe(true);
    await until(() => seenAt(w.record, '/stall')[0].aborted, 'the upstream request to be aborted');
    expect((await h2Request(session, { path: '/echo' })).status).toBe(200);
  });
});

test('with two workers, HTTP/2 requests are served by each of them', async () => {
  const w = await world({ proxy: { workers: 2 } });
  const stats = w.proxy.meridian.runtime.listenerStats;
  // The HTTPS listener is the second one; each worker counts its own handshakes in its own row.
  const handshakes = (worker: number): number => stats.row(worker)[listenerSlot(1, LISTENER_STAT.tlsNew)];
  const statuses: number[] = [];
  // The kernel spreads connections over the workers; a few connections reach both.
  for (let i = 0; i < 40 && !(handshakes(0) > 0 && handshakes(1) > 0); i++) {
    const { session } = await w.client();
    const replies = await Promise.all([0, 1].map((j) => h2Request(session, { path: `/echo?c=${i}&r=${j}` })));
    statuses.push(...replies.map((r) => r.status));
  }
  expect(handshakes(0)).toBeGreaterThan(0);
  expect(handshakes(1)).toBeGreaterThan(0);
  expect(statuses).toEqual(Array(statuses.length).fill(200));
  expect(seenAt(w.record, '/echo')).toHaveLength(statuses.length);
  for (const seen of seenAt(w.record, '/echo')) expect(seen.headers['x-forwarded-proto']).toBe('https');
});
