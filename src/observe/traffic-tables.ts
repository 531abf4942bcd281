// The counters that per-exchange records bump, in SharedArrayBuffers: recorders on every data-plane thread count into
// the same tables with Atomics, and the main thread's readers (Prometheus exporter, traffic summary) read them.
// The control plane describes the tables as plain data that a thread turns into its own views.
import type { Topology } from '../config/types.ts';
import { COUNTRY_CODES } from './country-traffic.ts';
import { FailoverLog } from './failover-log.ts';
import { MISROUTE_REASONS } from '../routing/types.ts';
import { CODES, METHODS, NONE, RETRY_REASONS, type ZoneName } from './labels.ts';
import { SecondRing } from './second-ring.ts';

/**
 * Latency bucket bounds in seconds, shared by both histograms. An edge proxy sees four populations: loopback and
 * same-AZ answers (0.5–2.5 ms: the proxy's own overhead lives at the bottom, so the first bound is 0.5 ms),
 * cross-AZ and cached API calls (5–50 ms), cross-region failovers and heavy queries (100 ms–1 s), and uploads,
 * function executions and long polls (seconds to a minute). A 1-2.5-5 ladder keeps every bucket within 2.5× of its
 * neighbour, so histogram_quantile stays within that factor, in 16 buckets per zone.
 */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]);
/** Non-cumulative counts per zone: one per bound, then +Inf. */
export const LATENCY_WIDTH = LATENCY_BUCKETS.length + 1;

/**
 * Upper bounds of the misroute extra-distance buckets, in km. The shortest cross-region detours (neighbouring regions
 * on one continent) are a few hundred km, a wrong continent 4000–8000 km, and nothing on Earth is more than ~20000 km
 * away, so doubling from 250 km covers every case in 8 counters per reason.
 */
export const MISROUTE_KM_BUCKETS: readonly number[] = Object.freeze([250, 500, 1000, 2000, 4000, 8000, 16000]);
/** Non-cumulative counts per reason: one per bound, then +Inf. */
export const MISROUTE_KM_WIDTH = MISROUTE_KM_BUCKETS.length + 1;

/** The traffic summary's rates and percentiles cover this many whole seconds, the current partial second left out. */
export const SUMMARY_WINDOW_SECONDS = 10;
/** One slot more than the window, so the second being filled never overwrites one being read. */
const RING_SLOTS = SUMMARY_WINDOW_SECONDS + 1;
/** The summary's latency buckets are quarter octaves of microseconds (±9 % around the value), up to 2^27 µs ≈ 134 s. */
export const STEPS_PER_OCTAVE = 4;
export const SUMMARY_BUCKETS = 27 * STEPS_PER_OCTAVE + 1;

export function summaryBucket(ms: number): number {
  const us = ms * 1000;
  return us <= 1 ? 0 : Math.min(SUMMARY_BUCKETS - 1, Math.ceil(Math.log2(us) * STEPS_PER_OCTAVE));
}

/** Zone slot 0 of every layout counts the requests no endpoint served. */
export const NONE_SLOT = 0;

/**
 * The names the tables are indexed by. A later generation keeps the earlier one's names at the same positions and
 * appends new ones, so slot numbers, and the slots a thread worked out for a topology, hold in every later generation.
 */
export interface TrafficLayout {
  /** `none/none` first, then every region/zone pair the process has served, in the order first seen. */
  readonly zones: readonly ZoneName[];
  /** Every region name, in the order first seen. */
  readonly regions: readonly string[];
}

export interface TrafficBuffers {
  /** BigInt64 counters that only grow, from the generation's start: requests, histograms, failovers, countries. */
  readonly totals: SharedArrayBuffer;
  /** The summary's per-second ring (second-ring.ts). */
  readonly ring: SharedArrayBuffer;
  /** The recent failovers (failover-log.ts): one log for the process, the same buffer in every generation. */
  readonly failovers: SharedArrayBuffer;
}

/** Only names, numbers and buffers: structured cloning (postMessage) shares the memory rather than copying it. */
export interface TrafficTablesDescriptor {
  /** 1, 2, …: a later generation covers every name of the earlier ones. */
  readonly generation: number;
  readonly layout: TrafficLayout;
  readonly buffers: TrafficBuffers;
}

/**
 * Where each table starts, in BigInt64 elements of `totals` and in Int32 counters of a ring slot; every thread works
 * it out from the layout alone. Multi-dimensional tables are row-major in the order their comments give.
 */
class Offsets {
  /** [zone][method][code] */
  readonly requestsAt = 0;
  /** [zone][bucket], then [zone]: microseconds. */
  readonly durationAt: number;
  readonly durationSumsAt: number;
  readonly upstreamAt: number;
  readonly upstreamSumsAt: number;
  /** [from region][to region] */
  readonly failoversAt: number;
  /** [nearest region]: exchanges, then tunnels. The summary shows the first, the exporter their sum. */
  readonly misroutesAt: number;
  readonly tunnelMisroutesAt: number;
  /** [retry reason] */
  readonly retriesAt: number;
  /** [misroute reason][km bucket], then [misroute reason]: whole km. Requests and tunnels alike. */
  readonly misrouteKmAt: number;
  readonly misrouteKmSumsAt: number;
  /** [country]: located requests. Last, so the exporter reads every table before it. */
  readonly countriesAt: number;
  readonly totalsLength: number;
  /** In a ring slot: [zone][summary bucket], then failed [zone], then [country][column]; column 0 is `none`, column r + 1 region r. */
  readonly failedAt: number;
  readonly countryCellsAt: number;
  readonly columns: number;
  readonly perSlot: number;

