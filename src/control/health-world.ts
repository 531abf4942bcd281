// One health world per endpoint list: the active checker, the health state it feeds, the passive outlier detector,
// and the shared tables every data-plane thread counts into. A reload that changes any of them builds a new world.
import type { Endpoint, MeridianConfig } from '../config/types.ts';
import { HealthState, type HealthChange } from '../health/state.ts';
import { OutlierDetector } from '../health/outlier.ts';
import { ActiveChecker } from '../health/checker.ts';
import { EndpointLoadTable } from '../proxy/load.ts';
import { createSharedTables, type SharedTables } from '../proxy/shared-tables.ts';

export interface HealthWorld {
  /** Numbers the worlds of a process; a worker's threshold report names the world its counters belong to. */
  readonly generation: number;
  readonly endpoints: readonly Endpoint[];
  readonly state: HealthState;
  readonly outlier: OutlierDetector;
  readonly checker: ActiveChecker;
  /** This thread's view of `tables.load`. */
  readonly load: EndpointLoadTable;
  readonly tables: SharedTables;
}

let generations = 0;

/**
 * Built idle: nothing is probed until `checker.start()`, so a reload can build a world and still throw it away.
 * `traffic` is the process's exchange counters, which every world shares; `threads` the data-plane threads that count.
 */
export function buildHealthWorld(
  config: MeridianConfig,
  traffic: SharedArrayBuffer,
  threads: number,
  onChange: (world: HealthWorld, change: HealthChange) => void,
): HealthWorld {
  const { endpoints } = config.topology;
  const tables = createSharedTables(endpoints.length, traffic, threads);
  const state = new HealthState(endpoints.length, config.health);
  const outlier = new OutlierDetector(state, tables.failures, config.outlierDetection);
  const checker = new ActiveChecker(endpoints, state, config.health);
  const world: HealthWorld = { generation: ++generations, endpoints, state, outlier, checker, load: new EndpointLoadTable(tables.load), tables };
  state.onChange((change) => onChange(world, change));
  return world;
}

/** The endpoints and the settings fixed in a health world are unchanged, so its state (up, ejections, RTT) carries on. */
export function sameHealthWorld(a: MeridianConfig, b: MeridianConfig): boolean {
  const keys = (c: MeridianConfig): string => c.topology.endpoints.map((e) => e.key).join('\n');
  return keys(a) === keys(b) && JSON.stringify(a.health) === JSON.stringify(b.health) && JSON.stringify(a.outlierDetection) === JSON.stringify(b.outlierDetection);
}
