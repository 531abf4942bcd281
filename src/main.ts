// Composition root: opens the geo databases, builds the control plane, the data-plane server, the observers and
// the admin listeners, and wires them together. The policy lives in control/, proxy/, health/ and observe/.
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { ListenerSettings, MeridianConfig } from './config/types.ts';
import { GeoLocator, DEFAULT_GEO_DATABASES } from './geo/locator.ts';
import { GeoDatabaseError } from './geo/database.ts';
import { UploadPins } from './proxy/upload-pins.ts';
import { Traffic, type DataPlane } from './proxy/plane.ts';
import type { HealthState } from './health/state.ts';
import type { Readiness } from './health/readiness.ts';
import { ControlPlane, type LatencyReport } from './control/control-plane.ts';
import type { ReloadResult } from './control/reload-steps.ts';
import { resolveWorkers } from './control/cpus.ts';
import { chooseWorkerCount } from './control/reuse-port.ts';
import type { DataPlaneHost, WorkerView } from './control/data-plane-host.ts';
import { InProcessDataPlane } from './control/in-process.ts';
import { WorkerSupervisor } from './control/supervisor.ts';
import { createAdminApp } from './admin/app.ts';
import { listenAdmin } from './admin/server.ts';
import { createProbeApp } from './admin/probe.ts';
import { startMetrics, type MetricsExporter } from './observe/metrics.ts';
import { startTrafficSummary, type TrafficSummarizer } from './observe/summary.ts';
import { TrafficCatalog } from './observe/traffic-tables.ts';
import type { TrafficRecorder } from './observe/recorder.ts';
import { ThreadStats } from './observe/thread-stats.ts';
import { ListenerStats } from './observe/listener-stats.ts';
import { EdgeStats } from './observe/edge-stats.ts';
import { CertificateStore } from './control/certificate-store.ts';
import { CertificateError, type CheckedCertificate } from './listen/certificates.ts';
import type { ListenerAddress } from './listen/listeners.ts';
import type { LogDestination } from './observe/access-log.ts';
import type { PendingHome } from './routing/area-homes.ts';

export type { ReloadResult };

/** What the admin plane and the observers may read and do; the data plane never sees it. */
export interface MeridianRuntime {
  readonly startedAt: number;
  /** The process's exchange counters, and draining; with `workers: 1` also the serving thread's connections and tunnels. */
  readonly traffic: Traffic;
  /** Per data-plane thread: geo lookups, requests, open connections and WebSockets. Scrapes add the rows up. */
  readonly stats: ThreadStats;
  readonly locator: GeoLocator;
  /** Rate-limit refusals by rule and redirects by region, per data-plane thread. */
  readonly edgeStats: EdgeStats;
  /** Per listener (in the order of `listen`, which is restart-only): TLS handshakes and PROXY protocol refusals. */
  readonly listenerStats: ListenerStats;
  /** The certificates the HTTPS listeners serve now, in config order; empty without an HTTPS listener. */
  certificates(): readonly CheckedCertificate[];
  /**
   * The listeners serving, as the process started with them (restart-only), in the order `listenerStats` counts
   * them, each with the port it is bound to once started.
   */
  listeners(): readonly RunningListener[];
  /** Where the data plane runs, and each of its threads. */
  workers(): { readonly mode: DataPlaneHost['mode']; readonly restarts: number; readonly threads: readonly WorkerView[] };
  /** The snapshot requests are being served with now. */
  plane(): DataPlane;
  health(): HealthState;
  configVersion(): number;
  /** Fields of the loaded config that differ from the running listeners' and wait for a restart. */
  restartRequired(): readonly string[];
  ready(): Readiness;
  /** Latency order: the region leading a client area that the hysteresis has not moved it to yet (`/route`). */
  pendingHome(set: number, area: number): PendingHome | null;
  /** Latency order's measured terms and moved areas per region; null in distance order. */
  latencyReport(): LatencyReport | null;
  /**
   * Build-then-swap from the config file, one reload at a time; logged and counted in the reload metric. Never
   * rejects: a bad file, a bad geo database or any failure while building leaves the old config serving.
   */
  reload(): Promise<ReloadResult>;
  readonly metrics: MetricsExporter;
  readonly summary: TrafficSummarizer;
}

