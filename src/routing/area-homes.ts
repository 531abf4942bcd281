// Hysteresis for latency order: the home region of every client area, held until another region has been cheaper by
// `routing.latency.margin` for `routing.latency.window` without a break (back to the area's distance home: cheaper at
// all for the window). The control plane updates it once a second
// and publishes the homes with the data-plane snapshot, so every worker sends an area's clients to the same region.
//
// A client area is a cell of a 2° latitude × 2° longitude grid (at most ~220 km across: about 2 ms of the distance
// term, well under the default margin), one grid per set of regions a client may be homed in: every region, or one
// fence's. Costs are taken at the cell's centre; a request's own location picks its cell.
import type { MeridianConfig } from '../config/types.ts';
import { greatCircleKm } from '../geo/distance.ts';
import { KM_PER_MS, measuredMs, UNMEASURED, type RegionLatency } from './latency-cost.ts';

export const AREA_DEGREES = 2;
const ROWS = 180 / AREA_DEGREES;
const COLUMNS = 360 / AREA_DEGREES;
export const AREA_COUNT = ROWS * COLUMNS;
/** No challenger. Region indexes fit in 7 bits: the config allows at most 64 regions. */
const NONE = 255;
/** Set on a published home that latency moved away from the area's distance home. */
export const MOVED = 0x80;

export function areaOf(lat: number, lon: number): number {
  const row = Math.min(ROWS - 1, Math.max(0, Math.floor((lat + 90) / AREA_DEGREES)));
  const column = Math.min(COLUMNS - 1, Math.max(0, Math.floor((lon + 180) / AREA_DEGREES)));
  return row * COLUMNS + column;
}

export function areaCentre(area: number): { lat: number; lon: number } {
  const row = Math.floor(area / COLUMNS);
  return { lat: -90 + (row + 0.5) * AREA_DEGREES, lon: -180 + ((area % COLUMNS) + 0.5) * AREA_DEGREES };
}

/** The region set a client without affinity is homed in: 0 for every region, 1 + i for `routing.fences[i]`'s. */
export function homeSetOf(config: MeridianConfig, fence: { readonly name: string } | null): number {
  return fence === null ? 0 : 1 + config.routing.fences.findIndex((f) => f === fence || f.name === fence.name);
}

/** What the data plane reads: plain data, posted to workers as it is. */
export interface PublishedHomes {
  /** Counts publications; a worker's router memo is only as old as its snapshot. */
  readonly version: number;
  /** By region index of the config's topology. */
  readonly latency: readonly RegionLatency[];
  /**
   * By `set * AREA_COUNT + area`: the area's home region index, with MOVED set when latency moved it away from the
   * region distance picks for the area.
   */
  readonly homes: Uint8Array;
}

/** A challenger that has not yet held its lead for the whole window, as explain shows it. */
export interface PendingHome {
  readonly region: string;
  readonly since: number;
  readonly leadMs: number;
}

export class AreaHomes {
  readonly #regionNames: readonly string[];
  readonly #fenceNames: readonly string[];
  /** Region indexes per set. */
  readonly #sets: readonly Uint8Array[];
  readonly #self: number;
  readonly #localPreferenceKm: number;
  readonly #errorPenaltyMs: number;
  readonly #marginMs: number;
  readonly #windowMs: number;
  /** Distance term in ms from each area's centre to each region: `area * regions + region`. Fixed per config. */
  readonly #distanceMs: Float32Array;
  readonly #homes: Uint8Array;
  /** Each cell's home with nothing measured: the distance rule at its centre. */
  readonly #distanceHomes: Uint8Array;
  readonly #challenger: Uint8Array;
  readonly #since: Float64Array;
  #latency: readonly RegionLatency[];
  #published: PublishedHomes;

