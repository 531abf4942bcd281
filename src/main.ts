// Composition root: builds the data plane, health checking and the admin plane from one config, and wires them.
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MeridianConfig } from './config/types.ts';
import { loadConfigFile } from './config/load.ts';
import { ConfigError, type ConfigProblem } from './config/errors.ts';
import { restartRequired } from './config/restart-only.ts';
import { createGeoRouter } from './routing/geo-router.ts';
import { GeoLocator, DEFAULT_GEO_DATABASES } from './geo/locator.ts';
import { openGeoDatabase, type GeoDatabase } from './geo/database.ts';
import { UploadPins } from './proxy/upload-pins.ts';
import { UpstreamPools } from './proxy/pools.ts';
import { EndpointLoadTable } from './proxy/load.ts';
import { createDataPlane, Traffic, type DataPlane } from './proxy/plane.ts';
import { ProxyServer } from './proxy/server.ts';
import { HealthState } from './health/state.ts';
import { OutlierDetector } from './health/outlier.ts';
import { ActiveChecker } from './health/checker.ts';
import { healthChange } from './health/events.ts';
import { readiness, type Readiness } from './health/readiness.ts';
import { createAdminApp } from './admin/app.ts';
import { listenAdmin } from './admin/server.ts';
import { createProbeApp } from './admin/probe.ts';
import { startMetrics, type MetricsExporter } from './observe/metrics.ts';
import { startTrafficSummary, type TrafficSummarizer } from './observe/summary.ts';
import { startAccessLog, type LogDestination } from './observe/access-log.ts';

/**
 * A reload applies whole or not at all. `restartRequired` names the fields whose new value waits for a restart
 * (compared with the config the process started with), everything else is serving.
 */
export type ReloadResult =
  | { readonly ok: true; readonly version: number; readonly restartRequired: readonly string[] }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

/** What the admin plane and the observers may read and do; the data plane never sees it. */
export interface MeridianRuntime {
  readonly startedAt: number;
  readonly traffic: Traffic;
  readonly locator: GeoLocator;
  /** The snapshot requests are being served with now. */
  plane(): DataPlane;
  health(): HealthState;
  configVersion(): number;
  /** Fields of the loaded config that differ from the running listeners' and wait for a restart. */
  restartRequired(): readonly string[];
  ready(): Readiness;
  /**
   * Build-then-swap from the config file, one reload at a time; logged and counted in the reload metric. Never
   * rejects: a bad file, a bad geo database or any failure while building leaves the old config serving.
   */
  reload(): Promise<ReloadResult>;
  readonly metrics: MetricsExporter;
  readonly summary: TrafficSummarizer;
}

export interface Meridian {
  readonly proxyAddress: AddressInfo;
  readonly adminAddress: AddressInfo;
  /** The public readiness listener's address, or null when the config has no `probe` section. */
  readonly probeAddress: AddressInfo | null;
  readonly runtime: MeridianRuntime;
  /** README, Operations, Shutdown: readiness off, drain delay, stop accepting, wait for in-flight, end the rest. */
  shutdown(): Promise<void>;
}

/** One health world per endpoint list: state, passive detector and active checker, replaced when endpoints change. */
interface HealthParts {
  readonly state: HealthState;
  readonly outlier: OutlierDetector;
  readonly checker: ActiveChecker;
  readonly load: EndpointLoadTable;
}

export interface StartOptions {
  /** The file the config came from, so `POST /reload` and SIGHUP can read it again. */
  readonly configPath?: string;
  /** Where access-log lines go when `accessLog.mode` is on; default stdout, written asynchronously. */
  readonly accessLog?: LogDestination;
}

