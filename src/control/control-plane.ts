// The control plane: owns the config and its reloads, the health worlds, and the data-plane snapshots built from
// them. It publishes each new snapshot to whatever serves the data plane; nothing on the request path calls into it.
import { setTimeout as sleep } from 'node:timers/promises';
import type { DataPlaneHost } from './data-plane-host.ts';
import type { MeridianConfig } from '../config/types.ts';
import { loadConfigFile } from '../config/load.ts';
import { ConfigError } from '../config/errors.ts';
import { restartRequired } from '../config/restart-only.ts';
import { createGeoRouter, GeoRouter } from '../routing/geo-router.ts';
import type { GeoLocator } from '../geo/locator.ts';
import type { UploadPins } from '../proxy/upload-pins.ts';
import { UpstreamPools } from '../proxy/pools.ts';
import { createDataPlane, type Traffic, type DataPlane } from '../proxy/plane.ts';
import type { PlaneSnapshot } from '../proxy/snapshot.ts';
import type { TrafficCatalog } from '../observe/traffic-tables.ts';
import type { HealthState } from '../health/state.ts';
import { healthChange } from '../health/events.ts';
import { readiness, type Readiness } from '../health/readiness.ts';
import { buildHealthWorld, sameHealthWorld, type HealthWorld } from './health-world.ts';
import { describeReload, openDatabasesFor, type ReloadResult } from './reload-steps.ts';
import type { CertificateStore } from './certificate-store.ts';
import { CertificateError } from '../listen/certificates.ts';
import { NO_TLS, type TlsSnapshot } from '../listen/tls.ts';
import type { RateBuckets } from '../proxy/rate-buckets.ts';
import { allocateBuckets, sameBuckets } from '../proxy/rate-limit.ts';
import { AreaHomes, type PendingHome } from '../routing/area-homes.ts';
import { costTerms, UNMEASURED } from '../routing/latency-cost.ts';
import { RegionLatencyMeter } from './region-latency.ts';
import { releaseMemory } from './release-memory.ts';

/**
 * What serves the data plane: it takes each new snapshot whole. `plane` is built on this thread (the in-process data
 * plane serves it); `snapshot` describes the same state in plain data, for worker threads to build their own.
 */
export interface DataPlaneTarget {
  publish(plane: DataPlane, snapshot: PlaneSnapshot): void;
}

/** Per region in config order, as published to the workers: the measured terms of its cost and the areas moved to it. */
export type LatencyReport = readonly {
  readonly region: string;
  readonly rttMs: number | null;
  readonly floorMs: number | null;
  readonly slownessMs: number;
  readonly errorRatio: number;
  readonly errorMs: number;
  /** Client areas (2° cells, per home set) whose home latency moved here from the region distance picks. */
  readonly areasMoved: number;
}[];

/** The long-lived parts the control plane is built around; main.ts opens them. */
export interface ControlPlaneParts {
  readonly locator: GeoLocator;
  readonly uploadPins: UploadPins;
  /** The metric tables; every snapshot names the generation that covers its topology. */
  readonly catalog: TrafficCatalog;
  /** The process's exchange counters, and this thread's stats row when it serves the data plane itself. */
  readonly traffic: Traffic;
  /** The file the config came from, so a reload can read it again. */
  readonly configPath: string | undefined;
  /** Data-plane threads counting into the shared tables. */
  readonly threads: number;
  /** The TLS certificates and session-ticket key, or null when no listener speaks HTTPS. */
  readonly certificates: CertificateStore | null;
}

export class ControlPlane {
  readonly startedAt = Date.now();
  readonly traffic: Traffic;
  readonly pools = new UpstreamPools();
  readonly locator: GeoLocator;
  readonly uploadPins: UploadPins;
  readonly certificates: CertificateStore | null;
  readonly #catalog: TrafficCatalog;
  readonly #threads: number;
  /** Numbers each geo database list and pin table set the workers have been sent, so they rebuild only what changed. */
  readonly #generations = new WeakMap<object, number>();
  /** The geo databases' generation in the last snapshot published. */
  #geoPublished: number | undefined;
  #nextGeneration = 1;
  /** The config the process started with: restart-only fields are compared with it. */
  readonly #initial: MeridianConfig;
  readonly #configPath: string | undefined;
  #config: MeridianConfig;
  #version = 1;
  #health: HealthWorld;
  #plane: DataPlane;
  /** The rate limits' buckets, shared with every worker; kept across reloads that keep the same groups and rules. */
  #rateBuckets: RateBuckets;
  #target: DataPlaneTarget | null = null;
  /** Latency order's client-area homes and what they are measured from; rebuilt (homes carried) by a reload. */
  #homes: AreaHomes;
  readonly #latencyMeter: RegionLatencyMeter;
  #latencyTimer: NodeJS.Timeout | null = null;
  /** The last TLS snapshot made from the certificate store, reused until its generation moves. */
  #tlsMemo: TlsSnapshot | null = null;
  readonly #reloadListeners: ((result: ReloadResult) => void)[] = [];
  /** Reloads queue: SIGHUP and POST /reload arriving together must not build against each other's half-swapped state. */
  #reloads: Promise<unknown> = Promise.resolve();

