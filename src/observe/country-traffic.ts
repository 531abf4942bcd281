// Recent traffic by client country, for the dashboard's map: requests since start and, over the summary window, the
// rate by the region that served them. Counted in tables indexed by a country index compiled once, so counting is arithmetic.
import { readFileSync } from 'node:fs';

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
 * Every country with requests since start, busiest over the window first. `requests` is by country index; `window`
 * holds the window's counts by country index, then column, `columns` wide; `columnNames[c]` names column c (0: `none`).
 */
export function countryTraffic(requests: ArrayLike<number>, window: ArrayLike<number>, columnNames: readonly string[], seconds: number): CountryTraffic[] {
  const width = columnNames.length;
  const result: CountryTraffic[] = [];
  for (let index = 0; index < COUNTRY_CODES.length; index++) {
    if (requests[index] === 0) continue;
    const row = index * width;
    const served: number[] = [];
    let total = 0;
    for (let column = 0; column < width; column++) {
      if (window[row + column] === 0) continue;
      served.push(column);
      total += window[row + column];
    }
    served.sort((a, b) => window[row + b] - window[row + a]);
    result.push({
      country: COUNTRY_CODES[index],
      requests: requests[index],
      rps: total / seconds,
      servedBy: Object.fromEntries(served.map((column) => [columnNames[column], window[row + column] / seconds])),
    });
  }
  return result.sort((a, b) => b.rps - a.rps || b.requests - a.requests);
}