  constructor(layout: TrafficLayout) {
    const zones = layout.zones.length;
    const regions = layout.regions.length;
    this.durationAt = zones * METHODS.length * CODES.length;
    this.durationSumsAt = this.durationAt + zones * LATENCY_WIDTH;
    this.upstreamAt = this.durationSumsAt + zones;
    this.upstreamSumsAt = this.upstreamAt + zones * LATENCY_WIDTH;
    this.failoversAt = this.upstreamSumsAt + zones;
    this.misroutesAt = this.failoversAt + regions * regions;
    this.tunnelMisroutesAt = this.misroutesAt + regions;
    this.retriesAt = this.tunnelMisroutesAt + regions;
    this.misrouteKmAt = this.retriesAt + RETRY_REASONS.length;
    this.misrouteKmSumsAt = this.misrouteKmAt + MISROUTE_REASONS.length * MISROUTE_KM_WIDTH;
    this.countriesAt = this.misrouteKmSumsAt + MISROUTE_REASONS.length;
    this.totalsLength = this.countriesAt + COUNTRY_CODES.length;
    this.failedAt = zones * SUMMARY_BUCKETS;
    this.countryCellsAt = this.failedAt + zones;
    this.columns = regions + 1;
    this.perSlot = this.countryCellsAt + COUNTRY_CODES.length * this.columns;
  }
}

/** One thread's views over one generation of tables. */
export class TrafficTables extends Offsets {
  readonly descriptor: TrafficTablesDescriptor;
  readonly generation: number;
  readonly layout: TrafficLayout;
  readonly totals: BigInt64Array<SharedArrayBuffer>;
  readonly ring: SecondRing;
  readonly failoverLog: FailoverLog;
  readonly #zoneSlots: ReadonlyMap<string, number>;
  readonly #regionIndexes: ReadonlyMap<string, number>;

  constructor(descriptor: TrafficTablesDescriptor) {
    const { layout, buffers } = descriptor;
    super(layout);
    this.descriptor = descriptor;
    this.generation = descriptor.generation;
    this.layout = layout;
    this.totals = new BigInt64Array(buffers.totals);
    if (this.totals.length !== this.totalsLength) throw new RangeError(`traffic tables generation ${descriptor.generation}: the totals buffer does not fit the layout`);
    this.ring = new SecondRing(buffers.ring, RING_SLOTS, this.perSlot);
    this.failoverLog = new FailoverLog(buffers.failovers);
    this.#zoneSlots = new Map(layout.zones.map(({ region, zone }, slot) => [zoneKey(region, zone), slot]));
    this.#regionIndexes = new Map(layout.regions.map((name, index) => [name, index]));
  }

  /** -1 for a zone the layout lacks. */
  zoneSlot(region: string, zone: string): number {
    return this.#zoneSlots.get(zoneKey(region, zone)) ?? -1;
  }

  /** -1 for a region the layout lacks. */
  regionIndex(name: string): number {
    return this.#regionIndexes.get(name) ?? -1;
  }

  /** A counter of `totals` as a number: exact up to 2^53. */
  total(index: number): number {
    return Number(Atomics.load(this.totals, index));
  }
}

/** Names may not hold a slash (the config schema allows letters, digits, `-` and `_`). */
function zoneKey(region: string, zone: string): string {
  return `${region}/${zone}`;
}

/**
 * The control plane's side, on the main thread: it makes the generations and keeps every one, so the readers add up
 * totals that never go down. A reload makes a new generation only when it brings a zone or region name that the
 * newest lacks; it copies nothing, because recorders may still be counting into the old one, and readers add both.
 * The process keeps one generation per such reload, a few hundred kilobytes each at most.
 */
export class TrafficCatalog {
  readonly #failovers = FailoverLog.allocate();
  readonly #generations: TrafficTables[] = [];
  readonly failoverLog = new FailoverLog(this.#failovers);

  /** The newest tables, after making a wider generation if the topology has a name they lack. */
  describe(topology: Topology): TrafficTablesDescriptor {
    const newest = this.#generations.at(-1);
    const zones: ZoneName[] = newest === undefined ? [Object.freeze({ region: NONE, zone: NONE })] : [...newest.layout.zones];
    const regions = newest === undefined ? [] : [...newest.layout.regions];
    const known = new Set(zones.map(({ region, zone }) => zoneKey(region, zone)));
    for (const region of topology.regions) {
      if (!regions.includes(region.name)) regions.push(region.name);
      for (const zone of region.zones) {
        if (known.has(zoneKey(region.name, zone.name))) continue;
        known.add(zoneKey(region.name, zone.name));
        zones.push(Object.freeze({ region: region.name, zone: zone.name }));
      }
    }
    if (newest !== undefined && zones.length === newest.layout.zones.length && regions.length === newest.layout.regions.length) return newest.descriptor;
    const layout: TrafficLayout = Object.freeze({ zones: Object.freeze(zones), regions: Object.freeze(regions) });
    const offsets = new Offsets(layout);
    const descriptor: TrafficTablesDescriptor = Object.freeze({
      generation: this.#generations.length + 1,
      layout,
      buffers: Object.freeze({
        totals: new SharedArrayBuffer(offsets.totalsLength * BigInt64Array.BYTES_PER_ELEMENT),
        ring: SecondRing.allocate(RING_SLOTS, offsets.perSlot),
        failovers: this.#failovers,
      }),
    });
    this.#generations.push(new TrafficTables(descriptor));
    return descriptor;
  }

  /** Oldest first; readers add up all of them. */
  get generations(): readonly TrafficTables[] {
    return this.#generations;
  }

  /** The tables every recorder will count into once it has attached the newest descriptor. */
  get newest(): TrafficTables {
    const newest = this.#generations.at(-1);
    if (newest === undefined) throw new Error('no traffic tables yet: describe a topology first');
    return newest;
  }
}
