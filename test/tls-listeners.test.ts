// Meridian's HTTPS listener end to end: certificates made at test time, real TLS clients (node:tls, node:https, undici,
// ws) and real upstreams. SNI choice, protocol versions and chains, the scheme the upstream hears, certificates
// swapped on disk or by a config reload, wss://, session tickets shared by worker threads, and handshake limits.
import { execFileSync } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { Agent as UndiciAgent, request as undiciRequest } from 'undici';
import { WebSocket } from 'ws';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi, type MockInstance } from 'vitest';
import { loadConfigFile } from '../src/config/load.ts';
import { startMeridian } from '../src/main.ts';
import { LISTENER_STAT } from '../src/observe/listener-stats.ts';
import type { StatusReport } from '../src/admin/status.ts';
import { corruptPem, makeCa, makeCertificate, type Ca, type MadeCertificate } from './support/certs.ts';
import { json, parseRawResponse, rawConfig, rawExchange, send, startProxy, startUpstream, until, type Overrides, type RawResponse, type Upstream } from './support/harness.ts';
import { startWebSocketUpstream } from './support/websocket-upstream.ts';

/** The name of the default certificate; most clients below ask for it by SNI. */
const SITE = 'default.test';

let dir: string;
let ca: Ca;
/** The three certificates of the SNI story; `fallback` is listed first, so it is the default. */
let fallback: MadeCertificate;
let api: MadeCertificate;
let apps: MadeCertificate;
let upstream: Upstream;
/** The headers of every request the upstream received, in order. */
let seen: IncomingHttpHeaders[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'meridian-tls-listeners-'));
  ca = makeCa(dir);
  fallback = makeCertificate(dir, { names: [SITE], ca, fileName: 'default' });
  api = makeCertificate(dir, { names: ['api.example.test'], ca, fileName: 'api' });
  apps = makeCertificate(dir, { names: ['*.apps.example.test'], ca, fileName: 'apps' });
  upstream = await startUpstream((req, res) => {
    seen.push(req.headers);
    req.resume();
    res.end('ok');
  });
});

afterAll(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Whatever a test started: proxies, Meridians, upstreams, agents, sockets. */
let cleanups: (() => unknown)[];
/** Reloads and refused certificates are logged on stderr; tests read the lines here. */
let log: MockInstance<typeof console.error>;

beforeEach(() => {
  seen = [];
  cleanups = [];
  log = vi.spyOn(console, 'error').mockImplementation(() => {});
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  vi.restoreAllMocks();
});

const pair = (made: MadeCertificate): { cert: string; key: string } => ({ cert: made.certFile, key: made.keyFile });
const HTTPS_LISTENER = { protocol: 'https', host: '127.0.0.1', port: 0 } as const;
const PLAIN_LISTENER = { host: '127.0.0.1', port: 0 } as const;
const fingerprintOf = (pem: string): string => new X509Certificate(pem).fingerprint256;

/** A Meridian in front of the recording upstream: one HTTPS listener (unless the overrides list others) with `certificates`. */
async function proxyWith(certificates: readonly MadeCertificate[], overrides: Overrides = {}, workers = 1) {
  const proxy = await startProxy([upstream.origin], { listen: [HTTPS_LISTENER], tls: { certificates: certificates.map(pair) }, ...overrides }, { workers });
  cleanups.push(() => proxy.shutdown());
  return proxy;
}

/** A fresh directory holding a copy of a certificate pair as site.crt and site.key, for tests that replace the files. */
function ownCopy(made: MadeCertificate): MadeCertificate {
  const own = mkdtempSync(join(dir, 'site-'));
  const certFile = join(own, 'site.crt');
  const keyFile = join(own, 'site.key');
  writeFileSync(certFile, made.cert);
  writeFileSync(keyFile, made.key);
  return { ...made, certFile, keyFile };
}

/** As certbot and lego do: the new text goes to a temporary file, which is then renamed over the old one. */
function replaceFile(file: string, text: string): void {
  const temporary = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(temporary, text);
  renameSync(temporary, file);
}

/**
 * A finished TLS handshake with 127.0.0.1. Without `servername` no SNI is sent (node sends none for an IP address).
 * Chains are not checked unless the options ask: the SNI tests look at which certificate came, not whether it fits.
 */
async function handshake(port: number, options: ConnectionOptions = {}): Promise<TLSSocket> {
  const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], ...options });
  cleanups.push(() => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  return socket;
}

