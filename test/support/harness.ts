// Shared helpers for integration tests: real node:http upstreams and a real Meridian on port 0, raw sockets,
// and waiting for state by polling with a deadline instead of sleeping.
import { createServer, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import { compileConfig } from '../../src/config/compile.ts';
import { startMeridian, type Meridian, type StartOptions } from '../../src/main.ts';
import type { MeridianConfig } from '../../src/config/types.ts';

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** The user-agent of Meridian's active health checks (src/health/checker.ts). */
export const HEALTH_CHECK_AGENT = 'meridian-health-check';

/**
 * Answers an active health check with 200 and returns true, so test upstreams can leave probes out of what they
 * count and record: every Meridian a test starts probes every endpoint at once.
 */
export function answeredProbe(req: IncomingMessage, res: ServerResponse): boolean {
  if (req.headers['user-agent'] !== HEALTH_CHECK_AGENT) return false;
  req.resume();
  res.end('{"version":"test"}');
  return true;
}

/** A real node:http server on 127.0.0.1, port 0, that counts the requests it sees (health checks answered apart). */
export interface Upstream {
  readonly server: Server;
  readonly port: number;
  /** `http://127.0.0.1:PORT`, usable as an endpoint in a config. */
  readonly origin: string;
  /** Requests whose head reached this server, health checks not counted. */
  readonly requests: number;
  close(): Promise<void>;
}

export async function startUpstream(handler: Handler): Promise<Upstream> {
  let requests = 0;
  const server = createServer((req, res) => {
    if (answeredProbe(req, res)) return;
    requests++;
    handler(req, res);
  });
  // Tests destroy sockets on purpose; a reset must not become an uncaught error.
  server.on('clientError', (_err, socket) => socket.destroy());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    server,
    port,
    origin: `http://127.0.0.1:${port}`,
    get requests() {
      return requests;
    },
    close: () => closeServer(server),
  };
}

export function closeServer(server: Server): Promise<void> {
  if (!server.listening) return Promise.resolve();
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  return closed;
}

/** A loopback port with nothing listening on it: connecting is refused. */
export async function deadPort(): Promise<number> {
  const server = createNetServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Config sections a test may override; merged one level deep over the harness defaults. */
/** Config sections to override: an object is merged into the harness's own section, a list replaces it. */
export type Overrides = Record<string, Record<string, unknown> | readonly Record<string, unknown>[]>;

/**
 * Health settings for tests that are not about health: one probe per endpoint at boot and none after, so an
 * endpoint a test kills or refuses stays a candidate and the test sees the data plane's own failover.
 */
export const BOOT_PROBE_ONLY = { interval: '1h' } as const;

/**
 * A raw config whose candidates are the origins in the order given: the first is this instance's own zone
 * (`local/az-1`), each next one a region a little farther away (`fallback-1`, `fallback-2`, …). Client
 * addresses are loopback, so their location is unknown and regions are ordered by distance from `local`.
 * Health checks run at boot only (`BOOT_PROBE_ONLY`) unless the overrides set `health`.
 */
export function rawConfig(origins: readonly string[], overrides: Overrides = {}, workers: number | 'auto' = 1): Record<string, unknown> {
  const regions: Record<string, unknown> = {};
  origins.forEach((origin, i) => {
    const name = i === 0 ? 'local' : `fallback-${i}`;
    regions[name] = { location: [50.11, 8.68 + 5 * i], zones: { 'az-1': { endpoints: [origin] } } };
  });
  const base: Overrides = {
    self: { region: 'local', zone: 'az-1' },
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    regions,
    health: BOOT_PROBE_ONLY,
    shutdown: { drainDelay: 0 },
  };
  // By default the data plane runs on the test's own thread, where its events can be observed.
  const out: Record<string, unknown> = { ...base, workers };
  // A list (several listeners) replaces the section; an object is merged into it.
  for (const [section, values] of Object.entries(overrides)) out[section] = Array.isArray(values) ? values : { ...base[section], ...values };
  return out;
}

export interface RunningProxy {
  readonly meridian: Meridian;
  readonly config: MeridianConfig;
  readonly port: number;
  readonly adminPort: number;
  /** Each listener's port by its name (`http`, `https`, `redirect` by default). */
  readonly ports: Readonly<Record<string, number>>;
  shutdown(): Promise<void>;
}

/** How a test runs the data plane: on its own thread (the default, `workers: 1`) or in worker threads. */
export interface ProxyOptions {
  readonly workers?: number | 'auto';
  readonly start?: StartOptions;
}

/** Compile a config for the given endpoint origins (with an empty environment) and start Meridian on port 0. */
export async function startProxy(origins: readonly string[], overrides: Overrides = {}, options: ProxyOptions = {}): Promise<RunningProxy> {
  const config = compileConfig(rawConfig(origins, overrides, options.workers), {});
  const meridian = await startMeridian(config, options.start);
  return {
    meridian,
    config,
    port: meridian.proxyAddress.port,
    adminPort: meridian.adminAddress.port,
    ports: Object.fromEntries(meridian.listenerAddresses.map((l) => [l.name, l.port])),
    shutdown: () => meridian.shutdown(),
  };
}

export interface Reply {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly rawHeaders: string[];
  readonly body: Buffer;
}

export interface SendOptions {
  readonly method?: string;
  readonly path?: string;
  /** An object, or a flat `[name, value, …]` list to send headers exactly as written (repeats, case). */
  readonly headers?: OutgoingHttpHeaders | string[];
  readonly body?: string | Buffer;
}

/** One request on a fresh connection (no agent, so nothing lingers), the whole response buffered. */
export function send(port: number, options: SendOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path ?? '/', headers: options.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }),
        );
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

