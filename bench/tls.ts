// `npm run bench:tls`: Meridian's HTTPS listener against nginx with TLS, http-proxy on node:https and a direct node
// HTTP/2 server, on loopback in one run: keep-alive GETs, new connections per second, and HTTP/2 multiplexing.
// Prints the tables and rewrites the generated part of the "TLS" section of bench/RESULTS.md (see SCAN_HEADING).
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, freePort, hasCommand, runBench, runChild, startChild, stopChild, type Child } from './children.ts';
import { wrk, type LoadResult } from './load.ts';
import { describeEnvironment, environmentLines } from './machine.ts';
import * as t from './targets.ts';
import { TLS_CIPHERS } from '../src/listen/tls.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));
// A directory of its own under bench/.tmp/ (git-ignored), so it never removes another bench's files.
const TMP = join(BENCH_DIR, '.tmp', 'tls');
const RESULTS = join(BENCH_DIR, 'RESULTS.md');
const SECTION = '## TLS';
/**
 * The hand-written end of the section: bench/testssl.sh's summary, pasted from its output, and any notes after it.
 * A rerun replaces everything before this heading and keeps everything from it to the next section.
 */
const SCAN_HEADING = '### testssl.sh';

const DURATION_S = Number(process.env.BENCH_DURATION ?? 10);
const WARMUP_S = 2;
const CONNECTIONS = 50;
const H2_STREAMS = 10;
/** Concurrent `openssl s_time -new` processes; each runs one connection after another. */
const HANDSHAKE_CLIENTS = 16;
const SERVERNAME = 'bench.test';
/** As in bench/run.ts: a public address Meridian trusts from loopback, so its client-ip and geo phases do real work. */
const CLIENT_HEADERS = { 'x-forwarded-for': '81.2.69.142' };
/** Meridian ÷ nginx, new connections per core. */
const GOAL_HANDSHAKES = 0.6;
const READY_TIMEOUT_MS = 20_000;
/** A load tool may overrun its duration by this much (connection setup, teardown) before it is killed. */
const OVERRUN_MS = 20_000;
/**
 * Other work on a shared machine skews every figure. Before each window the bench waits for a second in which the
 * rest of the machine uses under QUIET_CORES; a window during which it used DISTURBED_CORES or more is measured once
 * more, keeping the less disturbed one. Waiting and repeating stop after PATIENCE_MS over the whole run, which keeps
 * the bench within about six minutes on a machine that never goes quiet.
 */
const QUIET_CORES = 0.25;
const DISTURBED_CORES = 0.3;
const MAX_ATTEMPTS = 2;
const PATIENCE_MS = 90_000;
let patienceLeftMs = PATIENCE_MS;
const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

interface Certificates {
  /** The throwaway CA, which the readiness probe trusts. */
  readonly caFile: string;
  /** The ECDSA P-256 leaf for bench.test followed by the CA's certificate. */
  readonly certFile: string;
  readonly keyFile: string;
}

interface TlsTarget {
  readonly name: string;
  start(upstream: t.Server, dir: string, certs: Certificates): Promise<TlsServer>;
}

interface TlsServer extends t.Server {
  /** Meridian's admin address, for its handshake counters. */
  readonly admin?: string;
}

/** One load tool's figures, whatever the tool: throughput, a latency summary, and anything that was not a 2xx. */
interface Result {
  readonly rps: number;
  readonly latency: string;
  readonly errors: number;
  /** What the tool reported about the connection: protocol, cipher, ALPN. */
  readonly session?: string;
}

interface Window {
  readonly result: Result;
  /** utime + stime of the target process over the window (every thread). */
  readonly cpuS: number | null;
  readonly wallS: number;
  /** CPU the rest of the machine used meanwhile, in cores (±0.1). */
  readonly otherCores: number;
  readonly attempts: number;
  /** Meridian's full and resumed handshakes over the window, when its build exports them. */
  readonly handshakes?: { readonly fresh: number; readonly resumed: number } | null;
}

interface Row {
  readonly name: string;
  readonly client: string;
  readonly window?: Window;
  readonly failure?: string;
}

