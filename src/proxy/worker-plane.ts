// A worker's side of the snapshot contract: turns each plain PlaneSnapshot into a DataPlane of this thread's own
// objects (compiled config, router, pools, views over the shared tables, geo readers over the shared buffers), and
// rebuilds only the parts whose generation changed.
import { buildConfig } from '../config/build.ts';
import type { MeridianConfig } from '../config/types.ts';
import { createGeoRouter, type GeoRouter } from '../routing/geo-router.ts';
import { attachGeoDatabase } from '../geo/database.ts';
import { GeoLocator } from '../geo/locator.ts';
import { TrafficRecorder } from '../observe/recorder.ts';
import { ThreadStats } from '../observe/thread-stats.ts';
import { EdgeStats } from '../observe/edge-stats.ts';
import { UpstreamPools } from './pools.ts';
import { createDataPlane, Traffic, type DataPlane } from './plane.ts';
import { openEndpointTables, type EndpointTables } from './shared-tables.ts';
import { UploadPins } from './upload-pins.ts';
import { RateBuckets } from './rate-buckets.ts';
import type { PlaneSnapshot, WorkerInit } from './snapshot.ts';

/** How this thread tells the control plane that an endpoint's failures reached the threshold, naming the tables. */
export type ReportThreshold = (tables: number, index: number, now: number) => void;

export class WorkerPlanes {
  readonly pools = new UpstreamPools();
  readonly traffic: Traffic;
  readonly locator: GeoLocator;
  readonly recorder: TrafficRecorder;
  readonly #report: ReportThreshold;
  readonly #slot: number;
  #config: { readonly version: number; readonly config: MeridianConfig } | null = null;
  #tables: { readonly generation: number; readonly views: EndpointTables } | null = null;
  #geoGeneration: number;
  #pins: { readonly generation: number; readonly pins: UploadPins } | null = null;
  #rateBuckets: { readonly generation: number; readonly buckets: RateBuckets } | null = null;
  /** Set when a build swapped the geo databases: the old ones are garbage here once that plane serves. */
  geoReplaced = false;
  /** The router of the last snapshot built: the next one keeps its memo while no decision would change. */
  #router: GeoRouter | null = null;

  constructor(init: WorkerInit, report: ReportThreshold) {
    const row = new ThreadStats(init.stats).row(init.slot);
    this.#slot = init.slot;
    this.traffic = new Traffic(init.traffic, row, init.slot, new EdgeStats(init.edgeStats).row(init.slot));
    const { geo, trafficTables } = init.snapshot;
    this.locator = new GeoLocator(geo.databases.map(attachGeoDatabase), { cacheSize: geo.cacheSize, stats: row });
    this.#geoGeneration = geo.generation;
    this.recorder = new TrafficRecorder(trafficTables).subscribe();
    this.#report = report;
  }

  /** The data plane for `snapshot`, built whole before the caller swaps to it; throws only on a broken snapshot. */
  build(snapshot: PlaneSnapshot): DataPlane {
    const config = this.#configFor(snapshot.config);
    const outcomes = this.#tablesFor(snapshot.tables, config);
    const uploadPins = this.#pinsFor(snapshot.pins);
    const rateBuckets = this.#bucketsFor(snapshot.rateLimits);
    const { geo } = snapshot;
    if (geo.generation !== this.#geoGeneration || geo.cacheSize !== this.locator.cache.max) {
      const databases = geo.generation === this.#geoGeneration ? this.locator.open : geo.databases.map(attachGeoDatabase);
      this.locator.prepare(databases, geo.cacheSize)();
      this.geoReplaced ||= geo.generation !== this.#geoGeneration;
      this.#geoGeneration = geo.generation;
    }
    // Before the snapshot serves: the first record of a new zone must find its slots.
    this.recorder.attach(snapshot.trafficTables);
    const { pools, traffic, locator } = this;
    const router = createGeoRouter(config, snapshot.health, snapshot.homes, this.#router);
    const plane = createDataPlane(config, router, { pools, traffic, locator, uploadPins, load: outcomes.load, outcomes: outcomes.outcomes, tls: snapshot.tls, rateBuckets });
    this.#router = router;
    return plane;
  }

  #configFor({ version, input }: PlaneSnapshot['config']): MeridianConfig {
    if (this.#config?.version !== version) this.#config = { version, config: buildConfig(input) };
    return this.#config.config;
  }

  #tablesFor({ generation, shared }: PlaneSnapshot['tables'], config: MeridianConfig): EndpointTables {
    if (this.#tables?.generation !== generation) {
      const reached = (index: number, now: number): void => this.#report(generation, index, now);
      this.#tables = { generation, views: openEndpointTables(shared, config.outlierDetection.consecutiveFailures, reached, this.#slot) };
    }
    return this.#tables.views;
  }

  #pinsFor({ generation, memory }: PlaneSnapshot['pins']): UploadPins {
    if (this.#pins?.generation !== generation) this.#pins = { generation, pins: new UploadPins(memory) };
    return this.#pins.pins;
  }

  #bucketsFor({ generation, memory }: PlaneSnapshot['rateLimits']): RateBuckets {
    if (this.#rateBuckets?.generation !== generation) this.#rateBuckets = { generation, buckets: RateBuckets.attach(memory) };
    return this.#rateBuckets.buckets;
  }
}