  constructor(initial: MeridianConfig, parts: ControlPlaneParts) {
    this.#initial = initial;
    this.#config = initial;
    this.#configPath = parts.configPath;
    this.locator = parts.locator;
    this.uploadPins = parts.uploadPins;
    this.certificates = parts.certificates;
    this.#catalog = parts.catalog;
    this.#threads = parts.threads;
    this.traffic = parts.traffic;
    this.#health = this.#buildHealth(initial);
    this.#rateBuckets = allocateBuckets(initial.rateLimits);
    this.#homes = new AreaHomes(initial);
    this.#latencyMeter = new RegionLatencyMeter(parts.catalog);
    this.#plane = this.#planeFor(initial, this.#health);
  }

  /** Start serving: snapshots go to `target` from now on, and the active checks begin. */
  attach(target: DataPlaneTarget): void {
    this.#target = target;
    target.publish(this.#plane, this.snapshot());
    this.#health.checker.start();
    this.#scheduleLatency();
  }

  /** The current state in plain data, for a worker thread to build its data plane from. */
  snapshot(): PlaneSnapshot {
    const { locator, uploadPins } = this;
    const world = this.#health;
    const pins = uploadPins.memory;
    // The plane's own table: a snapshot never pairs a config with buckets laid out for another.
    const { rateBuckets } = this.#plane;
    return {
      config: { version: this.#version, input: this.#config.input },
      health: world.state.snapshot,
      tables: { generation: world.generation, shared: world.tables },
      // `geo.cacheSize` bounds the process: each worker caches its share, so memory does not grow with the workers.
      geo: { generation: this.#generationOf(locator.open), databases: locator.published, cacheSize: Math.ceil(this.#config.geo.cacheSize / this.#threads) },
      pins: { generation: this.#generationOf(pins.uploads), memory: pins },
      rateLimits: { generation: this.#generationOf(rateBuckets), memory: rateBuckets.descriptor },
      tls: this.#plane.tls,
      homes: this.#homes.published,
      trafficTables: this.#catalog.describe(this.#config.topology),
    };
  }

  /** A worker's report that a run of failures reached the threshold; counters of a world since replaced are ignored. */
  thresholdReached(tables: number, index: number, now: number): void {
    if (tables === this.#health.generation) this.#health.outlier.thresholdReached(index, now);
  }

  /**
   * Data-plane thread `slot` has exited: the exchanges and circuit-breaker slots it held are taken out of the shared
   * counts. Tables of endpoint lists since replaced are left alone: nothing reckons with them any more.
   */
  threadGone(slot: number): void {
    this.traffic.forget(slot);
    this.#health.load.forget(slot);
  }

  /** A geo database file was swapped in: the workers attach to the new buffers (this thread's locator has already). */
  geoPublished(): void {
    this.#publish(this.#plane);
  }

  /** A certificate file changed on disk and passed its checks, or the ticket key rotated: new handshakes use it. */
  certificatesPublished(): void {
    this.#publish(this.#planeFor(this.#config, this.#health));
  }

  /** The snapshot requests are being served with now. */
  plane(): DataPlane {
    return this.#plane;
  }

  get config(): MeridianConfig {
    return this.#config;
  }

  health(): HealthState {
    return this.#health.state;
  }

  configVersion(): number {
    return this.#version;
  }

  restartRequired(): readonly string[] {
    return restartRequired(this.#initial, this.#config);
  }

  ready(): Readiness {
    return readiness(this.#config, this.#health.state.snapshot, this.traffic.draining);
  }

  /** Called after every reload, applied or rejected (the reload metric, the access log's settings). */
  onReloaded(listener: (result: ReloadResult) => void): void {
    this.#reloadListeners.push(listener);
  }

  /**
   * Build-then-swap from the config file, one reload at a time; logged and reported to `onReloaded`. Never rejects:
   * a bad file, a bad geo database or any failure while building leaves the old config serving.
   */
  reload(): Promise<ReloadResult> {
    const done = this.#reloads.then(async (): Promise<ReloadResult> => {
      let result: ReloadResult;
      try {
        result =
          this.#configPath === undefined
            ? { ok: false, problems: [{ path: '', message: 'this instance has no config file to reload' }] }
            : await this.#applyReload(this.#configPath);
      } catch (err) {
        console.error('meridian: config reload failed while building, nothing was changed:', err);
        result = { ok: false, problems: [{ path: '', message: `the reload failed while building the new config, nothing was changed: ${(err as Error)?.message ?? String(err)}` }] };
      }
      for (const listener of this.#reloadListeners) listener(result);
      console.error(describeReload(result));
      return result;
    });
    this.#reloads = done.catch(() => undefined);
    return done;
  }

  /**
   * The shutdown sequence (README: Operations, Shutdown): readiness turns 503 and keep-alive clients are asked to
   * reconnect at once, `shutdown.drainDelay` lets GeoDNS checkers see it while everything still serves, then the
   * listeners stop accepting and in-flight exchanges (and tunnels, closed with 1001) get `shutdown.drainTimeout`;
   * the checks and the pools close last. The admin and probe listeners are the caller's, to close after this.
   */
  async shutdown(dataPlane: DataPlaneHost): Promise<void> {
    this.traffic.draining = true;
    dataPlane.drain();
    const { drainDelay, drainTimeout } = this.#config.shutdown;
    if (drainDelay > 0) await sleep(drainDelay);
    await dataPlane.close(drainTimeout);
    await this.close();
  }

  /** Stops the active checks and closes what the data plane dispatched through; the last step of shutdown. */
  async close(): Promise<void> {
    if (this.#latencyTimer !== null) clearTimeout(this.#latencyTimer);
    this.#latencyTimer = null;
    this.#health.checker.stop();
    this.certificates?.close();
    await this.pools.close();
    this.locator.close();
  }

  /**
   * One reload: everything the new config needs is built first (config, geo databases, caches, health world,
   * snapshot), with no await between the last build step and the swap, so nothing can change or observe it halfway.
   */
  async #applyReload(configPath: string): Promise<ReloadResult> {
    let next: MeridianConfig;
    try {
      next = await loadConfigFile(configPath);
    } catch (err) {
      if (err instanceof ConfigError) return { ok: false, problems: err.problems };
      throw err;
    }
    const opened = await openDatabasesFor(this.locator, next);
    if ('problems' in opened) return { ok: false, problems: opened.problems };

    let swapCertificates = (): void => {};
    if (this.certificates !== null && JSON.stringify(next.tls.certificates) !== JSON.stringify(this.#config.tls.certificates)) {
      try {
        swapCertificates = await this.certificates.prepare(next.tls.certificates);
      } catch (err) {
        if (!(err instanceof CertificateError)) throw err;
        const at = next.tls.certificates.findIndex((pair) => pair.cert === err.file || pair.key === err.file);
        return { ok: false, problems: [{ path: at === -1 ? 'tls.certificates' : `tls.certificates[${at}]`, message: err.message }] };
      }
    }
    const swapGeo = this.locator.prepare(opened.databases, next.geo.cacheSize);
    const swapPins = this.uploadPins.prepare(next.routing.uploadPinning.ttl, next.routing.uploadPinning.maxEntries);
    // Buckets are kept while they mean the same clients and rules; otherwise every client starts with full buckets.
    const rateBuckets = sameBuckets(this.#config.rateLimits, next.rateLimits) ? this.#rateBuckets : allocateBuckets(next.rateLimits);
    const previous = this.#health;
    const world = sameHealthWorld(this.#config, next) ? previous : this.#buildHealth(next);
    const homes = new AreaHomes(next, this.#homes);
    let plane: DataPlane;
    try {
      plane = this.#planeFor(next, world, rateBuckets, homes);
    } catch (err) {
      if (world !== previous) world.checker.stop();
      try {
        // The pool registry may have moved to the new endpoint list: the old config takes it back.
        this.#publish(this.#planeFor(this.#config, previous));
      } catch (rollback) {
        console.error('meridian: restoring the old snapshot after a failed reload failed too:', rollback);
      }
      throw err;
    }

    // The commit: reference swaps, none of which can fail.
    swapCertificates();
    swapGeo();
    swapPins();
    this.#rateBuckets = rateBuckets;
    this.#homes = homes;
    this.#config = next;
    this.#health = world;
    this.#version++;
    // The certificates swapped after the plane was built: it takes them now, before anything serves it.
    this.#publish(this.certificates === null ? plane : Object.freeze({ ...plane, tls: this.#tls() }));
    if (world !== previous) {
      try {
        world.checker.start();
        previous.checker.stop();
      } catch (err) {
        // The config is serving; say so, and what did not start with it.
        console.error(`meridian: config version ${this.#version} is serving, but starting its health checks failed:`, err);
      }
    }
    return { ok: true, version: this.#version, restartRequired: restartRequired(this.#initial, next) };
  }

  #buildHealth(config: MeridianConfig): HealthWorld {
    // Health changes are rare; each builds a new router (and decision memo) and swaps the snapshot.
    return buildHealthWorld(config, this.traffic.buffer, this.#threads, (world, change) => {
      if (world !== this.#health) return;
      this.#publish(this.#planeFor(this.#config, world));
      if (healthChange.hasSubscribers) healthChange.publish({ change, endpoint: world.endpoints[change.index] });
    });
  }

  #planeFor(config: MeridianConfig, world: HealthWorld, rateBuckets = this.#rateBuckets, homes = this.#homes): DataPlane {
    const { pools, traffic, locator, uploadPins } = this;
    const parts = { pools, traffic, locator, uploadPins, load: world.load, outcomes: world.outlier, tls: this.#tls(), rateBuckets };
    // `#plane` is unset while the constructor builds the first plane.
    const previous = (this.#plane as DataPlane | undefined)?.router;
    const router = createGeoRouter(config, world.state.snapshot, homes.published, previous instanceof GeoRouter ? previous : null);
    return createDataPlane(config, router, parts);
  }

  /** Latency order as /status shows it: what each region's cost is made of now, and the client areas moved to it. */
  latencyReport(): LatencyReport | null {
    if (this.#config.routing.order !== 'latency') return null;
    const { latency } = this.#homes.published;
    const moved = this.#homes.movedAreas();
    const { errorPenaltyMs } = this.#config.routing.latency;
    return this.#config.topology.regions.map((region, i) => {
      const measured = latency[i] ?? UNMEASURED;
      // The terms as routing computes them; distance is per client, so none here.
      const { slownessMs, errorMs } = costTerms(0, measured, false, 0, errorPenaltyMs);
      const { rttMs, floorMs, errorRatio } = measured;
      return { region: region.name, rttMs, floorMs, slownessMs, errorRatio, errorMs, areasMoved: moved[i] ?? 0 };
    });
  }

  /** The challenger an area's home may move to once it has led for the window, as `/route` explains it. */
  pendingHome(set: number, area: number): PendingHome | null {
    return this.#homes.pending(set, area);
  }

  /**
   * Latency order's measurement, ten times per hysteresis window and at most once a second: a moved home (or a
   * measured cost that moved) publishes a new snapshot. A timeout chain rather than an interval, so a reload's new
   * window takes effect at the next step.
   */
  #scheduleLatency(): void {
    const { order, latency } = this.#config.routing;
    const every = Math.min(1_000, Math.max(100, latency.windowMs / 10));
    this.#latencyTimer = setTimeout(() => {
      try {
        if (order === 'latency') {
          const now = Date.now();
          if (this.#homes.update(this.#latencyMeter.measure(this.#config.topology, this.#health.state.snapshot, now), now)) this.#publish(this.#planeFor(this.#config, this.#health));
        }
      } catch (err) {
        // The last published homes keep serving; a timer's exception must not reach the event loop.
        console.error('meridian: measuring region latency failed, routing keeps its last homes:', err);
      }
      this.#scheduleLatency();
    }, every);
    this.#latencyTimer.unref();
  }

  /** The store's certificates and ticket key as plain data, made once per generation. */
  #tls(): TlsSnapshot {
    const store = this.certificates;
    if (store === null) return NO_TLS;
    if (this.#tlsMemo?.generation === store.generation) return this.#tlsMemo;
    const certificates = store.certificates.map(({ label, names, cert, key }) => Object.freeze({ label, names, cert, key }));
    this.#tlsMemo = Object.freeze({ generation: store.generation, certificates: Object.freeze(certificates), ticketKeys: new Uint8Array(store.ticketKeys) });
    return this.#tlsMemo;
  }

  #publish(plane: DataPlane): void {
    this.#plane = plane;
    this.#target?.publish(plane, this.snapshot());
    // The databases just replaced are garbage on this thread now; each worker collects its own once it has swapped.
    const geo = this.#generationOf(this.locator.open);
    if (this.#geoPublished !== undefined && geo !== this.#geoPublished) setImmediate(releaseMemory);
    this.#geoPublished = geo;
  }

  #generationOf(key: object): number {
    let generation = this.#generations.get(key);
    if (generation === undefined) this.#generations.set(key, (generation = this.#nextGeneration++));
    return generation;
  }
}