async function main(): Promise<number> {
  if (!Number.isFinite(DURATION_S) || DURATION_S < 1 || DURATION_S > 15) throw new Error('BENCH_DURATION must be a number of seconds from 1 to 15');
  for (const tool of ['wrk', 'nginx', 'openssl', 'h2load']) if (!hasCommand(tool)) throw new Error(`${tool} is missing (see bench/RESULTS.md, TLS)`);
  rmSync(TMP, { recursive: true, force: true });
  mkdirSync(TMP, { recursive: true });
  const env = describeEnvironment();
  console.log(environmentLines(env).join('\n'));
  if (env.loadAtStart > 1) console.log('warning: the machine is busy before the run starts; expect noisy numbers');
  const startedAt = performance.now();
  const certs = makeCertificates(join(TMP, 'certs'));
  const upstream = await t.startNginxUpstream(TMP);
  let keepAlive: Row[];
  let handshakes: Row[];
  let h2: Row[];
  let resumption: string;
  try {
    resumption = await wrkResumption(upstream, certs);
    console.log(`wrk with Connection: close: ${resumption}`);
    const wrkLoad = { connections: CONNECTIONS, durationS: DURATION_S, cpu: t.LOAD_CPU, headers: CLIENT_HEADERS };
    const closing = { ...wrkLoad, headers: { ...CLIENT_HEADERS, connection: 'close' } };
    const wrkClient = `wrk -t1 -c${CONNECTIONS}`;

    keepAlive = [];
    for (const target of [MERIDIAN, nginxTarget(false), HTTP_PROXY_HTTPS, MERIDIAN_PLAIN]) {
      keepAlive.push(
        await measure(target, upstream, certs, wrkClient, async (url) => void (await wrk(url, { ...wrkLoad, durationS: WARMUP_S })), async (url) => fromWrk(await wrk(url, wrkLoad))),
      );
    }

    handshakes = [];
    // Both clients against one start of each target; a failure becomes a row, as in measure().
    for (const target of [MERIDIAN, nginxTarget(false)]) {
      let server: TlsServer | undefined;
      try {
        server = await startTarget(target, upstream, certs);
        const { url } = server;
        await wrk(url, { ...closing, durationS: WARMUP_S });
        handshakes.push(await measured(target.name, `${wrkClient}, Connection: close`, server, upstream, async () => fromWrk(await wrk(url, closing))));
        handshakes.push(await measured(target.name, `openssl s_time -new ×${HANDSHAKE_CLIENTS}`, server, upstream, () => sTime(url, DURATION_S)));
      } catch (err) {
        handshakes.push(failed(target.name, 'new connections', err));
      } finally {
        await server?.stop();
      }
    }

    h2 = [];
    const h2Client = `h2load -t1 -c${CONNECTIONS} -m${H2_STREAMS}`;
    for (const target of [MERIDIAN, nginxTarget(true), H2_DIRECT]) {
      h2.push(await measure(target, upstream, certs, h2Client, async (url) => void (await h2load(url, WARMUP_S)), (url) => h2load(url, DURATION_S)));
    }
  } finally {
    await upstream.stop();
  }

  const minutes = ((performance.now() - startedAt) / 60_000).toFixed(1);
  const section = [
    SECTION,
    '',
    INTRO,
    '',
    '- command: `npm run bench:tls` (bench/tls.ts)',
    ...environmentLines(env),
    `- more tools: ${[toolVersion('openssl', ['version'], /OpenSSL (\S+)/), toolVersion('h2load', ['--version'], /nghttp2\/(\S+)/)].join(', ')}`,
    `- load: ${WARMUP_S} s warm-up (discarded), then ${DURATION_S} s measured per target and client; the whole run took ${minutes} min`,
    `- wrk and session resumption: ${resumption}`,
    '',
    `### Keep-alive: small GETs over HTTPS/1.1, wrk -t1 -c${CONNECTIONS}`,
    '',
    ...table(keepAlive, 'req/s', MERIDIAN.name),
    '',
    `### New connections: one GET per TLS connection`,
    '',
    ...table(handshakes, 'conn/s', MERIDIAN.name),
    '',
    `### HTTP/2: small GETs, h2load -t1 -c${CONNECTIONS} -m${H2_STREAMS} (ALPN h2)`,
    '',
    ...table(h2, 'req/s', MERIDIAN.name),
    '',
    ...sessionLines([...keepAlive, ...h2]),
    '',
    '### Goals',
    '',
    ...goalLines(keepAlive, handshakes, h2),
    '',
  ].join('\n');
  console.log(`\n${section}`);
  writeResults(section);
  console.log(`wrote ${RESULTS}`);
  rmSync(TMP, { recursive: true, force: true });
  return [...keepAlive, ...handshakes, ...h2].some((r) => r.failure !== undefined) ? 1 : 0;
}