export function json(reply: Reply): Record<string, unknown> {
  return JSON.parse(reply.body.toString('utf8')) as Record<string, unknown>;
}

/** How a streamed response ended: `complete` only when the body ended cleanly. */
export interface BodyOutcome {
  readonly complete: boolean;
  readonly bytes: number;
  readonly body: Buffer;
  readonly error: Error | undefined;
}

export function readBody(res: IncomingMessage): Promise<BodyOutcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    let error: Error | undefined;
    let ended = false;
    res.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      bytes += chunk.length;
    });
    res.on('end', () => {
      ended = true;
    });
    res.on('error', (err) => {
      error = err;
    });
    res.on('close', () => resolve({ complete: ended && res.complete && error === undefined, bytes, body: Buffer.concat(chunks), error }));
  });
}

/** Write raw bytes on a fresh TCP connection and collect everything the server sends until it closes. */
export async function rawExchange(port: number, data: string | Buffer, deadlineMs = 5_000): Promise<Buffer> {
  const socket: Socket = connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(socket, 'connect');
  socket.write(data);
  const timer = setTimeout(() => socket.destroy(new Error(`no close from the server within ${deadlineMs} ms`)), deadlineMs);
  try {
    // A reset after the response was written still counts: we only care about what arrived.
    await new Promise<void>((resolve, reject) => {
      socket.on('close', () => resolve());
      socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? undefined : reject(err)));
    });
  } finally {
    clearTimeout(timer);
  }
  return Buffer.concat(chunks);
}

export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** Parse the first response out of raw bytes (enough for small, content-length framed answers). */
export function parseRawResponse(raw: Buffer): RawResponse {
  const text = raw.toString('latin1');
  const split = text.indexOf('\r\n\r\n');
  if (split < 0) throw new Error(`no complete response head in ${JSON.stringify(text.slice(0, 200))}`);
  const [statusLine, ...lines] = text.slice(0, split).split('\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (!match) throw new Error(`not a status line: ${JSON.stringify(statusLine)}`);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
  const rest = text.slice(split + 4);
  return { status: Number(match[1]), headers, body: length === undefined ? rest : rest.slice(0, length) };
}

/** Poll `check` until it returns a truthy value, or fail after `deadlineMs`. */
export async function until<T>(check: () => T | Promise<T>, what: string, deadlineMs = 5_000, intervalMs = 5): Promise<NonNullable<T>> {
  const deadline = performance.now() + deadlineMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (performance.now() > deadline) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** One sample's value on an admin port's /metrics, given as its exact line head (`name{label="v"}`); NaN when absent. */
export async function metricValue(adminPort: number, sample: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  const match = new RegExp(`^${sample.replace(/[{}"]/g, '\\$&')} (\\d+)`, 'm').exec(text);
  return match === null ? Number.NaN : Number(match[1]);
}
