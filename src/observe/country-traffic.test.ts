import { describe, expect, test } from 'vitest';
import { COUNTRY_CODES, CountryTally, countryIndex } from './country-traffic.ts';

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

describe('CountryTally', () => {
  const SE = countryIndex('SE');
  const GB = countryIndex('GB');

  test('rates cover the whole seconds of the window, split by serving region, busiest country first', () => {
    const tally = new CountryTally(10);
    const [euNorth, euSouth] = tally.columns(['eu-north', 'eu-south']);
    for (let i = 0; i < 6; i++) tally.record(100, SE, euNorth);
    tally.record(101, SE, euSouth);
    tally.record(101, SE, 0);
    tally.record(101, GB, euSouth);
    tally.record(102, GB, euSouth); // the second still being filled: counted since start, not in the rate
    expect(tally.snapshot(102, 2)).toEqual([
      { country: 'SE', requests: 8, rps: 4, servedBy: { 'eu-north': 3, 'eu-south': 0.5, none: 0.5 } },
      { country: 'GB', requests: 2, rps: 0.5, servedBy: { 'eu-south': 0.5 } },
    ]);
  });

  test('a country idle for a whole window keeps its total and drops to zero', () => {
    const tally = new CountryTally(10);
    const [column] = tally.columns(['us-east']);
    tally.record(50, GB, column);
    expect(tally.snapshot(61, 10)).toEqual([{ country: 'GB', requests: 1, rps: 0, servedBy: {} }]);
  });

  test('a second that comes round the ring again starts from zero', () => {
    const tally = new CountryTally(2);
    const [column] = tally.columns(['us-east']);
    tally.record(10, GB, column);
    tally.record(13, GB, column); // same slot as second 10 in a ring of three
    expect(tally.snapshot(14, 2)).toEqual([{ country: 'GB', requests: 2, rps: 0.5, servedBy: { 'us-east': 0.5 } }]);
  });

  test('a reload adding a region widens the matrix and keeps the counts of the regions already there', () => {
    const tally = new CountryTally(10);
    const [euNorth] = tally.columns(['eu-north']);
    tally.record(20, SE, euNorth);
    const reloaded = tally.columns(['ap-south', 'eu-north']);
    expect(reloaded[1]).toBe(euNorth);
    tally.record(20, SE, reloaded[0]);
    tally.record(20, SE, euNorth); // an exchange of the old topology finishing late
    expect(tally.snapshot(21, 1)).toEqual([{ country: 'SE', requests: 3, rps: 3, servedBy: { 'eu-north': 2, 'ap-south': 1 } }]);
  });
});