const INTRO = `\`npm run bench:tls\` (bench/tls.ts): TLS termination on loopback, in one run. Each target is one process pinned to
CPU 0 with taskset:

- Meridian: \`workers: 1\`, one HTTPS listener (ALPN h2 and http/1.1), the JavaScript build;
- nginx: one worker, \`ssl_protocols TLSv1.2 TLSv1.3\`, Meridian's TLS 1.2 cipher list, and node's TLS 1.3 suites in
  node's order with server preference, so every client negotiates the same suite from both; \`http2\` on its listener
  for the HTTP/2 table only;
- http-proxy on node:https (bench/peers/http-proxy-https.ts), with a keep-alive agent;
- for HTTP/2, a node:http2 server answering the 200-byte body itself (bench/peers/h2-direct.ts): no proxying, the
  ceiling for a node process.

The last keep-alive row is Meridian as bench/run.ts starts it (plain HTTP; \`auto\` workers, one on one CPU), so the
cost of TLS shows within the run. The proxies forward to bench/run.ts's nginx upstream over keep-alive HTTP/1.1;
the upstream and every load tool share CPU 1. One ECDSA P-256 certificate for bench.test, signed by a CA the bench
makes with openssl, serves everywhere; every request carries bench/run.ts's X-Forwarded-For. "CPU %" is the
target's utime + stime over the window in % of one core: near 100 means the target was the limit, well under it
means the client on CPU 1 was. A target has one core, so its req/s is its per-core rate when it is the limit; "per
CPU-s" (requests per CPU-second of the target) is the per-core figure either way, though a target that is not
saturated does fewer requests per wake-up and so looks somewhat less efficient than it would at saturation. "Other
work" is the CPU the rest of the machine used during the window, in cores (±0.1): windows with more than a few
tenths are noisy.

New connections: wrk with \`Connection: close\` opens a TCP and a TLS connection per request, but it resumes TLS
sessions with the latest ticket it holds (checked at the start of each run, below): a resumed handshake is TLS 1.3
PSK with a fresh X25519 exchange, no certificate and no signature. nginx sends a new ticket on every connection,
resumed ones included, so against nginx nearly every wrk connection resumes. Node sends tickets only after a full
handshake, so wrk alternates full and resumed handshakes against Meridian: the "full / resumed" column counts them
from Meridian's \`meridian_tls_handshakes_total\`. \`openssl s_time -new\` never resumes, so its rows are full
handshakes against both (a GET / HTTP/1.0 each, without SNI, so the default certificate). h2load runs for a
duration (-D) rather than a request count (-n), so every window is bounded in time; it reports a mean latency, not
percentiles.`;

/** A throwaway CA and a leaf for bench.test it signs, both ECDSA P-256, made with the openssl CLI. */
function makeCertificates(dir: string): Certificates {
  mkdirSync(dir, { recursive: true });
  const at = (name: string): string => join(dir, name);
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const p256Key = (file: string): void => openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file);
  p256Key(at('ca.key'));
  openssl('req', '-x509', '-new', '-key', at('ca.key'), '-subj', '/CN=Meridian bench CA', '-days', '2', '-out', at('ca.crt'));
  p256Key(at('leaf.key'));
  openssl('req', '-new', '-key', at('leaf.key'), '-subj', `/CN=${SERVERNAME}`, '-out', at('leaf.csr'));
  writeFileSync(at('leaf.ext'), `subjectAltName=DNS:${SERVERNAME}\nbasicConstraints=CA:FALSE\n`);
  const serial = `0x${randomBytes(16).toString('hex')}`;
  openssl('x509', '-req', '-in', at('leaf.csr'), '-CA', at('ca.crt'), '-CAkey', at('ca.key'), '-set_serial', serial, '-days', '2', '-extfile', at('leaf.ext'), '-out', at('leaf.crt'));
  // Servers send the chain: the leaf, then the CA that signed it.
  writeFileSync(at('chain.crt'), readFileSync(at('leaf.crt'), 'utf8') + readFileSync(at('ca.crt'), 'utf8'));
  return { caFile: at('ca.crt'), certFile: at('chain.crt'), keyFile: at('leaf.key') };
}

/** bench/targets.ts's Meridian config with `workers: 1`, its one plain listener swapped for an HTTPS one. */
function meridianTlsConfig(upstreamUrl: string, port: number, certs: Certificates): string {
  const base = t.meridianConfig(upstreamUrl, port, 1);
  const plain = `listen: { host: 127.0.0.1, port: ${port} }`;
  if (!base.includes(plain)) throw new Error(`bench/targets.ts meridianConfig no longer has the line "${plain}" that this bench replaces`);
  return base.replace(
    plain,
    [
      'listen:',
      `  - { protocol: https, host: 127.0.0.1, port: ${port}, http2: true }`,
      `tls: { certificates: [{ cert: ${JSON.stringify(certs.certFile)}, key: ${JSON.stringify(certs.keyFile)} }] }`,
    ].join('\n'),
  );
}

