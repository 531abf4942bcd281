// Health and failover worlds: named backends on real sockets that a test kills and restarts on the same port, whose
// health-check answers it controls apart from their traffic, and a multi-zone, multi-region Meridian in front of them.
import { writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { compileConfig } from '../../src/config/compile.ts';
import { DEFAULT_HEALTH_PATH } from '../../src/config/defaults.ts';
import type { HealthState } from '../../src/health/state.ts';
import { startMeridian, type Meridian } from '../../src/main.ts';
import { closeServer, HEALTH_CHECK_AGENT, type Overrides } from './harness.ts';

/** How a backend answers health checks: always 200, always 503, or 200 and 503 in turn (starting with 200). */
export type ProbeAnswer = 'pass' | 'fail' | 'flap';

export interface Backend {
  /** `region/zone/n`, also the body of its default 200 answer and its first WebSocket message. */
  readonly name: string;
  /** Its http.Server, for tests that add upgrade handlers of their own. */
  readonly server: Server;
  readonly port: number;
  readonly origin: string;
  /** Requests other than health checks whose head reached it, WebSocket upgrades included. */
  readonly requests: number;
  readonly probes: number;
  /** performance.now() of every 200 it answered with its default handler, in order. */
  readonly servedAt: number[];
  probeAnswer: ProbeAnswer;
  /** How long health checks wait for their answer (0: at once); a region made slow, as its probes see it. */
  probeDelayMs: number;
  /** Traffic handler; the default answers 200 with the backend's name. */
  handler: (req: IncomingMessage, res: ServerResponse) => void;
  /** Crash: stop listening and cut every connection, WebSockets included. */
  kill(): Promise<void>;
  /** Listen again on the same port. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function startBackend(name: string, healthPath = DEFAULT_HEALTH_PATH): Promise<Backend> {
  let requests = 0;
  let probes = 0;
  const servedAt: number[] = [];
  const serveName = (_req: IncomingMessage, res: ServerResponse): void => {
    servedAt.push(performance.now());
    res.end(name);
  };
  const server = createServer((req, res) => {
    if (req.headers['user-agent'] === HEALTH_CHECK_AGENT && req.url === healthPath) {
      probes++;
      const pass = backend.probeAnswer === 'pass' || (backend.probeAnswer === 'flap' && probes % 2 === 1);
      if (backend.probeDelayMs === 0) return void res.writeHead(pass ? 200 : 503).end();
      const timer = setTimeout(() => res.writeHead(pass ? 200 : 503).end(), backend.probeDelayMs);
      res.on('close', () => clearTimeout(timer));
      return;
    }
    requests++;
    backend.handler(req, res);
  });
  // Tests cut connections on purpose; a reset must not become an uncaught error.
  server.on('clientError', (_err, socket) => socket.destroy());
  const wss = new WebSocketServer({ server });
  server.on('upgrade', () => requests++);
  wss.on('connection', (socket) => {
    socket.on('error', () => {});
    socket.send(name);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const kill = async (): Promise<void> => {
    for (const socket of wss.clients) socket.terminate();
    await closeServer(server);
  };
  const backend: Backend = {
    name,
    server,
    port,
    origin: `http://127.0.0.1:${port}`,
    get requests() {
      return requests;
    },
    get probes() {
      return probes;
    },
    servedAt,
    probeAnswer: 'pass',
    probeDelayMs: 0,
    handler: serveName,
    kill,
    restart: async () => {
      server.listen(port, '127.0.0.1');
      await once(server, 'listening');
    },
    close: async () => {
      await kill();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
  return backend;
}

/** Region name → [lat, lon], its zones (each a list of backend names: endpoints in that zone) and its `publicHost` if any. */
export type Layout = Record<
  string,
  { readonly location: readonly [number, number]; readonly zones: Record<string, readonly string[]>; readonly publicHost?: string }
>;

export interface World {
  readonly meridian: Meridian;
  readonly port: number;
  readonly adminPort: number;
  readonly backends: Record<string, Backend>;
  /** The endpoint index of a backend, for reading health state. */
  index(name: string): number;
  health(): HealthState;
  /** Routing would pick it: up by the active checks and not ejected. */
  usable(name: string): boolean;
  close(): Promise<void>;
}

/**
 * Backends for every name in the layout, and Meridian in `self` in front of them. Clients on loopback have no
 * location, so the local region comes first (local zone first), then the other regions by distance from it.
 * `overrides` are merged one level deep over the defaults (as the harness does).
 */
/** `workers`: the data plane on the test's thread by default, where its events can be observed. */
/** `configFile`: also written there as JSON, and Meridian started from it, so POST /reload reads it again. */
export async function startWorld(
  layout: Layout,
  self: { region: string; zone: string },
  overrides: Overrides = {},
  workers: number | 'auto' = 1,
  configFile?: string,
): Promise<World> {
  const names = Object.values(layout).flatMap((r) => Object.values(r.zones).flat());
  const healthPath = ((overrides.health as Record<string, unknown> | undefined)?.path as string | undefined) ?? DEFAULT_HEALTH_PATH;
  const started = await Promise.all(names.map((name) => startBackend(name, healthPath)));
  const backends = Object.fromEntries(started.map((b) => [b.name, b]));
  const regions = Object.fromEntries(
    Object.entries(layout).map(([region, { location, zones, publicHost }]) => [
      region,
      { location, ...(publicHost === undefined ? {} : { publicHost }), zones: Object.fromEntries(Object.entries(zones).map(([zone, members]) => [zone, { endpoints: members.map((n) => backends[n].origin) }])) },
    ]),
  );
  const base: Overrides = {
    self,
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    regions,
    shutdown: { drainDelay: 0 },
  };
  const raw: Record<string, unknown> = { ...base, workers };
  for (const [section, values] of Object.entries(overrides)) raw[section] = { ...base[section], ...values };
  const config = compileConfig(raw, {});
  let meridian: Meridian;
  try {
    if (configFile !== undefined) await writeFile(configFile, JSON.stringify(raw));
    meridian = await startMeridian(config, configFile === undefined ? {} : { configPath: configFile });
  } catch (err) {
    await Promise.all(started.map((b) => b.close()));
    throw err;
  }
  const index = (name: string): number => config.topology.endpoints.find((e) => e.origin === backends[name].origin)!.index;
  return {
    meridian,
    port: meridian.proxyAddress.port,
    adminPort: meridian.adminAddress.port,
    backends,
    index,
    health: () => meridian.runtime.health(),
    usable: (name) => meridian.runtime.health().snapshot.usable[index(name)] !== false,
    close: async () => {
      await meridian.shutdown();
      await Promise.all(started.map((b) => b.close()));
    },
  };
}
