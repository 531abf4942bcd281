// One health world per endpoint list: the active checker, the health state it feeds, the passive outlier detector,
// and the shared load table the data plane updates. A reload that changes any of them builds a new world.
import type { Endpoint, MeridianConfig } from '../config/types.ts';
import { HealthState, type HealthChange } from '../health/state.ts';
import { OutlierDetector } from '../health/outlier.ts';
import { ActiveChecker } from '../health/checker.ts';
import { EndpointLoadTable } from '../proxy/load.ts';

export interface HealthWorld {
  readonly endpoints: readonly Endpoint[];
  readonly state: HealthState;
  readonly outlier: OutlierDetector;
  readonly checker: ActiveChecker;
  readonly load: EndpointLoadTable;
}

/** Built idle: nothing is probed until `checker.start()`, so a reload can build a world and still throw it away. */
export function buildHealthWorld(config: MeridianConfig, onChange: (world: HealthWorld, change: HealthChange) => void): HealthWorld {
  const { endpoints } = config.topology;
  const state = new HealthState(endpoints.length, config.health);
  const outlier = new OutlierDetector(state, endpoints.length, config.outlierDetection);
  const checker = new ActiveChecker(endpoints, state, config.health);
  const world: HealthWorld = { endpoints, state, outlier, checker, load: new EndpointLoadTable(endpoints.length) };
  state.onChange((change) => onChange(world, change));
  return world;
}

/** The endpoints and the settings fixed in a health world are unchanged, so its state (up, ejections, RTT) carries on. */
export function sameHealthWorld(a: MeridianConfig, b: MeridianConfig): boolean {
  const keys = (c: MeridianConfig): string => c.topology.endpoints.map((e) => e.key).join('\n');
  return keys(a) === keys(b) && JSON.stringify(a.health) === JSON.stringify(b.health) && JSON.stringify(a.outlierDetection) === JSON.stringify(b.outlierDetection);
}