const MERIDIAN: TlsTarget = {
  name: 'Meridian',
  async start(upstream, dir, certs) {
    const port = await freePort();
    const config = join(dir, 'meridian.yaml');
    writeFileSync(config, meridianTlsConfig(upstream.url, port, certs));
    const child = startChild('Meridian', process.execPath, [t.MERIDIAN_CLI, 'start', '--config', config], { cwd: ROOT, cpu: t.PROXY_CPU });
    const server = await readyTls(child, port, certs);
    const admin = /admin on ([\d.]+):(\d+)/.exec(child.output());
    return { ...server, admin: admin ? `http://${admin[1]}:${admin[2]}` : undefined };
  },
};

/** nginx terminating TLS and proxying to the upstream over keep-alive HTTP/1.1; `http2` adds it to the listener. */
function nginxTarget(http2: boolean): TlsTarget {
  return {
    name: 'nginx, 1 worker',
    async start(upstream, dir, certs) {
      const port = await freePort();
      const { port: upstreamPort } = new URL(upstream.url);
      return startNginx(port, join(dir, 'nginx'), certs, [
        `upstream bench_upstream { server 127.0.0.1:${upstreamPort}; keepalive 64; keepalive_requests 1000000; }`,
        'server {',
        `  listen 127.0.0.1:${port} ssl${http2 ? ' http2' : ''};`,
        `  ssl_certificate ${certs.certFile};`,
        `  ssl_certificate_key ${certs.keyFile};`,
        '  ssl_protocols TLSv1.2 TLSv1.3;',
        `  ssl_ciphers ${TLS_CIPHERS};`,
        // Node's TLS 1.3 suites in node's order, chosen by the server as node does: each client then gets the same
        // suite from nginx as from Meridian (h2load would otherwise get AES-128 from nginx and AES-256 from node).
        '  ssl_prefer_server_ciphers on;',
        '  ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256;',
        '  location / {',
        '    proxy_pass http://bench_upstream;',
        '    proxy_http_version 1.1;',
        '    proxy_set_header Connection "";',
        '  }',
        '}',
      ]);
    },
  };
}

/** For reference: bench/run.ts's Meridian, plain HTTP, so the cost of TLS is measured in the same run. */
const MERIDIAN_PLAIN: TlsTarget = {
  name: 'Meridian, plain HTTP (reference)',
  start: (upstream, dir) => t.MERIDIAN.start(upstream, dir),
};

const HTTP_PROXY_HTTPS: TlsTarget = {
  name: 'http-proxy on node:https',
  async start(upstream, _dir, certs) {
    const port = await freePort();
    const args = [join(ROOT, 'bench/peers/http-proxy-https.ts'), String(port), upstream.url, certs.certFile, certs.keyFile];
    return readyTls(startChild('http-proxy on node:https', process.execPath, args, { cwd: ROOT, cpu: t.PROXY_CPU }), port, certs);
  },
};

const H2_DIRECT: TlsTarget = {
  name: 'node:http2 direct (no proxy)',
  async start(_upstream, _dir, certs) {
    const port = await freePort();
    const args = [join(ROOT, 'bench/peers/h2-direct.ts'), String(port), certs.certFile, certs.keyFile];
    return readyTls(startChild('node:http2 direct', process.execPath, args, { cwd: ROOT, cpu: t.PROXY_CPU }), port, certs);
  },
};

/** One nginx process with TLS, configured as bench/targets.ts configures its own. */
function startNginx(port: number, prefix: string, certs: Certificates, serverBlock: string[], logLines?: string[]): Promise<TlsServer> {
  const config = t.writeNginxConfig(prefix, serverBlock, logLines);
  return readyTls(startChild('nginx, TLS', 'nginx', ['-p', prefix, '-e', 'stderr', '-c', config], { cpu: t.PROXY_CPU }), port, certs);
}

/** Polls `GET /` over HTTPS, naming bench.test and trusting only the bench CA, until it answers 200. */
async function readyTls(child: Child, port: number, certs: Certificates): Promise<TlsServer> {
  const url = `https://127.0.0.1:${port}/`;
  const server: TlsServer = { url, child, stop: () => stopChild(child) };
  const ca = readFileSync(certs.caFile);
  let exited = false;
  void child.exited.then(() => (exited = true));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline && !exited) {
    last = await probeTls(port, ca);
    if (last === '200') return server;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await server.stop();
  throw new Error(`${child.name} did not answer 200 on ${url} (last: ${last})${exited ? ' (it exited)' : ''}:\n${child.output().slice(-2_000)}`);
}

