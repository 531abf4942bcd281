// What latency order measures of each region, once a second on the control plane: the smoothed probe RTT of its best
// usable endpoint, the lowest RTT seen lately (the floor slowness is measured against), and its failed-request share.
import type { Topology } from '../config/types.ts';
import type { HealthSnapshot } from '../health/state.ts';
import type { RegionLatency } from '../routing/latency-cost.ts';
import { CODE_5XX, CODES, METHODS } from '../observe/labels.ts';
import type { TrafficCatalog } from '../observe/traffic-tables.ts';

/**
 * The floor is the lowest smoothed RTT over the last day, kept as hourly minima. A day, not minutes: a region that
 * stays slow through a busy afternoon must keep counting as slow. The price is that a path that got longer for good
 * counts as slowness until its old minimum leaves the window.
 */
const FLOOR_HOURS = 24;
const HOUR_MS = 3_600_000;
/**
 * The error share is taken over the last 10 s… Once a region's clients have moved away, its failures age out of this
 * window and its clients come back after the hysteresis window: a region that still fails sinks again, which is how
 * a sunk region gets tried again without probes that could tell errors apart.
 */
const ERROR_WINDOW_MS = 10_000;
/** …and only from this many requests up: one failure in three requests says little about a region. */
const MIN_REQUESTS_FOR_ERRORS = 20;

class RttFloor {
  #hour = -1;
  #hourly: number[] = [];

  /** Records `rttMs` at `now` and returns the lowest value of the window. */
  observe(rttMs: number, now: number): number {
    const hour = Math.floor(now / HOUR_MS);
    if (hour !== this.#hour) {
      this.#hourly.push(rttMs);
      if (this.#hourly.length > FLOOR_HOURS + 1) this.#hourly.shift();
      this.#hour = hour;
    } else if (rttMs < this.#hourly[this.#hourly.length - 1]) {
      this.#hourly[this.#hourly.length - 1] = rttMs;
    }
    return Math.min(...this.#hourly);
  }
}

/** Per region, by name, so floors and error history carry over reloads that keep the region. */
interface RegionHistory {
  readonly floor: RttFloor;
  /** Cumulative requests and failures at each read of the last ERROR_WINDOW_MS (and one before), oldest first. */
  readonly reads: { readonly at: number; readonly requests: number; readonly failures: number }[];
}

export class RegionLatencyMeter {
  readonly #catalog: TrafficCatalog | null;
  readonly #history = new Map<string, RegionHistory>();

  /** Without a catalog (tests of routing alone) the error share stays 0. */
  constructor(catalog: TrafficCatalog | null) {
    this.#catalog = catalog;
  }

  /** This second's measurement of every region of `topology`, in its order. */
  measure(topology: Topology, health: HealthSnapshot, now: number): RegionLatency[] {
    return topology.regions.map((region) => {
      let history = this.#history.get(region.name);
      if (history === undefined) this.#history.set(region.name, (history = { floor: new RttFloor(), reads: [] }));
      let usable: number | null = null;
      let any: number | null = null;
      for (const zone of region.zones) {
        for (const endpoint of zone.endpoints) {
          const rtt = health.rttMs[endpoint.index];
          if (rtt === null || rtt === undefined) continue;
          if (any === null || rtt < any) any = rtt;
          if (health.usable[endpoint.index] !== false && (usable === null || rtt < usable)) usable = rtt;
        }
      }
      // A region with nothing usable is failed over by health; its cost still needs a number to explain.
      const rttMs = usable ?? any;
      const floorMs = rttMs === null ? null : history.floor.observe(rttMs, now);
      return { rttMs, floorMs, errorRatio: this.#errorRatio(region.name, region.zones.map((z) => z.name), history, now) };
    });
  }

  #errorRatio(region: string, zones: readonly string[], history: RegionHistory, now: number): number {
    if (this.#catalog === null) return 0;
    let requests = 0;
    let failures = 0;
    const perZone = METHODS.length * CODES.length;
    for (const tables of this.#catalog.generations) {
      for (const zone of zones) {
        const slot = tables.zoneSlot(region, zone);
        if (slot < 0) continue;
        const first = tables.requestsAt + slot * perZone;
        for (let cell = 0; cell < perZone; cell++) {
          const count = tables.total(first + cell);
          requests += count;
          if (cell % CODES.length >= CODE_5XX) failures += count;
        }
      }
    }
    const { reads } = history;
    reads.push({ at: now, requests, failures });
    // The oldest read kept is the last one at or before the window's start: the counts since then are the window's.
    while (reads.length > 2 && reads[1].at <= now - ERROR_WINDOW_MS) reads.shift();
    const windowRequests = requests - reads[0].requests;
    const windowFailures = failures - reads[0].failures;
    return windowRequests < MIN_REQUESTS_FOR_ERRORS ? 0 : windowFailures / windowRequests;
  }
}
