import { describe, expect, test } from 'vitest';
import { COUNTRY_CODES, countryIndex, countryTraffic } from './country-traffic.ts';

describe('countryIndex', () => {
  test.each([
    ['SE', 'SE'],
    ['XK', 'XK'],
    ['AD', 'AD'],
    ['ZW', 'ZW'],
  ])('%s is found', (code, expected) => {
    expect(COUNTRY_CODES[countryIndex(code)]).toBe(expected);
  });

  test.each([[null], [''], ['S'], ['SWE'], ['se'], ['S1'], ['[A'], ['AA'], ['ZZ']])('%s is no country', (code) => {
    expect(countryIndex(code)).toBe(-1);
  });
});

describe('countryTraffic', () => {
  const SE = countryIndex('SE');
  const GB = countryIndex('GB');
  const columns = ['none', 'eu-north', 'eu-south'];

  function window(cells: [country: number, column: number, count: number][]): Float64Array {
    const counts = new Float64Array(COUNTRY_CODES.length * columns.length);
    for (const [country, column, count] of cells) counts[country * columns.length + column] = count;
    return counts;
  }

  test('rates split by serving region, busiest region and busiest country first', () => {
    const requests = new Float64Array(COUNTRY_CODES.length);
    requests[SE] = 8;
    requests[GB] = 2;
    const counts = window([
      [SE, 1, 6],
      [SE, 2, 1],
      [SE, 0, 1],
      [GB, 2, 1],
    ]);
    expect(countryTraffic(requests, counts, columns, 2)).toEqual([
      { country: 'SE', requests: 8, rps: 4, servedBy: { 'eu-north': 3, 'eu-south': 0.5, none: 0.5 } },
      { country: 'GB', requests: 2, rps: 0.5, servedBy: { 'eu-south': 0.5 } },
    ]);
  });

  test('a country idle for the whole window keeps its total and drops to zero', () => {
    const requests = new Float64Array(COUNTRY_CODES.length);
    requests[GB] = 1;
    expect(countryTraffic(requests, window([]), columns, 10)).toEqual([{ country: 'GB', requests: 1, rps: 0, servedBy: {} }]);
  });

  test('equal rates: the country with more requests since start comes first', () => {
    const requests = new Float64Array(COUNTRY_CODES.length);
    requests[SE] = 3;
    requests[GB] = 5;
    expect(countryTraffic(requests, window([[SE, 1, 1], [GB, 1, 1]]), columns, 1).map((c) => c.country)).toEqual(['GB', 'SE']);
  });
});