function probeTls(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/', servername: SERVERNAME, ca, agent: false, timeout: 1_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(String(res.statusCode ?? 0)));
    });
    req.on('error', (err) => resolve(err.message));
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end();
  });
}

async function startTarget(target: TlsTarget, upstream: t.Server, certs: Certificates): Promise<TlsServer> {
  const dir = join(TMP, `${target.name.replace(/[^a-z0-9]+/gi, '-')}-${randomBytes(3).toString('hex')}`);
  mkdirSync(dir, { recursive: true });
  return target.start(upstream, dir, certs);
}

/** Start a target, warm it up, measure one window, stop it; a failure becomes a row rather than an abort. */
async function measure(
  target: TlsTarget,
  upstream: t.Server,
  certs: Certificates,
  client: string,
  warmup: (url: string) => Promise<void>,
  run: (url: string) => Promise<Result>,
): Promise<Row> {
  let server: TlsServer | undefined;
  try {
    server = await startTarget(target, upstream, certs);
    await warmup(server.url);
    const url = server.url;
    return await measured(target.name, client, server, upstream, () => run(url));
  } catch (err) {
    return failed(target.name, client, err);
  } finally {
    await server?.stop();
  }
}

/**
 * One window of `run` against a started target, after a quiet second, with the target's CPU and the rest of the
 * machine's; measured once more when other work disturbed it, while the run's patience lasts.
 */
async function measured(name: string, client: string, server: TlsServer, upstream: t.Server, run: () => Promise<Result>): Promise<Row> {
  process.stdout.write(`${name}, ${client} … `);
  let best: Window | undefined;
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    await waitForQuiet(server, upstream);
    const before = { usage: ourCpu(server, upstream), target: cpuSeconds(server.child), at: performance.now(), counts: await handshakeCounts(server) };
    const result = await run();
    const wallS = (performance.now() - before.at) / 1000;
    const after = { usage: ourCpu(server, upstream), target: cpuSeconds(server.child), counts: await handshakeCounts(server) };
    const otherCores = (after.usage.machine - before.usage.machine - (after.usage.ours - before.usage.ours)) / wallS;
    const cpuS = before.target !== null && after.target !== null ? after.target - before.target : null;
    const handshakes =
      before.counts && after.counts ? { fresh: after.counts.fresh - before.counts.fresh, resumed: after.counts.resumed - before.counts.resumed } : server.admin ? null : undefined;
    const window: Window = { result, cpuS, wallS, otherCores, attempts: attempt, handshakes };
    if (best === undefined || window.otherCores < best.otherCores) best = window;
    if (otherCores < DISTURBED_CORES || patienceLeftMs <= 0) break;
    patienceLeftMs -= wallS * 1000;
    process.stdout.write(`(other work used ${otherCores.toFixed(2)} cores, measuring again) `);
  }
  console.log(`${fmtInt(best!.result.rps)}/s, CPU ${best!.cpuS === null ? '–' : ((best!.cpuS * 100) / best!.wallS).toFixed(0)} %`);
  return { name, client, window: best };
}

function failed(name: string, client: string, err: unknown): Row {
  console.log(`${name}, ${client}: failed: ${(err as Error).message}`);
  return { name, client, failure: (err as Error).message.split('\n')[0] };
}

function fromWrk(r: LoadResult): Result {
  return { rps: r.rps, latency: `${fmtMs(r.p50Ms)} / ${fmtMs(r.p99Ms)}`, errors: r.errors };
}

/**
 * HANDSHAKE_CLIENTS `openssl s_time -new` processes at once, for `durationS`: each opens a connection, makes a full
 * handshake (s_time never resumes with -new), sends `GET / HTTP/1.0`, reads to the close, and starts over.
 */
