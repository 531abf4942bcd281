// How each upstream and each target under test is started: a child process on a free loopback port,
// with its own generated config under bench/.tmp/, returned only once it answers 200.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, hasCommand, httpStatus, startChild, stopChild, type Child } from './children.ts';
import { UPSTREAM_BODY } from './upstream.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/**
 * Meridian as the image runs it: the JavaScript build (`npm run build`, which the bench scripts run first), so the
 * figures, memory above all, are those of what ships rather than of the TypeScript sources run directly.
 */
export const MERIDIAN_CLI = join(ROOT, 'dist/cli/index.js');
const READY_TIMEOUT_MS = 20_000;

/**
 * The node flags the image starts Meridian with (the Dockerfile's ENTRYPOINT, between `node` and the script): the
 * bench runs what ships, garbage-collector settings included.
 */
export const IMAGE_NODE_FLAGS: readonly string[] = imageNodeFlags();

function imageNodeFlags(): string[] {
  const line = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').split('\n').find((l) => l.startsWith('ENTRYPOINT '));
  if (line === undefined) return [];
  const argv = JSON.parse(line.slice('ENTRYPOINT '.length)) as string[];
  const script = argv.indexOf('dist/cli/index.js');
  return argv[0] === 'node' && script > 0 ? argv.slice(1, script) : [];
}

/** The proxy under test runs alone on this CPU; upstream and load generator share the other. */
export const PROXY_CPU = 0;
export const LOAD_CPU = 1;

export const HAS_NGINX = hasCommand('nginx');
export const HAS_HAPROXY = hasCommand('haproxy');
export const HAS_CADDY = hasCommand('caddy');

export interface Server {
  readonly url: string;
  readonly child: Child;
  stop(): Promise<void>;
}

export interface Target {
  readonly name: string;
  /** `upstream` is what a proxy forwards to; `dir` is a scratch directory of its own. */
  start(upstream: Server, dir: string): Promise<Server>;
}

export const DIRECT: Target = {
  name: 'direct',
  // The upstream itself, so stopping this target must leave it running.
  start: async (upstream) => ({ url: upstream.url, child: upstream.child, stop: async () => {} }),
};

/**
 * Meridian's bench config: one region, one zone, the upstream at `upstreamUrl`, the proxy on `port`, the admin API on a
 * port of its own choosing (the CLI prints it), and `workers` when given (else the default, `auto`).
 */
export function meridianConfig(upstreamUrl: string, port: number, workers?: number): string {
  return [
    'self: { region: bench, zone: z1 }',
    ...(workers === undefined ? [] : [`workers: ${workers}`]),
    `listen: { host: 127.0.0.1, port: ${port} }`,
    'admin: { host: 127.0.0.1, port: 0 }',
    // The load generator sends X-Forwarded-For with a public address, so client-ip and geo do real work.
    'geo: { trustedProxies: [127.0.0.1/32] }',
    'regions:',
    '  bench:',
    '    location: [0, 0]',
    '    zones:',
    `      z1: { endpoints: ["${upstreamUrl}"] }`,
    'shutdown: { drainDelay: 0, drainTimeout: 2s }',
    '',
  ].join('\n');
}

export const MERIDIAN: Target = {
  name: 'Meridian',
  async start(upstream, dir) {
    const port = await freePort();
    const config = join(dir, 'meridian.yaml');
    writeFileSync(config, meridianConfig(upstream.url, port));
    return nodeServer('Meridian', port, [...IMAGE_NODE_FLAGS, MERIDIAN_CLI, 'start', '--config', config]);
  },
};

export const HTTP_PROXY: Target = {
  name: 'http-proxy',
  start: (upstream) => withPort((port) => nodeServer('http-proxy', port, [join(ROOT, 'bench/peers/http-proxy.ts'), String(port), upstream.url])),
};

export const FASTIFY_HTTP_PROXY: Target = {
  name: '@fastify/http-proxy',
  start: (upstream) =>
    withPort((port) => nodeServer('@fastify/http-proxy', port, [join(ROOT, 'bench/peers/fastify-http-proxy.ts'), String(port), upstream.url])),
};

/** The floor for a node:http + undici proxy on one core (bench/peers/minimal-dispatch.ts). */
export const MINIMAL_DISPATCH: Target = {
  name: 'minimal node:http+undici',
  start: (upstream) =>
    withPort((port) => nodeServer('minimal node:http+undici', port, [join(ROOT, 'bench/peers/minimal-dispatch.ts'), String(port), upstream.url])),
};

export const NGINX_PROXY: Target = {
  name: 'nginx, 1 worker',
  async start(upstream, dir) {
    const port = await freePort();
    const { port: upstreamPort } = new URL(upstream.url);
    // Request buffering off: stream uploads like the Node proxies do, instead of spooling them to disk.
    return nginx('nginx-proxy', port, join(dir, 'nginx-proxy'), [
      `upstream bench_upstream { server 127.0.0.1:${upstreamPort}; keepalive 64; keepalive_requests 1000000; }`,
      'server {',
      `  listen 127.0.0.1:${port};`,
      '  client_max_body_size 0;',
      '  location / {',
      '    proxy_pass http://bench_upstream;',
      '    proxy_http_version 1.1;',
      '    proxy_set_header Connection "";',
      '    proxy_request_buffering off;',
      '  }',
      '}',
    ]);
  },
};

