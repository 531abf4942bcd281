// Composition root: builds the data plane, health checking and the admin plane from one config, and wires them.
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MeridianConfig } from './config/types.ts';
import { loadConfigFile } from './config/load.ts';
import { ConfigError, type ConfigProblem } from './config/errors.ts';
import { createGeoRouter } from './routing/geo-router.ts';
import { GeoLocator, DEFAULT_GEO_DATABASES } from './geo/locator.ts';
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
import { startMetrics, type MetricsExporter } from './observe/metrics.ts';
import { startTrafficSummary, type TrafficSummarizer } from './observe/summary.ts';
import { startAccessLog, type LogDestination } from './observe/access-log.ts';

export type ReloadResult = { readonly ok: true; readonly version: number } | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

/** What the admin plane and the observers may read and do; the data plane never sees it. */
export interface MeridianRuntime {
  readonly startedAt: number;
  readonly traffic: Traffic;
  readonly locator: GeoLocator;
  /** The snapshot requests are being served with now. */
  plane(): DataPlane;
  health(): HealthState;
  configVersion(): number;
  ready(): Readiness;
  /** Validate-then-swap from the config file; a bad file changes nothing. */
  reload(): Promise<ReloadResult>;
  readonly metrics: MetricsExporter;
  readonly summary: TrafficSummarizer;
}

export interface Meridian {
  readonly proxyAddress: AddressInfo;
  readonly adminAddress: AddressInfo;
  readonly runtime: MeridianRuntime;
  /** DESIGN.md §7: readiness off, drain delay, stop accepting, wait for in-flight, end the rest. */
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
  const snapshot = (): DataPlane =>
    createDataPlane(config, createGeoRouter(config, health.state.snapshot), { pools, traffic, locator, uploadPins, load: health.load, outcomes: health.outlier });
  const proxy = new ProxyServer(snapshot());

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
    checker.start();
    return { state, outlier, checker, load: new EndpointLoadTable(endpoints.length) };
  }

  const core: Omit<MeridianRuntime, 'metrics' | 'summary'> = {
    startedAt,
    traffic,
    locator,
    plane: () => proxy.plane,
    health: () => health.state,
    configVersion: () => version,
    ready: () => readiness(config, health.state.snapshot, traffic.draining),
    reload: async () => {
      if (options.configPath === undefined) return { ok: false, problems: [{ path: '', message: 'this instance has no config file to reload' }] };
      let next: MeridianConfig;
      try {
        next = await loadConfigFile(options.configPath);
      } catch (err) {
        if (err instanceof ConfigError) return { ok: false, problems: err.problems };
        throw err;
      }
      const sameEndpoints = next.topology.endpoints.map((e) => e.key).join() === config.topology.endpoints.map((e) => e.key).join();
      config = next;
      if (!sameEndpoints) {
        const old = health;
        health = buildHealth(config);
        old.checker.stop();
      }
      proxy.plane = snapshot();
      version++;
      accessLog.reconfigure();
      return { ok: true, version };
    },
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
  let adminServer: Server;
  let adminAddress: AddressInfo;
  try {
    ({ server: adminServer, address: adminAddress } = await listenAdmin(createAdminApp(runtime), config.admin.host, config.admin.port));
  } catch (err) {
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
    await new Promise<void>((resolve) => adminServer.close(() => resolve()));
  };
  return { proxyAddress, adminAddress, runtime, shutdown: () => (stopping ??= shutdown()) };
}
