// Bounded labels for observers: how a finished exchange is classed (method, status class) and dense indexes over
// a topology, so counting a request is array arithmetic with no string hashing.
import type { Endpoint, Topology } from '../config/types.ts';
import { METHOD_CLASSES, type ExchangeRecord } from '../proxy/record.ts';
import type { CheckResult } from '../health/checker.ts';

/** The label value for "no endpoint was chosen" (a request refused before routing, or with no candidate). */
export const NONE = 'none';

/** The standard methods, then `OTHER`; a record's `methodClass` indexes this. */
export const METHODS = METHOD_CLASSES;

/**
 * Status classes of what the client received, Meridian's own JSON errors included, then `error`: the client got
 * no complete response (it left, or the connection was cut mid-body).
 */
export const CODES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'error'] as const;
export const CODE_5XX = 4;
export const CODE_ERROR = 5;

export function codeIndex(record: ExchangeRecord): number {
  if (!record.completed) return CODE_ERROR;
  const statusClass = (record.status / 100) | 0;
  return statusClass >= 1 && statusClass <= 5 ? statusClass - 1 : CODE_ERROR;
}

export interface ZoneName {
  readonly region: string;
  readonly zone: string;
}

/** Built once per topology (config load) and shared by every observer. */
export class TopologyIndex {
  readonly topology: Topology;
  /** The topology's zones in order, then the `none` slot. */
  readonly zones: readonly ZoneName[];
  readonly noneSlot: number;
  /** By endpoint index: its slot in `zones`. */
  readonly zoneOf: Int32Array;
  readonly regions: readonly string[];
  /** By endpoint index: its position in `regions`. */
  readonly regionOf: Int32Array;
  readonly #regionByName: ReadonlyMap<string, number>;

  constructor(topology: Topology) {
    this.topology = topology;
    const zones: ZoneName[] = [];
    const zoneByKey = new Map<string, number>();
    for (const region of topology.regions) {
      for (const zone of region.zones) {
        zoneByKey.set(`${region.name}/${zone.name}`, zones.length);
        zones.push(Object.freeze({ region: region.name, zone: zone.name }));
      }
    }
    this.noneSlot = zones.length;
    zones.push(Object.freeze({ region: NONE, zone: NONE }));
    this.zones = Object.freeze(zones);
    this.regions = Object.freeze(topology.regions.map((r) => r.name));
    this.#regionByName = new Map(this.regions.map((name, i) => [name, i]));
    const { endpoints } = topology;
    this.zoneOf = Int32Array.from(endpoints, (e) => zoneByKey.get(`${e.region}/${e.zone}`)!);
    this.regionOf = Int32Array.from(endpoints, (e) => this.#regionByName.get(e.region)!);
  }

  zoneSlot(endpoint: Endpoint | null): number {
    return endpoint === null ? this.noneSlot : this.zoneOf[endpoint.index];
  }

  /** -1 for a name this topology does not have. */
  regionIndex(name: string): number {
    return this.#regionByName.get(name) ?? -1;
  }
}

const indexes = new WeakMap<Topology, TopologyIndex>();

export function indexTopology(topology: Topology): TopologyIndex {
  let index = indexes.get(topology);
  if (index === undefined) {
    index = new TopologyIndex(topology);
    indexes.set(topology, index);
  }
  return index;
}

export const CHECK_RESULTS: readonly CheckResult[] = Object.freeze(['success', 'failure', 'timeout']);

export interface EndpointLabels {
  readonly base: { readonly region: string; readonly zone: string; readonly endpoint: string };
  readonly checks: Readonly<Record<CheckResult, { readonly region: string; readonly zone: string; readonly endpoint: string; readonly result: CheckResult }>>;
}

// Built once per endpoint object (that is, per config load), so health events and scrapes reuse them.
const endpointLabelCache = new WeakMap<Endpoint, EndpointLabels>();

export function endpointLabels(endpoint: Endpoint): EndpointLabels {
  let labels = endpointLabelCache.get(endpoint);
  if (labels === undefined) {
    // region and zone are labels of their own, so the origin is enough to tell endpoints apart.
    const base = Object.freeze({ region: endpoint.region, zone: endpoint.zone, endpoint: endpoint.origin });
    const checks = Object.fromEntries(CHECK_RESULTS.map((result) => [result, Object.freeze({ ...base, result })])) as EndpointLabels['checks'];
    labels = Object.freeze({ base, checks });
    endpointLabelCache.set(endpoint, labels);
  }
  return labels;
}