async function sTime(url: string, durationS: number): Promise<Result> {
  const { port } = new URL(url);
  const args = ['s_time', '-connect', `127.0.0.1:${port}`, '-new', '-www', '/', '-time', String(durationS)];
  const started = performance.now();
  const outputs = await Promise.all(
    Array.from({ length: HANDSHAKE_CLIENTS }, () => runChild('openssl s_time', 'openssl', args, durationS * 1000 + OVERRUN_MS, { cpu: t.LOAD_CPU })),
  );
  const wallS = (performance.now() - started) / 1000;
  let connections = 0;
  let bytes = 0;
  for (const text of outputs) {
    const match = /^(\d+) connections in [\d.]+ real seconds, (\d+) bytes read per connection/m.exec(text);
    if (!match) throw new Error(`openssl s_time: no "connections in … real seconds" line in:\n${text.slice(-1_000)}`);
    connections += Number(match[1]);
    bytes += Number(match[2]);
  }
  // A connection that read no response is not a served request; s_time reports only the mean bytes per connection.
  const meanBytes = bytes / outputs.length;
  return { rps: connections / wallS, latency: '–', errors: meanBytes < 200 ? connections : 0 };
}

/** `h2load` for `durationS`: HTTP/2 over TLS (it refuses to fall back to HTTP/1.1 unless told to). */
async function h2load(url: string, durationS: number): Promise<Result> {
  const args = ['-t1', `-c${CONNECTIONS}`, `-m${H2_STREAMS}`, '-D', String(durationS)];
  for (const [name, value] of Object.entries(CLIENT_HEADERS)) args.push('-H', `${name}: ${value}`);
  args.push(url);
  const text = await runChild('h2load', 'h2load', args, durationS * 1000 + OVERRUN_MS, { cpu: t.LOAD_CPU });
  const rps = /^finished in [\d.]+m?s, ([\d.]+) req\/s/m.exec(text);
  const requests = /^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m.exec(text);
  const codes = /^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/m.exec(text);
  const mean = /^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\s/m.exec(text);
  const alpn = /^Application protocol: (\S+)/m.exec(text);
  if (!rps || !requests || !codes || !mean) throw new Error(`h2load: unexpected output:\n${text.slice(-1_500)}`);
  if (alpn?.[1] !== 'h2') throw new Error(`h2load: the server chose ${alpn?.[1] ?? 'no protocol'}, not h2`);
  const meanMs = Number(mean[1]) * (mean[2] === 'us' ? 0.001 : mean[2] === 's' ? 1000 : 1);
  const protocol = /^TLS Protocol: (\S+)/m.exec(text)?.[1];
  const cipher = /^Cipher: (\S+)/m.exec(text)?.[1];
  const key = /^Server Temp Key: (.+)$/m.exec(text)?.[1];
  return {
    rps: Number(rps[1]),
    latency: `mean ${fmtMs(meanMs)}`,
    errors: Number(requests[5]) + Number(requests[6]) + Number(requests[7]) + Number(codes[2]) + Number(codes[3]) + Number(codes[4]),
    session: [protocol, cipher, key, `ALPN ${alpn[1]}`].filter((s) => s !== undefined).join(', '),
  };
}

/**
 * Whether wrk resumes TLS sessions with `Connection: close`: a short run against an nginx that logs
 * `$ssl_session_reused` ("r" for a resumed session) for every request.
 */
async function wrkResumption(upstream: t.Server, certs: Certificates): Promise<string> {
  const port = await freePort();
  const prefix = join(TMP, 'nginx-resumption');
  const log = join(prefix, 'access.log');
  const { port: upstreamPort } = new URL(upstream.url);
  const server = await startNginx(
    port,
    prefix,
    certs,
    [
      'server {',
      `  listen 127.0.0.1:${port} ssl;`,
      `  ssl_certificate ${certs.certFile};`,
      `  ssl_certificate_key ${certs.keyFile};`,
      '  ssl_protocols TLSv1.2 TLSv1.3;',
      `  location / { proxy_pass http://127.0.0.1:${upstreamPort}; }`,
      '}',
    ],
    ['log_format reuse "$ssl_session_reused $ssl_protocol";', `access_log ${log} reuse;`],
  );
  try {
    writeFileSync(log, '');
    await wrk(server.url, { connections: 2, durationS: 1, cpu: t.LOAD_CPU, headers: { connection: 'close' } });
  } finally {
    await server.stop();
  }
  const lines = readFileSync(log, 'utf8').split('\n').filter((l) => l !== '');
  const resumed = lines.filter((l) => l.startsWith('r ')).length;
  const protocols = [...new Set(lines.map((l) => l.split(' ')[1]))].join(', ');
  const verdict = resumed > 0 ? 'wrk DOES resume sessions' : 'wrk does not resume sessions';
  return `${verdict}: in a 1 s check (2 connections, against nginx logging $ssl_session_reused) ${fmtInt(resumed)} of ${fmtInt(lines.length)} connections were resumed (${protocols || 'no requests'})`;
}

