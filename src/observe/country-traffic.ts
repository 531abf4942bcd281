// Recent traffic by client country, for the dashboard's map: requests since start and, over the summary window, the
// rate by the region that served them. Fixed arrays indexed by a country index compiled once, so counting is arithmetic.
import { readFileSync } from 'node:fs';
import { NONE } from './labels.ts';

/** Every code of geo-data/countries.json, in file order: a country's index is its position here. */
export const COUNTRY_CODES: readonly string[] = Object.freeze(
  Object.keys(JSON.parse(readFileSync(new URL('../../geo-data/countries.json', import.meta.url), 'utf8')) as object),
);

// By the code's two letters (A–Z each): its country index, or -1. Indexing by letters needs no hashing at all.
const INDEX_OF_LETTERS = new Int16Array(26 * 26).fill(-1);
for (const [index, code] of COUNTRY_CODES.entries()) INDEX_OF_LETTERS[(code.charCodeAt(0) - 65) * 26 + code.charCodeAt(1) - 65] = index;

/** The index of an ISO 3166-1 alpha-2 code in COUNTRY_CODES, or -1 for null, lower case or a code the file lacks. */
export function countryIndex(code: string | null): number {
  if (code === null || code.length !== 2) return -1;
  const a = code.charCodeAt(0) - 65;
  const b = code.charCodeAt(1) - 65;
  if (a < 0 || a > 25 || b < 0 || b > 25) return -1;
  return INDEX_OF_LETTERS[a * 26 + b];
}

export interface CountryTraffic {
  /** ISO 3166-1 alpha-2, as the geo database gave it. */
  readonly country: string;
  /** Since start. */
  readonly requests: number;
  /** Requests per second over the window. */
  readonly rps: number;
  /** The same rate split by the region whose endpoint served it (`none`: no endpoint did), busiest first. */
  readonly servedBy: Readonly<Record<string, number>>;
}

/**
 * Per ring slot (one second each) a country × region matrix of counts. Regions are columns by name, added as
 * reloads bring new ones and never removed, so history survives a reload and a finishing exchange of an older
 * topology still counts under its own region. Column 0 is `none`.
 */
export class CountryTally {
  readonly #ring: number;
  readonly #window: number;
  readonly #requests = new Float64Array(COUNTRY_CODES.length);
  readonly #second: Float64Array;
  #regions: string[] = [NONE];
  #counts: Uint32Array;

  constructor(windowSeconds: number) {
    this.#window = windowSeconds;
    // One slot more than the window, so the second being filled never overwrites one being read.
    this.#ring = windowSeconds + 1;
    this.#second = new Float64Array(this.#ring).fill(-1);
    this.#counts = new Uint32Array(this.#ring * COUNTRY_CODES.length);
  }

  /** The column of each region name, in the order given; new names widen the matrix. Once per topology. */
  columns(regions: readonly string[]): Int32Array {
    const fresh = regions.filter((name) => !this.#regions.includes(name));
    if (fresh.length > 0) {
      const before = this.#regions.length;
      const after = before + fresh.length;
      const counts = new Uint32Array(this.#ring * COUNTRY_CODES.length * after);
      for (let row = 0; row < this.#ring * COUNTRY_CODES.length; row++) {
        counts.set(this.#counts.subarray(row * before, (row + 1) * before), row * after);
      }
      this.#counts = counts;
      this.#regions = [...this.#regions, ...fresh];
    }
    return Int32Array.from(regions, (name) => this.#regions.indexOf(name));
  }

  /** One finished request from the country at `index`, served in `column` (0: by no endpoint). */
  record(second: number, index: number, column: number): void {
    this.#requests[index]++;
    const width = this.#regions.length;
    const rowsPerSlot = COUNTRY_CODES.length * width;
    const slot = second % this.#ring;
    if (this.#second[slot] !== second) {
      this.#second[slot] = second;
      this.#counts.fill(0, slot * rowsPerSlot, (slot + 1) * rowsPerSlot);
    }
    this.#counts[slot * rowsPerSlot + index * width + column]++;
  }

  /** Every country seen since start, busiest first; rates over the whole seconds before `nowSecond`. */
  snapshot(nowSecond: number, seconds: number): CountryTraffic[] {
    const width = this.#regions.length;
    const rowsPerSlot = COUNTRY_CODES.length * width;
    const slots: number[] = [];
    for (let slot = 0; slot < this.#ring; slot++) {
      const second = this.#second[slot];
      if (second < nowSecond && second >= nowSecond - this.#window) slots.push(slot);
    }
    const result: CountryTraffic[] = [];
    const byRegion = new Float64Array(width);
    for (let index = 0; index < COUNTRY_CODES.length; index++) {
      if (this.#requests[index] === 0) continue;
      byRegion.fill(0);
      for (const slot of slots) {
        for (let column = 0; column < width; column++) byRegion[column] += this.#counts[slot * rowsPerSlot + index * width + column];
      }
      const served = [...byRegion.keys()].filter((column) => byRegion[column] > 0).sort((a, b) => byRegion[b] - byRegion[a]);
      const total = served.reduce((sum, column) => sum + byRegion[column], 0);
      result.push({
        country: COUNTRY_CODES[index],
        requests: this.#requests[index],
        rps: total / seconds,
        servedBy: Object.fromEntries(served.map((column) => [this.#regions[column], byRegion[column] / seconds])),
      });
    }
    return result.sort((a, b) => b.rps - a.rps || b.requests - a.requests);
  }
}