  /**
   * Homes start as distance order with the local preference picks them (nothing measured yet), or as `previous` had
   * them where its set and region still exist, so a reload does not move clients by itself.
   */
  constructor(config: MeridianConfig, previous: AreaHomes | null = null) {
    const { regions, self } = config.topology;
    const { routing } = config;
    this.#regionNames = regions.map((r) => r.name);
    this.#fenceNames = routing.fences.map((f) => f.name);
    const indexOf = new Map(this.#regionNames.map((name, i) => [name, i]));
    this.#sets = [this.#regionNames, ...routing.fences.map((f) => f.regions)].map((names) => Uint8Array.from(names.map((n) => indexOf.get(n)!).filter((i) => i !== undefined)));
    this.#self = indexOf.get(self.region) ?? -1;
    this.#localPreferenceKm = routing.localPreferenceKm;
    ({ errorPenaltyMs: this.#errorPenaltyMs, marginMs: this.#marginMs, windowMs: this.#windowMs } = routing.latency);
    const count = regions.length;
    this.#distanceMs = new Float32Array(AREA_COUNT * count);
    for (let area = 0; area < AREA_COUNT; area++) {
      const { lat, lon } = areaCentre(area);
      for (let r = 0; r < count; r++) this.#distanceMs[area * count + r] = greatCircleKm(lat, lon, regions[r].lat, regions[r].lon) / KM_PER_MS;
    }
    this.#latency = regions.map(() => UNMEASURED);
    const cells = this.#sets.length * AREA_COUNT;
    this.#homes = new Uint8Array(cells);
    this.#distanceHomes = new Uint8Array(cells);
    this.#challenger = new Uint8Array(cells).fill(NONE);
    this.#since = new Float64Array(cells);
    const unmeasured = this.#measured();
    const carried = previous === null ? undefined : previous.#carryMap(this.#regionNames, routing.fences.map((f) => f.name));
    for (let set = 0; set < this.#sets.length; set++) {
      if (this.#sets[set].length === 0) continue;
      for (let area = 0; area < AREA_COUNT; area++) {
        const cell = set * AREA_COUNT + area;
        const kept = carried?.(set, area);
        this.#distanceHomes[cell] = this.#cheapest(set, area, unmeasured);
        this.#homes[cell] = kept !== undefined && this.#sets[set].includes(kept) ? kept : this.#distanceHomes[cell];
      }
    }
    this.#published = this.#publish((previous === null ? 0 : previous.#published.version) + 1);
  }

  get published(): PublishedHomes {
    return this.#published;
  }

  /**
   * Takes this second's measurements. Returns true when a new publication is due: an area's home moved, a region got
   * its first RTT, or a region's measured cost moved by the margin since the last one (the order after the home and
   * explain follow it). Smaller drifts are not worth it: a publication rebuilds every worker's router, and each
   * client location then pays for one fresh decision (~20 µs).
   */
  update(latency: readonly RegionLatency[], now: number): boolean {
    this.#latency = latency;
    const measured = this.#measured();
    const count = this.#regionNames.length;
    let moved = false;
    for (let set = 0; set < this.#sets.length; set++) {
      const members = this.#sets[set];
      if (members.length === 0) continue;
      for (let area = 0; area < AREA_COUNT; area++) {
        const cell = set * AREA_COUNT + area;
        const best = this.#cheapest(set, area, measured);
        const home = this.#homes[cell];
        const lead = this.#distanceMs[area * count + home] + measured[home] - (this.#distanceMs[area * count + best] + measured[best]);
        // Leaving the distance home takes the margin; going back to it only takes the window, so a passing slowdown
        // cannot leave an area on a farther region for good.
        const needed = best === this.#distanceHomes[cell] ? Number.MIN_VALUE : this.#marginMs;
        if (best === home || !(lead >= needed) || members.length < 2) {
          this.#challenger[cell] = NONE;
        } else if (this.#challenger[cell] !== best) {
          this.#challenger[cell] = best;
          this.#since[cell] = now;
        } else if (now - this.#since[cell] >= this.#windowMs) {
          this.#homes[cell] = best;
          this.#challenger[cell] = NONE;
          moved = true;
        }
      }
    }
    const shifted = latency.some((l, r) => {
      const before = this.#published.latency[r];
      const cost = (x: RegionLatency): number => measuredMs(x, false, 0, this.#errorPenaltyMs);
      return (l.rttMs === null) !== (before.rttMs === null) || Math.abs(cost(l) - cost(before)) >= this.#marginMs;
    });
    if (moved || shifted) this.#published = this.#publish(this.#published.version + 1);
    return moved || shifted;
  }

  /** Per region index: the client areas (of every set) latency has moved to it from the region distance picks. */
  movedAreas(): number[] {
    const counts = this.#regionNames.map(() => 0);
    for (let cell = 0; cell < this.#homes.length; cell++) if (this.#homes[cell] !== this.#distanceHomes[cell]) counts[this.#homes[cell]]++;
    return counts;
  }

  /** The challenger of one area, if one is cheaper by the margin but has not held it for the window yet. */
  pending(set: number, area: number): PendingHome | null {
    const cell = set * AREA_COUNT + area;
    const challenger = this.#challenger[cell];
    if (challenger === NONE || set >= this.#sets.length) return null;
    const measured = this.#measured();
    const count = this.#regionNames.length;
    const home = this.#homes[cell];
    const lead = this.#distanceMs[area * count + home] + measured[home] - (this.#distanceMs[area * count + challenger] + measured[challenger]);
    return { region: this.#regionNames[challenger], since: this.#since[cell], leadMs: lead };
  }

  #publish(version: number): PublishedHomes {
    const homes = new Uint8Array(this.#homes.length);
    for (let cell = 0; cell < homes.length; cell++) homes[cell] = this.#homes[cell] === this.#distanceHomes[cell] ? this.#homes[cell] : this.#homes[cell] | MOVED;
    return Object.freeze({ version, latency: this.#latency, homes });
  }

  #measured(): Float64Array {
    return Float64Array.from(this.#latency, (l, r) => measuredMs(l, r === this.#self, this.#localPreferenceKm, this.#errorPenaltyMs));
  }

  /** Ties go to the region listed first in the set, and this instance's region wins ties through its bonus. */
  #cheapest(set: number, area: number, measured: Float64Array): number {
    const members = this.#sets[set];
    const count = this.#regionNames.length;
    let best = members[0];
    let bestCost = Infinity;
    for (const r of members) {
      const cost = this.#distanceMs[area * count + r] + measured[r];
      if (cost < bestCost || (cost === bestCost && r === this.#self)) {
        best = r;
        bestCost = cost;
      }
    }
    return best;
  }

  /** This generation's home of each cell, looked up by the new config's fence names and region numbering. */
  #carryMap(regionNames: readonly string[], fenceNames: readonly string[]): (set: number, area: number) => number | undefined {
    const newIndex = new Map(regionNames.map((name, i) => [name, i]));
    // Set 0 is every region in both configs; a fence's set carries over by the fence's name.
    const oldSet = [0, ...fenceNames.map((name) => 1 + this.#fenceNames.indexOf(name))];
    return (set, area) => {
      const from = oldSet[set];
      if (from === undefined || (set > 0 && from === 0)) return undefined;
      return newIndex.get(this.#regionNames[this.#homes[from * AREA_COUNT + area]]);
    };
  }
}