/** A listener as it serves: its settings from the config the process started with, and its bound port. */
export interface RunningListener {
  readonly settings: ListenerSettings;
  readonly port: number;
}

export interface Meridian {
  /** The first listener's address (the one older configs called `listen`). */
  readonly proxyAddress: AddressInfo;
  /** Every listener's address, in config order. */
  readonly listenerAddresses: readonly ListenerAddress[];
  readonly adminAddress: AddressInfo;
  /** The public readiness listener's address, or null when the config has no `probe` section. */
  readonly probeAddress: AddressInfo | null;
  readonly runtime: MeridianRuntime;
  /**
   * With the data plane on this thread (`workers: 1`), what counts its exchange records into the tables the metrics
   * and the summary read (`close()` stops it); null when worker threads serve, each counting on its own.
   */
  readonly recorder: TrafficRecorder | null;
  /** The worker threads, when they serve; tests reach the test hooks through it. */
  readonly supervisor: WorkerSupervisor | null;
  /** README, Operations, Shutdown: readiness off, drain delay, stop accepting, wait for in-flight, end the rest. */
  shutdown(): Promise<void>;
}

export interface StartOptions {
  /** The file the config came from, so `POST /reload` and SIGHUP can read it again. */
  readonly configPath?: string;
  /** Where access-log lines go when `accessLog.mode` is on; default stdout, written asynchronously. With worker threads, each writes to stdout. */
  readonly accessLog?: LogDestination;
  /** A worker that has not answered the control plane for this long is replaced; default 10 s. */
  readonly watchdogMs?: number;
  /** Let tests crash or stall a worker through `supervisor.poke`. */
  readonly testHooks?: boolean;
}

const DEFAULT_WATCHDOG_MS = 10_000;