/** The certificate a new connection is served: its common name and fingerprint. */
async function served(port: number, servername?: string): Promise<{ cn: string; fingerprint: string }> {
  const socket = await handshake(port, servername === undefined ? {} : { servername });
  const cert = socket.getPeerCertificate();
  socket.destroy();
  return { cn: String(cert.subject.CN), fingerprint: cert.fingerprint256 };
}

/** One HTTP/1.1 request on an open TLS socket, answered and closed by the server. */
async function requestOn(socket: TLSSocket): Promise<RawResponse> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  const closed = once(socket, 'close');
  socket.write(`GET / HTTP/1.1\r\nHost: ${SITE}\r\nConnection: close\r\n\r\n`);
  await closed;
  return parseRawResponse(Buffer.concat(chunks));
}

/** A GET through node:https with `agent`, and the certificate the connection it went on was served. */
function httpsGet(port: number, agent: HttpsAgent): Promise<{ status: number; reused: boolean; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/', agent, headers: { host: SITE } }, (res) => {
      const fingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, fingerprint }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The console.error lines so far, each call's arguments joined. */
const logLines = (): string[] => log.mock.calls.map((args) => args.map(String).join(' '));

describe('SNI', () => {
  test('each client gets the certificate for the name it sends: exact, then a one-label wildcard, else the first listed', async () => {
    const { ports } = await proxyWith([fallback, api, apps]);
    const cases: [string | undefined, string][] = [
      ['api.example.test', 'api.example.test'],
      ['x.apps.example.test', '*.apps.example.test'],
      // A wildcard stands in for exactly one label.
      ['a.b.apps.example.test', SITE],
      ['apps.example.test', SITE],
      ['unknown.test', SITE],
      // No SNI at all.
      [undefined, SITE],
    ];
    for (const [servername, cn] of cases) expect({ servername, cn: (await served(ports.https, servername)).cn }).toEqual({ servername, cn });
    // The exact and wildcard ones verify as those names against the CA.
    for (const servername of ['api.example.test', 'x.apps.example.test']) {
      const socket = await handshake(ports.https, { servername, ca: ca.cert, rejectUnauthorized: true });
      expect(socket.authorized).toBe(true);
      socket.destroy();
    }
  });
});

