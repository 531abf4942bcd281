// Compatibility with MaxMind's reference files (test/support/reference-geo-data.ts):
// the official GeoIP2/GeoLite2 test databases answer as documented, and no corrupt file crashes, opened or hot-reloaded.
import { readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Reader } from 'maxmind';
import type { Response } from 'maxmind';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GeoDatabaseError, openGeoDatabase } from '../src/geo/database.ts';
import type { GeoDatabase, GeoLocation } from '../src/geo/database.ts';
import { GeoLocator } from '../src/geo/locator.ts';
import type { GeoReloadEvent } from '../src/geo/locator.ts';
import { hasReferenceGeoData, REFERENCE_GEO_DATA, referenceGeoFile } from './support/reference-geo-data.ts';

const root = REFERENCE_GEO_DATA;

if (hasReferenceGeoData()) {
  const reference = referenceGeoFile;
  const countries: Record<string, { continent: string; lat: number; lon: number }> = JSON.parse(
    readFileSync(new URL('../geo-data/countries.json', import.meta.url), 'utf8'),
  );

  const cities = ['GeoIP2-City-Test.mmdb', 'GeoLite2-City-Test.mmdb'];
  const countryFiles = ['GeoIP2-Country-Test.mmdb', 'GeoLite2-Country-Test.mmdb'];
  // Documented entries of the test databases: address, country, continent, latitude, longitude, accuracy radius.
  const known: [string, string, string, number, number, number][] = [
    ['81.2.69.142', 'GB', 'EU', 51.5142, -0.0931, 10],
    ['216.160.83.56', 'US', 'NA', 47.2513, -122.3149, 22],
    ['89.160.20.112', 'SE', 'EU', 58.4167, 15.6167, 76],
    ['2001:218::', 'JP', 'AS', 35.68536, 139.75309, 100],
    ['2a02:d1c0::', 'IT', 'EU', 42.83333, 12.83333, 100],
  ];
  // Everything else beside them is broken on purpose, and so is all of bad-data/.
  const corrupt = [
    ...readdirSync(root).filter((name) => name.endsWith('.mmdb') && ![...cities, ...countryFiles].includes(name)),
    ...readdirSync(new URL('bad-data/', root)).map((name) => `bad-data/${name}`),
  ];
  // The documented addresses plus a deterministic spread over both address spaces.
  const spread = [
    ...known.map(([ip]) => ip),
    ...Array.from({ length: 64 }, (_, i) => {
      const n = Math.imul(i, 0x9e3779b1) >>> 0;
      return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
    }),
    ...Array.from({ length: 32 }, (_, i) => `${(0x2000 + i * 0x97).toString(16)}:${(i * 0x1f3).toString(16)}::${i.toString(16)}`),
  ];

  describe.each(cities)('%s', (name) => {
    it.each(known)('places %s in %s (%s) at its coordinates', async (ip, country, continent, lat, lon, accuracyKm) => {
      const locator = await GeoLocator.open([reference(name)], { cacheSize: 10 });
      expect(locator.databases[0].schema).toBe('geoip2-city');
      expect(locator.locate(ip)).toEqual({ lat, lon, country, continent, accuracyKm });
    });
  });

  describe.each(countryFiles)('%s', (name) => {
    it.each(known)('places %s in %s (%s) at the country centroid', async (ip, country, continent) => {
      const locator = await GeoLocator.open([reference(name)], { cacheSize: 10 });
      expect(locator.databases[0].schema).toBe('geoip2-country');
      const { lat, lon } = countries[country];
      expect(locator.locate(ip)).toEqual({ lat, lon, country, continent, accuracyKm: null });
    });
  });

  /** Looks every spread address up; returns how many lookups were counted, which must be all of them. */
  function locateAll(locator: GeoLocator): number {
    for (const ip of spread) {
      const location: GeoLocation | null = locator.locate(ip);
      if (location !== null) expect(Object.isFrozen(location)).toBe(true);
    }
    return Object.values(locator.counts).reduce((sum, count) => sum + count, 0);
  }

  describe('corrupt files', () => {
    it.each(corrupt)('%s is refused with a GeoDatabaseError, or opens and never throws on lookup', async (name) => {
      const path = reference(name);
      const opened = await openGeoDatabase(path).catch((error: unknown) => error);
      if (opened instanceof Error) {
        expect(opened).toBeInstanceOf(GeoDatabaseError);
        expect(opened.message).toContain(path);
      } else {
        expect(locateAll(new GeoLocator([opened as GeoDatabase], { cacheSize: 1000 }))).toBe(spread.length);
      }
    });

    // Corruption can sit where the open-time probe never looks. Past the checks, straight on the reader, the locator
    // must still contain whatever a lookup throws.
    const somewhere: GeoLocation = Object.freeze({ lat: 0, lon: 0, country: null, continent: null, accuracyKm: null });
    const parsable = corrupt.flatMap((name) => {
      try {
        return [[name, new Reader<Response>(readFileSync(reference(name)))] as const];
      } catch {
        return [];
      }
    });
    it.each(parsable)('%s, looked up past the open checks, never makes the locator throw', (name, reader) => {
      const info = Object.freeze({ path: name, databaseType: 'Test', schema: 'geoip2-city', ipVersion: reader.metadata.ipVersion as 4 | 6, buildEpoch: new Date(0), description: '' });
      const published = { path: name, buffer: new SharedArrayBuffer(0), info };
      const database: GeoDatabase = { info, published, lookup: (ip) => (reader.get(ip) === null ? null : somewhere) };
      expect(locateAll(new GeoLocator([database], { cacheSize: 1000 }))).toBe(spread.length);
    });
  });

  describe('hot reload to a corrupt file', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'meridian-geo-reference-'));
    });
    afterAll(() => rm(dir, { recursive: true, force: true }));

    it.each(corrupt.map((name, index) => [name, index] as const))('%s leaves the old database serving, or serves without throwing', async (name, index) => {
      const path = join(dir, `GeoIP2-City-${index}.mmdb`);
      await copyFile(reference('GeoIP2-City-Test.mmdb'), path);
      const events: GeoReloadEvent[] = [];
      const locator = await GeoLocator.open([path], { cacheSize: 1000, onReload: (event) => events.push(event) });
      await copyFile(reference(name), `${path}.tmp`);
      await rename(`${path}.tmp`, path);
      const failure = await locator.reload().then(() => null, (error: unknown) => error);
      if (failure !== null) {
        expect(failure).toBeInstanceOf(GeoDatabaseError);
        expect(events).toMatchObject([{ path, ok: false }]);
        expect(locator.databases[0].databaseType).toBe('GeoIP2-City');
        expect(locator.locate('2a02:d1c0::1')).toMatchObject({ country: 'IT', lat: 42.83333 });
      } else {
        expect(events).toEqual([{ path, ok: true }]);
        expect(locateAll(locator)).toBe(spread.length);
      }
    });
  });
}
