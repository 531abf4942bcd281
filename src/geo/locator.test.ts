// GeoLocator.locate, the geo phase's hot path: cache, private ranges, database order and outcome counts, on stub databases.
import { describe, expect, it } from 'vitest';
import type { GeoDatabase, GeoLocation } from './database.ts';
import { GeoLocator } from './locator.ts';

const here = (country: string): GeoLocation => Object.freeze({ lat: 1, lon: 2, country, continent: 'EU', accuracyKm: 5 });

/** A database that answers from a table (an Error is thrown) and counts the lookups it was asked. */
function stub(ipVersion: 4 | 6, answers: Record<string, GeoLocation | Error> = {}) {
  const asked: string[] = [];
  const info = Object.freeze({ path: `stub-v${ipVersion}`, databaseType: 'stub', schema: 'geoip2-city', ipVersion, buildEpoch: new Date(0), description: '' });
  const database: GeoDatabase = {
    info,
    published: { path: info.path, buffer: new SharedArrayBuffer(0), info },
    lookup(ip) {
      asked.push(ip);
      const answer = answers[ip];
      if (answer instanceof Error) throw answer;
      return answer ?? null;
    },
  };
  return { database, asked };
}

describe('private and reserved ranges', () => {
  it.each([
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '127.0.0.1',
    '100.64.0.1',
    '100.127.255.255',
    '169.254.10.20',
    '0.0.0.0',
    '192.0.2.1',
    '203.0.113.7',
    '255.255.255.255',
    '::1',
    '::',
    'fc00::1',
    'fd12:3456::1',
    'fe80::1',
    '2001:db8::1',
    '::ffff:10.0.0.1',
  ])('%s is private and never reaches a database', (ip) => {
    const { database, asked } = stub(6);
    const locator = new GeoLocator([database], { cacheSize: 10 });
    expect(locator.locate(ip)).toBeNull();
    expect(locator.counts).toEqual({ hit: 0, miss: 0, private: 1, error: 0 });
    expect(asked).toEqual([]);
  });

  it.each(['100.128.0.1', '172.32.0.1', '81.2.69.142', '2a02:d1c0::1'])('%s is public and asks the database', (ip) => {
    const { database, asked } = stub(6);
    const locator = new GeoLocator([database], { cacheSize: 10 });
    expect(locator.locate(ip)).toBeNull();
    expect(locator.counts.miss).toBe(1);
    expect(asked).toEqual([ip]);
  });
});

describe('cache', () => {
  it('answers a repeated address from the cache and counts it again', () => {
    const { database, asked } = stub(6, { '81.2.69.142': here('GB') });
    const locator = new GeoLocator([database], { cacheSize: 10 });
    const first = locator.locate('81.2.69.142');
    expect(first).toEqual(here('GB'));
    expect(locator.locate('81.2.69.142')).toBe(first);
    expect(asked).toEqual(['81.2.69.142']);
    expect(locator.counts).toEqual({ hit: 2, miss: 0, private: 0, error: 0 });
  });

  it('remembers misses and private addresses, so repeating them does no database work', () => {
    const { database, asked } = stub(6);
    const locator = new GeoLocator([database], { cacheSize: 10 });
    for (let i = 0; i < 3; i++) {
      locator.locate('8.8.8.8');
      locator.locate('192.168.0.1');
    }
    expect(asked).toEqual(['8.8.8.8']);
    expect(locator.counts).toEqual({ hit: 0, miss: 3, private: 3, error: 0 });
  });

  it('holds at most cacheSize addresses', () => {
    const { database, asked } = stub(6);
    const locator = new GeoLocator([database], { cacheSize: 1 });
    for (const ip of ['8.8.8.8', '9.9.9.9', '8.8.8.8']) locator.locate(ip);
    expect(asked).toEqual(['8.8.8.8', '9.9.9.9', '8.8.8.8']);
  });

  it('answers addresses in one place with one object, so what is worked out per location is shared', () => {
    // The database decodes a fresh object per lookup, as a real one does.
    const place = (lat: number, lon: number, country: string): GeoLocation => Object.freeze({ lat, lon, country, continent: 'EU', accuracyKm: 20 });
    const { database } = stub(6, {
      '81.2.69.1': place(51.5, -0.1, 'GB'),
      '81.2.69.2': place(51.5, -0.1, 'GB'),
      '89.160.20.1': place(59.3, 18.1, 'SE'),
      // A different place under the same intern number (51.5 × 1000 − 0.1 = 51.499 × 1000 + 0.9).
      '81.2.69.3': place(51.499, 0.9, 'GB'),
      '81.2.69.4': Object.freeze({ ...place(51.5, -0.1, 'GB'), accuracyKm: 50 }),
    });
    const locator = new GeoLocator([database], { cacheSize: 10 });
    const london = locator.locate('81.2.69.1');
    expect(locator.locate('81.2.69.2')).toBe(london);
    expect(locator.locate('89.160.20.1')).toEqual(place(59.3, 18.1, 'SE'));
    expect(locator.locate('81.2.69.3')).toEqual(place(51.499, 0.9, 'GB'));
    expect(locator.locate('81.2.69.4')).not.toBe(london);
    expect(locator.locate('81.2.69.4')?.accuracyKm).toBe(50);
  });
});