/** Meridian's `meridian_tls_handshakes_total` for its https listener, or null when its build does not export it. */
async function handshakeCounts(server: TlsServer): Promise<{ fresh: number; resumed: number } | null> {
  if (server.admin === undefined) return null;
  const text = await getText(`${server.admin}/metrics`);
  const count = (result: string): number | null => {
    const match = new RegExp(`^meridian_tls_handshakes_total\\{[^}]*result="${result}"[^}]*\\} (\\S+)`, 'm').exec(text);
    return match ? Number(match[1]) : null;
  };
  const [fresh, resumed] = [count('new'), count('resumed')];
  return fresh === null || resumed === null ? null : { fresh, resumed };
}

function getText(url: string): Promise<string> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { agent: false, timeout: 2_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    });
    req.on('error', () => resolve(''));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** The whole machine's busy CPU-seconds, and those of this script, the children it reaped, the target and upstream. */
function ourCpu(server: TlsServer, upstream: t.Server): { machine: number; ours: number } {
  const self = readFileSync('/proc/self/stat', 'utf8');
  // utime, stime, cutime, cstime: fields 14–17; the load tools are children this process has reaped by now.
  const own = self.slice(self.lastIndexOf(')') + 2).split(' ').slice(11, 15).reduce((sum, n) => sum + Number(n), 0) / CLOCK_TICKS;
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // Busy is user, nice, system, irq, softirq and steal: everything but idle and iowait.
  const busy = fields.slice(0, 8).reduce((sum, n, i) => (i === 3 || i === 4 ? sum : sum + n), 0) / CLOCK_TICKS;
  return { machine: busy, ours: own + (cpuSeconds(server.child) ?? 0) + (cpuSeconds(upstream.child) ?? 0) };
}

async function waitForQuiet(server: TlsServer, upstream: t.Server): Promise<void> {
  while (patienceLeftMs > 0) {
    const before = ourCpu(server, upstream);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const after = ourCpu(server, upstream);
    const other = after.machine - before.machine - (after.ours - before.ours);
    if (other < QUIET_CORES) return;
    patienceLeftMs -= 1_000;
    process.stdout.write(`(other work uses ${other.toFixed(2)} cores, waiting) `);
  }
}