export async function startMeridian(initial: MeridianConfig, options: StartOptions = {}): Promise<Meridian> {
  const startedAt = Date.now();
  const traffic = new Traffic();
  const pools = new UpstreamPools();
  const locator = await GeoLocator.open(initial.geo.databases ?? DEFAULT_GEO_DATABASES, {
    cacheSize: initial.geo.cacheSize,
    onReload: ({ path, ok, error }) =>
      console.error(ok ? `meridian: geo database ${path} reloaded` : `meridian: geo database ${path} rejected, the previous one keeps serving: ${error?.message}`),
  });
  locator.watch();
  const { ttl, maxEntries } = initial.routing.uploadPinning;
  const uploadPins = new UploadPins(ttl, maxEntries);

  let config = initial;
  let version = 1;
  let health = buildHealth(config);
  const planeFor = (forConfig: MeridianConfig, world: HealthParts): DataPlane =>
    createDataPlane(forConfig, createGeoRouter(forConfig, world.state.snapshot), { pools, traffic, locator, uploadPins, load: world.load, outcomes: world.outlier });
  const snapshot = (): DataPlane => planeFor(config, health);
  const proxy = new ProxyServer(snapshot());
  health.checker.start();

  /** A health world that starts checking only once `checker.start()` is called, so a reload can build it unused. */
  function buildHealth(forConfig: MeridianConfig): HealthParts {
    const { endpoints } = forConfig.topology;
    const state = new HealthState(endpoints.length, forConfig.health);
    // Health changes are rare; each builds a new router (and decision memo) and swaps the snapshot.
    state.onChange((change) => {
      if (health?.state !== state) return;
      proxy.plane = snapshot();
      if (healthChange.hasSubscribers) healthChange.publish({ change, endpoint: endpoints[change.index] });
    });
    const outlier = new OutlierDetector(state, endpoints.length, forConfig.outlierDetection);
    const checker = new ActiveChecker(endpoints, state, forConfig.health);
    return { state, outlier, checker, load: new EndpointLoadTable(endpoints.length) };
  }

  /**
   * One reload: everything the new config needs is built first (config, geo databases, caches, health world,
   * snapshot), with no await between the last build step and the swap, so nothing can change or observe it halfway.
   */
  async function applyReload(configPath: string): Promise<ReloadResult> {
    let next: MeridianConfig;
    try {
      next = await loadConfigFile(configPath);
    } catch (err) {
      if (err instanceof ConfigError) return { ok: false, problems: err.problems };
      throw err;
    }
    const opened = await openNewDatabases(locator, next);
    if (opened instanceof Array) return { ok: false, problems: opened };

    const databases = (next.geo.databases ?? DEFAULT_GEO_DATABASES).map((path) => opened.get(path) ?? locator.open.find((db) => db.info.path === path)!);
    const swapGeo = locator.prepare(databases, next.geo.cacheSize);
    const swapPins = uploadPins.prepare(next.routing.uploadPinning.ttl, next.routing.uploadPinning.maxEntries);
    const world = sameHealthWorld(config, next) ? health : buildHealth(next);
    let plane: DataPlane;
    try {
      plane = planeFor(next, world);
    } catch (err) {
      if (world !== health) world.checker.stop();
      try {
        // The pool registry may have moved to the new endpoint list: the old config takes it back.
        proxy.plane = snapshot();
      } catch (rollback) {
        console.error('meridian: restoring the old snapshot after a failed reload failed too:', rollback);
      }
      throw err;
    }

    // The commit: reference swaps, none of which can fail.
    const previous = health;
    swapGeo();
    swapPins();
    proxy.applyTimeouts(next.timeouts);
    config = next;
    health = world;
    proxy.plane = plane;
    version++;
    const result: ReloadResult = { ok: true, version, restartRequired: restartRequired(initial, next) };
    try {
      if (world !== previous) {
        world.checker.start();
        previous.checker.stop();
      }
      accessLog.reconfigure();
    } catch (err) {
      // The config is serving; say so, and what did not start with it.
      console.error(`meridian: config version ${version} is serving, but starting its health checks or access log failed:`, err);
    }
    return result;
  }

  // Reloads queue: SIGHUP and POST /reload arriving together must not build against each other's half-swapped state.
  let reloads: Promise<unknown> = Promise.resolve();
  const reload = (): Promise<ReloadResult> => {
    const done = reloads.then(async (): Promise<ReloadResult> => {
      let result: ReloadResult;
      try {
        result =
          options.configPath === undefined
            ? { ok: false, problems: [{ path: '', message: 'this instance has no config file to reload' }] }
            : await applyReload(options.configPath);
      } catch (err) {
        console.error('meridian: config reload failed while building, nothing was changed:', err);
        result = { ok: false, problems: [{ path: '', message: `the reload failed while building the new config, nothing was changed: ${(err as Error)?.message ?? String(err)}` }] };
      }
      runtime.metrics.recordReload(result.ok);
      console.error(describeReload(result));
      return result;
    });
    reloads = done.catch(() => undefined);
    return done;
  };

  const core: Omit<MeridianRuntime, 'metrics' | 'summary'> = {
    startedAt,
    traffic,
    locator,
    plane: () => proxy.plane,
    health: () => health.state,
    configVersion: () => version,
    restartRequired: () => restartRequired(initial, config),
    ready: () => readiness(config, health.state.snapshot, traffic.draining),
    reload,
  };
  // Observers subscribe before the proxy accepts, so the first request is counted.
  const runtime: MeridianRuntime = { ...core, metrics: startMetrics(core), summary: startTrafficSummary(core) };
  const accessLog = startAccessLog(core, options.accessLog);
  const stopObservers = async (): Promise<void> => {
    runtime.metrics.close();
    runtime.summary.close();
    await accessLog.close();
  };

  const proxyAddress = await proxy.listen(config.listen.host, config.listen.port);
  // The admin plane, and the public probe listener when configured; both stay up until shutdown ends, so
  // checkers see /readyz turn 503 for the whole drain.
  const controlServers: Server[] = [];
  let adminAddress: AddressInfo;
  let probeAddress: AddressInfo | null = null;
  try {
    const admin = await listenAdmin(createAdminApp(runtime), config.admin.host, config.admin.port);
    controlServers.push(admin.server);
    adminAddress = admin.address;
    if (config.probe !== null) {
      const probe = await listenAdmin(createProbeApp(runtime), config.probe.host, config.probe.port);
      controlServers.push(probe.server);
      probeAddress = probe.address;
    }
  } catch (err) {
    for (const server of controlServers) server.close();
    health.checker.stop();
    await proxy.close(0);
    locator.close();
    await stopObservers();
    throw err;
  }

  let stopping: Promise<void> | undefined;
  const shutdown = async (): Promise<void> => {
    traffic.draining = true;
    const { drainDelay, drainTimeout } = config.shutdown;
    if (drainDelay > 0) await sleep(drainDelay);
    await proxy.close(drainTimeout);
    health.checker.stop();
    await pools.close();
    locator.close();
    await stopObservers();
    await Promise.all(controlServers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  };
  return { proxyAddress, adminAddress, probeAddress, runtime, shutdown: () => (stopping ??= shutdown()) };
}

/** The endpoints and the settings fixed in a health world are unchanged, so its state (up, ejections, RTT) carries on. */
function sameHealthWorld(a: MeridianConfig, b: MeridianConfig): boolean {
  const keys = (c: MeridianConfig): string => c.topology.endpoints.map((e) => e.key).join('\n');
  return keys(a) === keys(b) && JSON.stringify(a.health) === JSON.stringify(b.health) && JSON.stringify(a.outlierDetection) === JSON.stringify(b.outlierDetection);
}

/**
 * Opens the files of a new `geo.databases` list that the locator does not have open (the watcher keeps those
 * current). Returns them by path, or a problem per file that is missing or fails its checks.
 */
async function openNewDatabases(locator: GeoLocator, next: MeridianConfig): Promise<Map<string, GeoDatabase> | ConfigProblem[]> {
  const open = new Set(locator.open.map((db) => db.info.path));
  const paths = next.geo.databases ?? DEFAULT_GEO_DATABASES;
  const fresh = [...new Set(paths)].filter((path) => !open.has(path));
  const results = await Promise.allSettled(fresh.map((path) => openGeoDatabase(path)));
  const problems = results.flatMap((result, i): ConfigProblem[] => {
    if (result.status === 'fulfilled') return [];
    const field = next.geo.databases === null ? 'geo.databases' : `geo.databases[${paths.indexOf(fresh[i])}]`;
    return [{ path: field, message: (result.reason as Error)?.message ?? String(result.reason) }];
  });
  if (problems.length > 0) return problems;
  return new Map(results.map((result, i) => [fresh[i], (result as PromiseFulfilledResult<GeoDatabase>).value]));
}

/** The log line of a reload, for SIGHUP and POST /reload alike. */
function describeReload(result: ReloadResult): string {
  if (!result.ok) {
    return `meridian: config reload rejected, the old config keeps serving:\n${result.problems.map((p) => `  ${p.path || '(root)'}: ${p.message}`).join('\n')}`;
  }
  const pending = result.restartRequired.length === 0 ? '' : `; these fields change only after a restart: ${result.restartRequired.join(', ')}`;
  return `meridian: config reloaded (version ${result.version})${pending}`;
}