export async function startMeridian(initial: MeridianConfig, options: StartOptions = {}): Promise<Meridian> {
  const threads = await chooseWorkerCount(resolveWorkers(initial.workers));
  if (threads > 1 && options.accessLog !== undefined) throw new Error('an access-log destination object needs the data plane on this thread (workers: 1); worker threads write to stdout');
  const stats = new ThreadStats(threads);
  const listenerStats = new ListenerStats(initial.listen.length, threads);
  const edgeStats = new EdgeStats(threads);
  // With one thread the data plane runs here and counts into row 0; workers count into their own rows.
  const here = threads === 1 ? stats.row(0) : undefined;
  let control: ControlPlane | undefined;
  const locator = await GeoLocator.open(initial.geo.databases ?? DEFAULT_GEO_DATABASES, {
    cacheSize: initial.geo.cacheSize,
    stats: here,
    onReload: ({ path, ok, error }) =>
      console.error(
        ok
          ? `meridian: geo database ${path} reloaded`
          : `meridian: geo database ${path} rejected, the previous one keeps serving: ${error instanceof GeoDatabaseError ? error.problem : error?.message}`,
      ),
    onPublish: () => control?.geoPublished(),
  });
  locator.watch();
  const { ttl, maxEntries } = initial.routing.uploadPinning;
  const catalog = new TrafficCatalog();
  const traffic = new Traffic(Traffic.allocate(threads), here, 0, here === undefined ? undefined : edgeStats.row(0));
  // Only HTTPS listeners need certificates; a config that lists some for later is checked by `meridian check` alone.
  const certificates = initial.listen.some((l) => l.protocol === 'https')
    ? await CertificateStore.open(initial.tls.certificates, {
        ticketKeyRotationMs: initial.tls.ticketKeyRotation,
        onReload: ({ file, ok, error }) =>
          console.error(ok ? `meridian: certificate ${file} reloaded` : `meridian: certificate ${file} rejected, the previous one keeps serving: ${error instanceof CertificateError ? error.problem : error?.message}`),
        onPublish: () => control?.certificatesPublished(),
      })
    : null;
  certificates?.watch();
  control = new ControlPlane(initial, { locator, uploadPins: new UploadPins(ttl, maxEntries), catalog, traffic, threads, configPath: options.configPath, certificates });
  const controlPlane = control;

  const supervisor =
    threads === 1
      ? null
      : new WorkerSupervisor({
          count: threads,
          stats,
          listenerStats: listenerStats.buffer,
          edgeStats: edgeStats.buffer,
          started: initial.input,
          traffic: traffic.buffer,
          watchdogMs: options.watchdogMs ?? DEFAULT_WATCHDOG_MS,
          testHooks: options.testHooks ?? false,
          onThreshold: (tables, index, now) => controlPlane.thresholdReached(tables, index, now),
          onExit: (slot) => controlPlane.threadGone(slot),
          onRestart: () => runtime.metrics.recordWorkerRestart(),
        });
  const inProcess = supervisor === null ? new InProcessDataPlane(control.plane(), catalog, stats, listenerStats, options.accessLog) : null;
  const dataPlane: DataPlaneHost = supervisor ?? inProcess!;

  // Known once the data plane has started; until then the listeners report their configured ports.
  let listenerAddresses: readonly ListenerAddress[] | undefined;
  const core: Omit<MeridianRuntime, 'metrics' | 'summary'> = {
    startedAt: control.startedAt,
    traffic,
    stats,
    locator,
    listenerStats,
    edgeStats,
    certificates: () => certificates?.certificates ?? [],
    listeners: () => initial.listen.map((settings, i) => ({ settings, port: listenerAddresses?.[i]?.port ?? settings.port })),
    workers: () => ({ mode: dataPlane.mode, restarts: dataPlane.restarts, threads: dataPlane.workers() }),
    plane: () => controlPlane.plane(),
    health: () => controlPlane.health(),
    configVersion: () => controlPlane.configVersion(),
    restartRequired: () => controlPlane.restartRequired(),
    ready: () => controlPlane.ready(),
    pendingHome: (set, area) => controlPlane.pendingHome(set, area),
    latencyReport: () => controlPlane.latencyReport(),
    reload: () => controlPlane.reload(),
  };
  const runtime: MeridianRuntime = { ...core, metrics: startMetrics(core, catalog), summary: startTrafficSummary(core, catalog) };
  control.onReloaded((result) => runtime.metrics.recordReload(result.ok));
  // Snapshots flow from here on; the observers are subscribed before anything accepts, so the first request counts.
  control.attach(dataPlane);

  const { config } = control;
  // The admin plane, and the public probe listener when configured; both stay up until shutdown ends, so
  // checkers see /readyz turn 503 for the whole drain.
  const controlServers: Server[] = [];
  let adminAddress: AddressInfo;
  let probeAddress: AddressInfo | null = null;
  try {
    listenerAddresses = await dataPlane.start();
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
    await dataPlane.close(0);
    await control.close();
    runtime.metrics.close();
    throw err;
  }

  let stopping: Promise<void> | undefined;
  const shutdown = async (): Promise<void> => {
    await controlPlane.shutdown(dataPlane);
    runtime.metrics.close();
    await Promise.all(controlServers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  };
  const [first] = listenerAddresses!;
  return {
    proxyAddress: { address: first.address, port: first.port, family: first.family },
    listenerAddresses: listenerAddresses!,
    adminAddress,
    probeAddress,
    runtime,
    recorder: inProcess?.recorder ?? null,
    supervisor,
    shutdown: () => (stopping ??= shutdown()),
  };
}