/** One table: each row's throughput, CPU and efficiency, and Meridian's ratio to it, in throughput and per CPU-second. */
function table(rows: Row[], unit: string, base: string): string[] {
  const conn = unit === 'conn/s';
  const header = [
    'target',
    'client',
    unit,
    conn ? 'latency' : 'p50 / p99 ms (wrk), mean ms (h2load)',
    'CPU %',
    `${conn ? 'conn' : 'req'} per CPU-s`,
    `Meridian ÷ target, ${unit}`,
    'Meridian ÷ target, per CPU-s',
    ...(conn ? ['Meridian handshakes, full / resumed'] : []),
    'other work, cores',
    'windows',
    'errors',
  ];
  const lines = [`| ${header.join(' | ')} |`, `|---|---|${header.slice(2).map(() => '---:').join('|')}|`];
  for (const row of rows) {
    if (row.failure !== undefined || row.window === undefined) {
      lines.push(`| ${row.name} | ${row.client} | failed: ${(row.failure ?? 'not measured').replaceAll('|', '/')} |${' |'.repeat(header.length - 3)}`);
      continue;
    }
    const w = row.window;
    // The same client against Meridian, so each ratio compares one tool's windows.
    const meridian = rows.find((r) => r.name === base && r.client === row.client && r.window !== undefined)?.window;
    const over = (m: number | undefined, r: number | undefined): string => (m !== undefined && r !== undefined && r > 0 ? (m / r).toFixed(2) : '–');
    const cells = [
      row.name,
      row.client,
      fmtInt(w.result.rps),
      w.result.latency,
      w.cpuS === null ? '–' : ((w.cpuS * 100) / w.wallS).toFixed(0),
      fmtInt(perCpu(w)),
      over(meridian?.result.rps, w.result.rps),
      over(meridian && perCpu(meridian), perCpu(w)),
      ...(conn ? [w.handshakes ? `${fmtInt(w.handshakes.fresh)} / ${fmtInt(w.handshakes.resumed)}` : w.handshakes === null ? 'not exported' : '–'] : []),
      w.otherCores.toFixed(2),
      String(w.attempts),
      String(w.result.errors),
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines;
}

/** What each HTTP/2 client negotiated, from h2load. */
function sessionLines(rows: Row[]): string[] {
  const seen = rows.filter((r) => r.window?.result.session !== undefined).map((r) => `- ${r.name}, h2load: ${r.window!.result.session}`);
  return seen.length > 0 ? ['Negotiated (h2load):', '', ...seen] : [];
}

function goalLines(keepAlive: Row[], handshakes: Row[], h2: Row[]): string[] {
  const window = (rows: Row[], name: string, client?: string): Window | undefined =>
    rows.find((r) => r.name === name && (client === undefined || r.client.startsWith(client)) && r.window !== undefined)?.window;
  const ratio = (a: number | undefined, b: number | undefined): number | undefined => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
  const line = (label: string, value: number | undefined, goal?: number): string => {
    if (value === undefined) return `- ${label}: not measured`;
    return goal === undefined ? `- ${label}: ${value.toFixed(2)}` : `- ${label}: ${value.toFixed(2)} (goal ≥ ${goal}) ${value >= goal ? 'met' : 'MISSED'}`;
  };
  const nginx = 'nginx, 1 worker';
  const lines: string[] = [];
  for (const [client, label] of [
    ['wrk', 'wrk Connection: close (nginx resumes them all, Meridian every other one)'],
    ['openssl', 'openssl s_time -new, full handshakes'],
  ] as const) {
    const m = window(handshakes, MERIDIAN.name, client);
    const n = window(handshakes, nginx, client);
    lines.push(line(`Meridian ÷ nginx, new connections per CPU-second (per core), ${label}`, ratio(m && perCpu(m), n && perCpu(n)), GOAL_HANDSHAKES));
    lines.push(line(`Meridian ÷ nginx, new connections per second, ${label} (for reference)`, ratio(m?.result.rps, n?.result.rps)));
  }
  const m1 = window(keepAlive, MERIDIAN.name);
  lines.push(line('Meridian ÷ nginx, keep-alive HTTPS req/s (for reference)', ratio(m1?.result.rps, window(keepAlive, nginx)?.result.rps)));
  lines.push(line('Meridian ÷ http-proxy on node:https, keep-alive HTTPS req/s (for reference)', ratio(m1?.result.rps, window(keepAlive, HTTP_PROXY_HTTPS.name)?.result.rps)));
  const plain = window(keepAlive, MERIDIAN_PLAIN.name);
  lines.push(line('Meridian over TLS ÷ Meridian over plain HTTP, keep-alive req per CPU-s (for reference)', ratio(m1 && perCpu(m1), plain && perCpu(plain))));
  const m2 = window(h2, MERIDIAN.name);
  lines.push(line('Meridian ÷ nginx, HTTP/2 req/s (for reference)', ratio(m2?.result.rps, window(h2, nginx)?.result.rps)));
  lines.push(line('Meridian ÷ direct node:http2, HTTP/2 req/s (for reference)', ratio(m2?.result.rps, window(h2, H2_DIRECT.name)?.result.rps)));
  return lines;
}

function perCpu(w: Window): number | undefined {
  return w.cpuS !== null && w.cpuS > 0 ? (w.result.rps * w.wallS) / w.cpuS : undefined;
}

function fmtInt(n: number | undefined): string {
  return n === undefined || !Number.isFinite(n) ? '–' : Math.round(n).toLocaleString('en-US');
}

function fmtMs(ms: number): string {
  return ms.toFixed(2);
}

function toolVersion(name: string, args: string[], pattern: RegExp): string {
  const result = spawnSync(name, args, { encoding: 'utf8' });
  const match = pattern.exec(`${result.stdout}\n${result.stderr}`);
  return `${name} ${match ? match[1] : 'unknown version'}`;
}

/** Replace the generated part of the "TLS" section, or append the section; its hand-written end is kept. */
function writeResults(section: string): void {
  const current = existsSync(RESULTS) ? readFileSync(RESULTS, 'utf8') : '# Benchmark results\n';
  const start = current.indexOf(`\n${SECTION}\n`);
  if (start === -1) {
    writeFileSync(RESULTS, `${current.trimEnd()}\n\n${section.trimEnd()}\n`);
    return;
  }
  const rest = current.slice(start + 1);
  const next = rest.indexOf('\n## ', 1);
  const own = next === -1 ? rest : rest.slice(0, next + 1);
  const after = next === -1 ? '' : `\n${rest.slice(next + 1)}`;
  const scanAt = own.indexOf(`\n${SCAN_HEADING}`);
  const scan = scanAt === -1 ? '' : `\n${own.slice(scanAt + 1).trimEnd()}\n`;
  writeFileSync(RESULTS, `${current.slice(0, start).trimEnd()}\n\n${section.trimEnd()}\n${scan}${after}`);
}

runBench(main, TMP);