export const HAPROXY: Target = {
  name: 'HAProxy, 1 thread',
  async start(upstream, dir) {
    const port = await freePort();
    const { port: upstreamPort } = new URL(upstream.url);
    const config = join(dir, 'haproxy.cfg');
    writeFileSync(
      config,
      [
        'global',
        '  nbthread 1',
        '  maxconn 4096',
        'defaults',
        '  mode http',
        '  timeout connect 5s',
        '  timeout client 65s',
        '  timeout server 65s',
        '  timeout http-keep-alive 65s',
        '  http-reuse always',
        'frontend bench',
        `  bind 127.0.0.1:${port}`,
        '  default_backend upstream',
        'backend upstream',
        `  server up1 127.0.0.1:${upstreamPort}`,
        '',
      ].join('\n'),
    );
    const child = startChild('haproxy', 'haproxy', ['-f', config, '-db'], { cpu: PROXY_CPU });
    return ready(child, port);
  },
};

export const CADDY: Target = {
  name: 'Caddy, 1 core',
  async start(upstream, dir) {
    const port = await freePort();
    const { port: upstreamPort } = new URL(upstream.url);
    mkdirSync(dir, { recursive: true });
    const config = join(dir, 'Caddyfile');
    // Caddy streams request bodies unless told to buffer them (this Debian release has no request_buffers
    // option, and its default is off); flush_interval -1 streams responses too. No admin API, no certificates.
    writeFileSync(
      config,
      [
        '{',
        '  admin off',
        '  auto_https off',
        '}',
        `http://127.0.0.1:${port} {`,
        `  reverse_proxy 127.0.0.1:${upstreamPort} {`,
        '    flush_interval -1',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    // GOMAXPROCS follows the one CPU taskset allows; set anyway so Go's scheduler never plans for more.
    const env = { ...process.env, GOMAXPROCS: '1', HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir };
    const child = startChild('caddy', 'caddy', ['run', '--config', config, '--adapter', 'caddyfile'], { cpu: PROXY_CPU, env });
    return ready(child, port);
  },
};

/** The fixed-response upstream for small requests: nginx `return 200` in one process, pinned with the load generator. */
export async function startNginxUpstream(dir: string): Promise<Server> {
  const port = await freePort();
  return nginx(
    'nginx-upstream',
    port,
    join(dir, 'nginx-upstream'),
    ['server {', `  listen 127.0.0.1:${port};`, '  default_type text/plain;', `  location / { return 200 "${UPSTREAM_BODY}"; }`, '}'],
    LOAD_CPU,
  );
}

/** The node:http upstream (bench/upstream.ts), which also drains request bodies. */
export function startNodeUpstream(): Promise<Server> {
  return withPort((port) => nodeServer('node upstream', port, [join(ROOT, 'bench/upstream.ts'), String(port)], LOAD_CPU));
}

/**
 * `BENCH_NODE_ARGS` (space-separated) go to the node processes under test, never to the upstream or the load
 * generator: `--cpu-prof --cpu-prof-dir=/tmp/prof` profiles them.
 */
const NODE_ARGS = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');

function nodeServer(name: string, port: number, args: string[], cpu = PROXY_CPU): Promise<Server> {
  const nodeArgs = cpu === PROXY_CPU ? [...NODE_ARGS, ...args] : args;
  return ready(startChild(name, process.execPath, nodeArgs, { cpu, cwd: ROOT }), port);
}

/**
 * The config of one nginx process (no master, so the PID we hold is the one doing the work and the one we kill),
 * logging to stderr, with its temp paths inside `prefix`; `logLines` replace `access_log off` where a check needs
 * the log. Returns the file's path.
 */
export function writeNginxConfig(prefix: string, serverBlock: readonly string[], logLines: readonly string[] = ['access_log off;']): string {
  mkdirSync(prefix, { recursive: true });
  const config = join(prefix, 'nginx.conf');
  writeFileSync(
    config,
    [
      'daemon off;',
      'master_process off;',
      'worker_processes 1;',
      `pid ${join(prefix, 'nginx.pid')};`,
      'error_log stderr error;',
      'events { worker_connections 8192; }',
      'http {',
      ...logLines.map((line) => `  ${line}`),
      '  keepalive_timeout 65s;',
      '  keepalive_requests 1000000;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${join(prefix, kind)};`),
      ...serverBlock.map((line) => `  ${line}`),
      '}',
      '',
    ].join('\n'),
  );
  return config;
}

function nginx(name: string, port: number, prefix: string, serverBlock: string[], cpu = PROXY_CPU): Promise<Server> {
  const config = writeNginxConfig(prefix, serverBlock);
  const child = startChild(name, 'nginx', ['-p', prefix, '-e', 'stderr', '-c', config], { cpu });
  return ready(child, port);
}

async function withPort(start: (port: number) => Promise<Server>): Promise<Server> {
  return start(await freePort());
}

/** Polls `GET /` until it answers 200; fails early, with the child's output, if the child exits. */
async function ready(child: Child, port: number): Promise<Server> {
  const url = `http://127.0.0.1:${port}`;
  const server: Server = { url, child, stop: () => stopChild(child) };
  let exited = false;
  void child.exited.then(() => (exited = true));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited) break;
    if ((await httpStatus(url)) === 200) return server;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await server.stop();
  throw new Error(`${child.name} did not answer 200 on ${url}${exited ? ' (it exited)' : ''}:\n${child.output().slice(-2_000)}`);
}
