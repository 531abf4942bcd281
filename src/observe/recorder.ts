// The data-plane half of the observers: counts every published record into the shared traffic tables with Atomics,
// on the thread that publishes it, for the exporter and the summary to read on the main thread. It keys on what a
// thread works out from its own copy of the config: an endpoint's index, mapped once per topology to slots by name.
import diagnostics from 'node:diagnostics_channel';
import type { Topology } from '../config/types.ts';
import type { ExchangeRecord, FailoverRecord, TunnelRecord } from '../proxy/record.ts';
import { exchangeEnd, exchangeFailover, tunnelClose } from '../proxy/events.ts';
import { countryIndex } from './country-traffic.ts';
import { CODE_5XX, CODES, METHODS, codeIndex, retryIndex } from './labels.ts';
import { LATENCY_BUCKETS, LATENCY_WIDTH, MISROUTE_KM_BUCKETS, MISROUTE_KM_WIDTH, NONE_SLOT, SUMMARY_BUCKETS, TrafficTables, summaryBucket, type TrafficTablesDescriptor } from './traffic-tables.ts';

/** A topology's endpoints, by index, in the tables' zone slots and region indexes. */
interface TopologySlots {
  readonly topology: Topology | null;
  readonly zoneOf: Int32Array;
  readonly regionOf: Int32Array;
}

/** Tables covering a topology whose names the attached ones lack: on the main thread, the catalog itself. */
export type CoverTopology = (topology: Topology) => TrafficTablesDescriptor;

/**
 * Per finished exchange: the request count, the duration histogram's bucket and sum, the upstream histogram's when
 * headers came, the summary's latency bucket for the second, and for a located client its country's total and cell:
 * six atomic additions, eight when located; one more for an error, a misroute or a new second, two more for a
 * misroute's cost (its reason's km bucket and km sum).
 */
export class TrafficRecorder {
  #tables: TrafficTables;
  readonly #cover: CoverTopology | null;
  /** Slots stay valid in later generations (their layouts only append), so nothing here is dropped on attach. */
  readonly #byTopology = new WeakMap<Topology, TopologySlots>();
  #last: TopologySlots = { topology: null, zoneOf: new Int32Array(0), regionOf: new Int32Array(0) };
  #subscribed = false;

  /**
   * `cover` is for a recorder beside the catalog. A worker has none: the control plane posts it the tables of a
   * topology before the snapshot that serves it, and a record of a topology its tables lack is a bug that throws.
   */
  constructor(descriptor: TrafficTablesDescriptor, cover: CoverTopology | null = null) {
    this.#tables = new TrafficTables(descriptor);
    this.#cover = cover;
  }

  /** Counts into these tables from now on: the same generation or a later one. */
  attach(descriptor: TrafficTablesDescriptor): void {
    const current = this.#tables;
    if (descriptor.generation === current.generation) return;
    const next = new TrafficTables(descriptor);
    const widens =
      next.generation > current.generation &&
      current.layout.zones.every((z, i) => next.layout.zones[i]?.region === z.region && next.layout.zones[i].zone === z.zone) &&
      current.layout.regions.every((name, i) => next.layout.regions[i] === name);
    if (!widens) throw new RangeError(`traffic tables generation ${descriptor.generation} does not extend generation ${current.generation}`);
    this.#tables = next;
  }