describe('databases', () => {
  it('asks them in order and takes the first answer', () => {
    const first = stub(6, { '8.8.8.8': here('US') });
    const second = stub(6, { '8.8.8.8': here('CA'), '9.9.9.9': here('CH') });
    const locator = new GeoLocator([first.database, second.database], { cacheSize: 10 });
    expect(locator.locate('8.8.8.8')?.country).toBe('US');
    expect(locator.locate('9.9.9.9')?.country).toBe('CH');
    expect(second.asked).toEqual(['9.9.9.9']);
  });

  it('never asks an IPv4 database about an IPv6 address', () => {
    const v4 = stub(4, { '2a02:d1c0::1': here('HK') });
    const v6 = stub(6, { '2a02:d1c0::1': here('IT'), '81.2.69.142': here('GB') });
    const locator = new GeoLocator([v4.database, v6.database], { cacheSize: 10 });
    expect(locator.locate('2a02:d1c0::1')?.country).toBe('IT');
    expect(locator.locate('81.2.69.142')?.country).toBe('GB');
    expect(v4.asked).toEqual(['81.2.69.142']);
  });

  it('counts a lookup that throws as an error, returns null, and caches the outcome', () => {
    const { database, asked } = stub(6, { '1.2.3.4': new RangeError('Maximum call stack size exceeded') });
    const locator = new GeoLocator([database], { cacheSize: 10 });
    expect(locator.locate('1.2.3.4')).toBeNull();
    expect(locator.locate('1.2.3.4')).toBeNull();
    expect(asked).toEqual(['1.2.3.4']);
    expect(locator.counts).toEqual({ hit: 0, miss: 0, private: 0, error: 2 });
  });

  it('treats a string that is not an address as a miss without asking', () => {
    const { database, asked } = stub(6);
    const locator = new GeoLocator([database], { cacheSize: 10 });
    expect(locator.locate('')).toBeNull();
    expect(locator.locate('not-an-ip')).toBeNull();
    expect(asked).toEqual([]);
    expect(locator.counts.miss).toBe(2);
  });

  it('lists the databases in order of preference', () => {
    const locator = new GeoLocator([stub(4).database, stub(6).database], { cacheSize: 10 });
    expect(locator.databases.map((info) => info.path)).toEqual(['stub-v4', 'stub-v6']);
  });
});

describe('a config reload (prepare, then swap)', () => {
  it('changes nothing until the swap; a new list then answers and starts with an empty cache', () => {
    const before = stub(6, { '81.2.69.142': here('GB') });
    const after = stub(6, { '81.2.69.142': here('SE') });
    const locator = new GeoLocator([before.database], { cacheSize: 10 });
    expect(locator.locate('81.2.69.142')?.country).toBe('GB');
    const swap = locator.prepare([after.database], 10);
    expect(locator.locate('81.2.69.142')?.country).toBe('GB');
    swap();
    expect(locator.cache).toEqual({ max: 10, entries: 0 });
    expect(locator.locate('81.2.69.142')?.country).toBe('SE');
  });

  it('keeps the cache warm when neither the list nor the size changes', () => {
    const { database, asked } = stub(6);
    const locator = new GeoLocator([database], { cacheSize: 10 });
    locator.locate('81.2.69.142');
    locator.prepare(locator.open, 10)();
    locator.locate('81.2.69.142');
    expect(asked).toEqual(['81.2.69.142']);
  });

  it('bounds the cache by a new size, starting empty', () => {
    const { database } = stub(6);
    const locator = new GeoLocator([database], { cacheSize: 10 });
    for (const ip of ['81.2.69.1', '81.2.69.2', '81.2.69.3']) locator.locate(ip);
    locator.prepare(locator.open, 2)();
    expect(locator.cache).toEqual({ max: 2, entries: 0 });
    for (const ip of ['81.2.69.1', '81.2.69.2', '81.2.69.3']) locator.locate(ip);
    expect(locator.cache).toEqual({ max: 2, entries: 2 });
  });
});
