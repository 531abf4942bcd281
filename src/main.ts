// Composition root: opens the geo databases, builds the control plane, the data-plane server, the observers and
// the admin listeners, and wires them together. The policy lives in control/, proxy/, health/ and observe/.
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MeridianConfig } from './config/types.ts';
import { GeoLocator, DEFAULT_GEO_DATABASES } from './geo/locator.ts';
import { GeoDatabaseError } from './geo/database.ts';
import { UploadPins } from './proxy/upload-pins.ts';
import type { DataPlane, Traffic } from './proxy/plane.ts';
import { ProxyServer } from './proxy/server.ts';
import type { HealthState } from './health/state.ts';
import type { Readiness } from './health/readiness.ts';
import { ControlPlane } from './control/control-plane.ts';
import type { ReloadResult } from './control/reload-steps.ts';
import { createAdminApp } from './admin/app.ts';
import { listenAdmin } from './admin/server.ts';
import { createProbeApp } from './admin/probe.ts';
import { startMetrics, type MetricsExporter } from './observe/metrics.ts';
import { startTrafficSummary, type TrafficSummarizer } from './observe/summary.ts';
import { TrafficCatalog } from './observe/traffic-tables.ts';
import { TrafficRecorder } from './observe/recorder.ts';
import { startAccessLog, type LogDestination } from './observe/access-log.ts';

export type { ReloadResult };

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
  /** Counts this thread's exchange records into the tables the metrics and the summary read; `close()` stops it. */
  readonly recorder: TrafficRecorder;
  /** README, Operations, Shutdown: readiness off, drain delay, stop accepting, wait for in-flight, end the rest. */
  shutdown(): Promise<void>;
}

export interface StartOptions {
  /** The file the config came from, so `POST /reload` and SIGHUP can read it again. */
  readonly configPath?: string;
  /** Where access-log lines go when `accessLog.mode` is on; default stdout, written asynchronously. */
  readonly accessLog?: LogDestination;
}

export async function startMeridian(initial: MeridianConfig, options: StartOptions = {}): Promise<Meridian> {
  const locator = await GeoLocator.open(initial.geo.databases ?? DEFAULT_GEO_DATABASES, {
    cacheSize: initial.geo.cacheSize,
    onReload: ({ path, ok, error }) =>
      console.error(
        ok
          ? `meridian: geo database ${path} reloaded`
          : `meridian: geo database ${path} rejected, the previous one keeps serving: ${error instanceof GeoDatabaseError ? error.problem : error?.message}`,
      ),
  });
  locator.watch();
  const { ttl, maxEntries } = initial.routing.uploadPinning;
  const control = new ControlPlane(initial, locator, new UploadPins(ttl, maxEntries), options.configPath);
  const proxy = new ProxyServer(control.plane());
  control.attach(proxy);

  const core: Omit<MeridianRuntime, 'metrics' | 'summary'> = {
    startedAt: control.startedAt,
    traffic: control.traffic,
    locator,
    plane: () => control.plane(),
    health: () => control.health(),
    configVersion: () => control.configVersion(),
    restartRequired: () => control.restartRequired(),
    ready: () => control.ready(),
    reload: () => control.reload(),
  };
  // Observers subscribe before the proxy accepts, so the first request is counted. The recorder shares this thread with
  // the catalog, so a record of a topology with a new zone or region widens the tables on the spot.
  const tables = new TrafficCatalog();
  const recorder = new TrafficRecorder(tables.describe(control.plane().config.topology), (topology) => tables.describe(topology)).subscribe();
  const runtime: MeridianRuntime = { ...core, metrics: startMetrics(core, tables), summary: startTrafficSummary(core, tables) };
  const accessLog = startAccessLog(core, options.accessLog);
  control.onReloaded((result) => {
    runtime.metrics.recordReload(result.ok);
    if (result.ok) accessLog.reconfigure();
  });
  const stopObservers = async (): Promise<void> => {
    recorder.close();
    runtime.metrics.close();
    await accessLog.close();
  };

  const { config } = control;
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
    await proxy.close(0);
    await control.close();
    await stopObservers();
    throw err;
  }

  let stopping: Promise<void> | undefined;
  const shutdown = async (): Promise<void> => {
    control.traffic.draining = true;
    const { drainDelay, drainTimeout } = control.config.shutdown;
    if (drainDelay > 0) await sleep(drainDelay);
    await proxy.close(drainTimeout);
    await control.close();
    await stopObservers();
    await Promise.all(controlServers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  };
  return { proxyAddress, adminAddress, probeAddress, runtime, recorder, shutdown: () => (stopping ??= shutdown()) };
}