  /** Starts counting what the data plane of this thread publishes. */
  subscribe(): this {
    if (this.#subscribed) return this;
    this.#subscribed = true;
    diagnostics.subscribe(exchangeEnd.name as string, this.#onExchangeEnd);
    diagnostics.subscribe(exchangeFailover.name as string, this.#onFailover);
    diagnostics.subscribe(tunnelClose.name as string, this.#onTunnelClose);
    return this;
  }

  close(): void {
    if (!this.#subscribed) return;
    this.#subscribed = false;
    diagnostics.unsubscribe(exchangeEnd.name as string, this.#onExchangeEnd);
    diagnostics.unsubscribe(exchangeFailover.name as string, this.#onFailover);
    diagnostics.unsubscribe(tunnelClose.name as string, this.#onTunnelClose);
  }

  /** The hot path: one pointer comparison unless the topology changed since the last record. */
  #slotsOf(topology: Topology): TopologySlots {
    const last = this.#last;
    if (topology === last.topology) return last;
    const slots = this.#byTopology.get(topology) ?? this.#map(topology);
    this.#last = slots;
    return slots;
  }

  #map(topology: Topology): TopologySlots {
    let slots = slotsIn(this.#tables, topology);
    if (slots === null && this.#cover !== null) {
      this.attach(this.#cover(topology));
      slots = slotsIn(this.#tables, topology);
    }
    if (slots === null) throw new RangeError(`traffic tables generation ${this.#tables.generation} lack zones or regions of a topology: attach its tables first`);
    this.#byTopology.set(topology, slots);
    return slots;
  }

  /** What `subscribe` does with every published record; callable directly with records from elsewhere. */
  countExchange(record: ExchangeRecord): void {
    const slots = this.#slotsOf(record.topology);
    const tables = this.#tables;
    const { totals } = tables;
    const endpoint = record.endpoint;
    const zone = endpoint === null ? NONE_SLOT : slots.zoneOf[endpoint.index];
    const code = codeIndex(record);
    const ms = record.durationMs;
    Atomics.add(totals, tables.requestsAt + (zone * METHODS.length + record.methodClass) * CODES.length + code, 1n);
    observe(totals, tables.durationAt + zone * LATENCY_WIDTH, tables.durationSumsAt + zone, ms);
    if (record.upstreamHeadersMs >= 0) observe(totals, tables.upstreamAt + zone * LATENCY_WIDTH, tables.upstreamSumsAt + zone, record.upstreamHeadersMs);
    const country = countryIndex(record.country);
    if (country >= 0) Atomics.add(totals, tables.countriesAt + country, 1n);
    // The record's own end, so counting it in its second needs no clock read.
    const start = tables.ring.claim(Math.floor((record.startedAt + ms) / 1000));
    if (start >= 0) {
      const { counts } = tables.ring;
      Atomics.add(counts, start + zone * SUMMARY_BUCKETS + summaryBucket(ms), 1);
      if (code >= CODE_5XX) Atomics.add(counts, start + tables.failedAt + zone, 1);
      // Column 0 is `none`: the request was located but no endpoint served it.
      if (country >= 0) Atomics.add(counts, start + tables.countryCellsAt + country * tables.columns + (endpoint === null ? 0 : slots.regionOf[endpoint.index] + 1), 1);
    }
    if (record.misrouteNearest !== null) countMisroute(tables, tables.misroutesAt, record.misrouteNearest);
    const reason = record.misrouteReason;
    if (reason !== undefined && reason >= 0) countCost(tables, reason, record.misrouteKm ?? 0);
  }

  countFailover({ topology, from, to, reason }: FailoverRecord): void {
    const { regionOf } = this.#slotsOf(topology);
    const tables = this.#tables;
    Atomics.add(tables.totals, tables.retriesAt + retryIndex(reason), 1n);
    Atomics.add(tables.totals, tables.failoversAt + regionOf[from.index] * tables.layout.regions.length + regionOf[to.index], 1n);
    tables.failoverLog.append(Date.now(), reason, from, to);
  }

  countTunnel({ misrouteNearest, misrouteReason, misrouteKm }: TunnelRecord): void {
    if (misrouteNearest !== null) countMisroute(this.#tables, this.#tables.tunnelMisroutesAt, misrouteNearest);
    if (misrouteReason !== undefined && misrouteReason >= 0) countCost(this.#tables, misrouteReason, misrouteKm ?? 0);
  }

  readonly #onExchangeEnd = (message: unknown): void => this.countExchange(message as ExchangeRecord);
  readonly #onFailover = (message: unknown): void => this.countFailover(message as FailoverRecord);
  readonly #onTunnelClose = (message: unknown): void => this.countTunnel(message as TunnelRecord);
}

/** Null when the tables lack a name of the topology. */
function slotsIn(tables: TrafficTables, topology: Topology): TopologySlots | null {
  if (topology.regions.some((region) => tables.regionIndex(region.name) === -1)) return null;
  const { endpoints } = topology;
  const zoneOf = new Int32Array(endpoints.length);
  const regionOf = new Int32Array(endpoints.length);
  for (const endpoint of endpoints) {
    zoneOf[endpoint.index] = tables.zoneSlot(endpoint.region, endpoint.zone);
    regionOf[endpoint.index] = tables.regionIndex(endpoint.region);
    if (zoneOf[endpoint.index] === -1) return null;
  }
  return { topology, zoneOf, regionOf };
}

/** Sums in whole microseconds: an integer add is exact from any number of threads, where floats would lose updates. */
function observe(totals: BigInt64Array<SharedArrayBuffer>, bucketsAt: number, sumAt: number, ms: number): void {
  const seconds = ms / 1000;
  let bucket = 0;
  // Most answers are fast, so a scan from the bottom beats a binary search.
  while (bucket < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[bucket]) bucket++;
  Atomics.add(totals, bucketsAt + bucket, 1n);
  Atomics.add(totals, sumAt, BigInt(Math.round(ms * 1000)));
}

function countMisroute(tables: TrafficTables, at: number, nearest: string): void {
  const region = tables.regionIndex(nearest);
  if (region !== -1) Atomics.add(tables.totals, at + region, 1n);
}

/** A misroute's extra distance: its bucket under its reason, and the whole km into the reason's sum. */
function countCost(tables: TrafficTables, reason: number, km: number): void {
  let bucket = 0;
  while (bucket < MISROUTE_KM_BUCKETS.length && km > MISROUTE_KM_BUCKETS[bucket]) bucket++;
  Atomics.add(tables.totals, tables.misrouteKmAt + reason * MISROUTE_KM_WIDTH + bucket, 1n);
  Atomics.add(tables.totals, tables.misrouteKmSumsAt + reason, BigInt(Math.round(km)));
}