describe('protocol versions and the chain', () => {
  test('TLS 1.2 and TLS 1.3 clients connect and a client limited to TLS 1.1 is refused', async () => {
    const { ports } = await proxyWith([fallback]);
    for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
      const socket = await handshake(ports.https, { servername: SITE, ca: ca.cert, rejectUnauthorized: true, minVersion: version, maxVersion: version });
      expect(socket.getProtocol()).toBe(version);
      expect((await requestOn(socket)).status).toBe(200);
    }
    // Security level 0 so that the client itself is willing to offer TLS 1.1; the refusal must be the server's.
    const old = handshake(ports.https, { servername: SITE, minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
    await expect(old).rejects.toMatchObject({ code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' });
  });

  test('a cert file holding the full chain serves the intermediate, so a client trusting only the root verifies', async () => {
    const chainDir = mkdtempSync(join(dir, 'chain-'));
    const intermediate = makeIntermediate(chainDir, ca);
    // The cert file is the leaf followed by the intermediate; the root is in no file Meridian reads.
    const leaf = makeCertificate(chainDir, { names: ['chain.test'], ca: intermediate, fileName: 'leaf' });
    const { ports } = await proxyWith([leaf]);
    const socket = await handshake(ports.https, { servername: 'chain.test', ca: ca.cert, rejectUnauthorized: true });
    expect(socket.authorized).toBe(true);
    const cert = socket.getPeerCertificate(true);
    expect(cert.subject.CN).toBe('chain.test');
    expect(cert.issuerCertificate.subject.CN).toBe('Meridian Test Intermediate');
  });
});

/** An intermediate CA signed by `root`, in `dir`: a leaf it signs verifies against the root only with it in the chain. */
function makeIntermediate(where: string, root: Ca): Ca {
  const keyFile = join(where, 'intermediate.key');
  const certFile = join(where, 'intermediate.crt');
  const csrFile = join(where, 'intermediate.csr');
  const extFile = join(where, 'intermediate.ext');
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyFile);
  openssl('req', '-new', '-key', keyFile, '-subj', '/CN=Meridian Test Intermediate', '-out', csrFile);
  writeFileSync(extFile, 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n');
  const serial = `0x${randomBytes(8).toString('hex')}`;
  openssl('x509', '-req', '-in', csrFile, '-CA', root.certFile, '-CAkey', root.keyFile, '-set_serial', serial, '-days', '30', '-extfile', extFile, '-out', certFile);
  return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}

describe('the scheme the upstream hears', () => {
  test('X-Forwarded-Proto is https over the HTTPS listener whatever an untrusted client claims, and http over the plain one', async () => {
    const { ports } = await proxyWith([fallback], { listen: [PLAIN_LISTENER, HTTPS_LISTENER] });
    const dispatcher = new UndiciAgent({ connect: { ca: ca.cert, servername: SITE } });
    cleanups.push(() => dispatcher.close());
    const overTls = await undiciRequest(`https://127.0.0.1:${ports.https}/`, { dispatcher, headers: { host: SITE, 'x-forwarded-proto': 'http' } });
    expect(overTls.statusCode).toBe(200);
    await overTls.body.text();
    const plain = await send(ports.http, { headers: { host: SITE, 'x-forwarded-proto': 'https' } });
    expect(plain.status).toBe(200);
    expect(seen.map((headers) => headers['x-forwarded-proto'])).toEqual(['https', 'http']);
  });
});

describe('certificates replaced on disk', () => {
  test('a pair renamed over the old files serves new connections while a keep-alive connection from before goes on', async () => {
    const site = ownCopy(fallback);
    const { ports } = await proxyWith([site]);
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1, ca: ca.cert, servername: SITE });
    cleanups.push(() => agent.destroy());
    const before = await httpsGet(ports.https, agent);
    expect(before).toEqual({ status: 200, reused: false, fingerprint: fingerprintOf(fallback.cert) });

    const next = makeCertificate(dir, { names: [SITE], ca });
    replaceFile(site.certFile, next.cert);
    replaceFile(site.keyFile, next.key);
    const renewed = fingerprintOf(next.cert);
    // Clients with SNI and without both get the new one.
    const renewedFor = async (servername?: string): Promise<boolean> => (await served(ports.https, servername)).fingerprint === renewed;
    await until(async () => (await renewedFor(SITE)) && (await renewedFor()), 'new connections to get the new certificate');

    expect(await httpsGet(ports.https, agent)).toEqual({ status: 200, reused: true, fingerprint: fingerprintOf(fallback.cert) });
  });

  test('a corrupt cert file renamed in keeps the old certificate serving and is logged by name', async () => {
    const site = ownCopy(fallback);
    const { ports } = await proxyWith([site]);
    replaceFile(site.certFile, corruptPem(site.cert));
    await until(() => logLines().some((line) => line.includes(site.certFile) && line.includes('rejected')), 'the refusal of the corrupt cert file to be logged');
    expect((await served(ports.https, SITE)).fingerprint).toBe(fingerprintOf(fallback.cert));
    expect((await served(ports.https)).fingerprint).toBe(fingerprintOf(fallback.cert));
  });

  test('a key that does not belong to the certificate keeps the old pair serving and is logged by name', async () => {
    const site = ownCopy(fallback);
    const { ports } = await proxyWith([site]);
    replaceFile(site.keyFile, api.key);
    await until(() => logLines().some((line) => line.includes(site.keyFile) && line.includes('rejected')), 'the refusal of the mismatched key to be logged');
    expect((await served(ports.https, SITE)).fingerprint).toBe(fingerprintOf(fallback.cert));
    const socket = await handshake(ports.https, { servername: SITE, ca: ca.cert, rejectUnauthorized: true });
    expect((await requestOn(socket)).status).toBe(200);
  });
});

describe('certificates changed by a config reload', () => {
  /** A Meridian started from a config file with one HTTPS listener and `certificates`; `rewrite` changes the file. */
  async function fromConfigFile(certificates: { cert: string; key: string }[]) {
    const file = join(mkdtempSync(join(dir, 'config-')), 'meridian.json');
    const rewrite = (list: { cert: string; key: string }[]): void =>
      writeFileSync(file, JSON.stringify(rawConfig([upstream.origin], { listen: [HTTPS_LISTENER], tls: { certificates: list } })));
    rewrite(certificates);
    const meridian = await startMeridian(await loadConfigFile(file, {}), { configPath: file });
    cleanups.push(() => meridian.shutdown());
    const admin = meridian.adminAddress.port;
    return {
      port: meridian.listenerAddresses[0].port,
      rewrite,
      reload: () => send(admin, { method: 'POST', path: '/reload' }),
      status: async () => json(await send(admin, { path: '/status' })) as unknown as StatusReport,
    };
  }

  test('a reload naming a new pair serves it to new connections', async () => {
    const m = await fromConfigFile([pair(fallback)]);
    expect((await served(m.port, SITE)).fingerprint).toBe(fingerprintOf(fallback.cert));
    const next = makeCertificate(dir, { names: [SITE], ca });
    m.rewrite([pair(next)]);
    expect(json(await m.reload())).toMatchObject({ ok: true, version: 2 });
    await until(async () => (await served(m.port, SITE)).fingerprint === fingerprintOf(next.cert), 'new connections to get the reloaded certificate');
    expect((await served(m.port)).fingerprint).toBe(fingerprintOf(next.cert));
  });

  test('a reload naming a broken cert file is refused whole, naming tls.certificates[0], and the old pair keeps serving', async () => {
    const m = await fromConfigFile([pair(fallback)]);
    const broken = join(mkdtempSync(join(dir, 'broken-')), 'broken.crt');
    writeFileSync(broken, corruptPem(api.cert));
    m.rewrite([{ cert: broken, key: api.keyFile }]);
    const answer = await m.reload();
    expect(answer.status).toBe(400);
    const body = json(answer) as { ok: boolean; problems: { path: string; message: string }[] };
    expect(body.ok).toBe(false);
    expect(body.problems).toEqual([expect.objectContaining({ path: 'tls.certificates[0]', message: expect.stringContaining(broken) })]);
    expect((await m.status()).config.version).toBe(1);
    expect((await served(m.port, SITE)).fingerprint).toBe(fingerprintOf(fallback.cert));
    expect((await served(m.port, 'api.example.test')).fingerprint).toBe(fingerprintOf(fallback.cert));
  });
});

describe('WebSockets over TLS', () => {
  test('a wss:// client talks both ways through Meridian and the upstream hears x-forwarded-proto https', async () => {
    const ws = await startWebSocketUpstream();
    cleanups.push(() => ws.close());
    const proxy = await startProxy([ws.origin], { listen: [HTTPS_LISTENER], tls: { certificates: [pair(fallback)] } });
    cleanups.push(() => proxy.shutdown());
    // ws hands these on to tls.connect, servername included, though its types leave that one out.
    const options = { ca: ca.cert, servername: SITE, headers: { 'x-forwarded-proto': 'http' } };
    const client = new WebSocket(`wss://127.0.0.1:${proxy.ports.https}/v1/realtime?project=demo`, options);
    client.on('error', () => {});
    cleanups.push(() => client.terminate());
    await once(client, 'open');
    const echoed = once(client, 'message');
    client.send('over tls');
    const [data, isBinary] = (await echoed) as [Buffer, boolean];
    expect({ text: data.toString('utf8'), isBinary }).toEqual({ text: 'over tls', isBinary: false });
    expect(ws.handshakes).toHaveLength(1);
    expect(ws.handshakes[0].headers['x-forwarded-proto']).toBe('https');
  });
});

describe('session resumption', () => {
  test('with two workers, a session ticket from one connection resumes on every later connection, whichever worker takes it', async () => {
    const proxy = await proxyWith([fallback, api, apps], {}, 2);
    const port = proxy.ports.https;
    const status = async (): Promise<StatusReport> => json(await send(proxy.adminPort, { path: '/status' })) as unknown as StatusReport;
    // A name served from an SNI context rather than the listener's default one.
    const servername = 'api.example.test';

    const first = await handshake(port, { servername, ca: ca.cert, rejectUnauthorized: true });
    let ticket: Buffer | undefined;
    first.on('session', (session: Buffer) => (ticket = session));
    expect(first.isSessionReused()).toBe(false);
    // TLS 1.3 tickets come after the handshake; by the end of the exchange they are here.
    expect((await requestOn(first)).status).toBe(200);
    expect(ticket).toBeInstanceOf(Buffer);

    const requestsBefore = (await status()).workers.threads.map((t) => t.requests);
    const resumedBefore = proxy.meridian.runtime.listenerStats.total(0, LISTENER_STAT.tlsResumed);
    const COUNT = 20;
    const outcomes = await Promise.all(
      Array.from({ length: COUNT }, async () => {
        const socket = await handshake(port, { servername, ca: ca.cert, rejectUnauthorized: true, session: ticket });
        const reused = socket.isSessionReused();
        return { reused, status: (await requestOn(socket)).status };
      }),
    );
    expect(outcomes).toEqual(Array.from({ length: COUNT }, () => ({ reused: true, status: 200 })));

    const total = (requests: readonly number[]): number => requests.reduce((a, b) => a + b, 0);
    const after = await until(async () => {
      const threads = (await status()).workers.threads.map((t) => t.requests);
      return total(threads) >= total(requestsBefore) + COUNT ? threads : undefined;
    }, 'both workers to count the requests');
    expect(after).toHaveLength(2);
    // Each worker took some of the resumed connections: the ticket opened on both.
    after.forEach((requests, i) => expect(requests).toBeGreaterThan(requestsBefore[i]));
    expect(proxy.meridian.runtime.listenerStats.total(0, LISTENER_STAT.tlsResumed) - resumedBefore).toBe(COUNT);
  });
});

describe('handshake limits', () => {
  test('a client that connects to the HTTPS port and sends nothing is closed after timeouts.handshake', async () => {
    const proxy = await proxyWith([fallback], { timeouts: { handshake: '300ms' } });
    const socket = netConnect(proxy.ports.https, '127.0.0.1');
    cleanups.push(() => socket.destroy());
    socket.on('error', () => {});
    socket.resume();
    await once(socket, 'connect');
    const connected = performance.now();
    await until(() => socket.destroyed || socket.readableEnded, 'the silent connection to be closed', 3_000);
    const waited = performance.now() - connected;
    expect(waited).toBeGreaterThanOrEqual(250);
    expect(waited).toBeLessThan(2_000);
    await until(() => proxy.meridian.runtime.listenerStats.total(0, LISTENER_STAT.tlsFailed) === 1, 'the timed-out handshake to be counted as failed');
  });

  test('plain HTTP sent to the HTTPS port is closed without an answer and other clients are served on', async () => {
    const proxy = await proxyWith([fallback]);
    const raw = await rawExchange(proxy.ports.https, `GET / HTTP/1.1\r\nHost: ${SITE}\r\n\r\n`, 3_000);
    expect(raw.toString('latin1').startsWith('HTTP/')).toBe(false);
    expect(seen).toHaveLength(0);
    const socket = await handshake(proxy.ports.https, { servername: SITE, ca: ca.cert, rejectUnauthorized: true });
    expect((await requestOn(socket)).status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(proxy.meridian.runtime.listenerStats.total(0, LISTENER_STAT.tlsFailed)).toBe(1);
  });
});
