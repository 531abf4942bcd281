// openGeoDatabase reads both schemas from real .mmdb files, maps records to locations, and refuses anything else;
// attachGeoDatabase reads the same memory from the published descriptor.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { double, uint16, writeMmdb } from '../../test/support/mmdb-writer.ts';
import type { MmdbEntry, MmdbOptions } from '../../test/support/mmdb-writer.ts';
import { attachGeoDatabase, GeoDatabaseError, openGeoDatabase } from './database.ts';
import type { GeoDatabase } from './database.ts';

const countries: Record<string, { continent: string; lat: number; lon: number }> = JSON.parse(
  readFileSync(new URL('../../geo-data/countries.json', import.meta.url), 'utf8'),
);
const centroid = (iso: string) => ({ lat: countries[iso].lat, lon: countries[iso].lon, country: iso, continent: countries[iso].continent, accuracyKm: null });

const london = { lat: 51.5142, lon: -0.0931, country: 'GB', continent: 'EU', accuracyKm: 10 };
const flatRecord = (city: string, country_code: string, latitude: number, longitude: number) => ({
  city,
  country_code,
  latitude: double(latitude),
  longitude: double(longitude),
  postcode: '',
  state1: '',
  state2: '',
  timezone: '',
});
const flat = (ipVersion: 4 | 6): Partial<MmdbOptions> => ({ ipVersion, languages: [], description: {} });

const fixtures: Record<string, [MmdbEntry[], MmdbOptions]> = {
  'geoip2-city.mmdb': [
    [
      {
        network: '81.2.69.0/24',
        data: {
          city: { names: { en: 'London' } },
          continent: { code: 'EU' },
          country: { iso_code: 'GB' },
          location: { latitude: double(51.5142), longitude: double(-0.0931), accuracy_radius: uint16(10) },
        },
      },
      { network: '2a02:d1c0::/29', data: { continent: { code: 'EU' }, country: { iso_code: 'IT' } } },
      { network: '2001:218::/32', data: { country: { iso_code: 'JP' } } },
      { network: '1.1.1.0/24', data: { traits: { is_anycast: true } } },
      { network: '5.5.5.0/24', data: { country: { iso_code: 'XX' } } },
      { network: '6.6.6.0/24', data: { country: { iso_code: 'SE' }, location: { latitude: double(512), longitude: double(10) } } },
    ],
    { databaseType: 'GeoLite2-City', recordSize: 28, description: { en: 'GeoLite2 City database' }, buildEpoch: 1_767_225_600 },
  ],
  'geoip2-country.mmdb': [
    [{ network: '81.2.69.0/24', data: { continent: { code: 'EU' }, country: { iso_code: 'GB' }, registered_country: { iso_code: 'US' } } }],
    { databaseType: 'GeoIP2-Country', recordSize: 32 },
  ],
  // Named like a MaxMind file on purpose: the schema comes from the records, not the name.
  'GeoLite2-City.mmdb': [[{ network: '81.2.69.0/24', data: flatRecord('London', 'GB', 51.5143, -0.0912) }], { databaseType: 'city ipv4', ...flat(4) }],
  'flat-city-ipv6.mmdb': [[{ network: '2a02:d1c0::/29', data: flatRecord('Aulla', 'IT', 44.208, 9.969) }], { databaseType: 'city ipv6', ...flat(6) }],
  'flat-country.mmdb': [[{ network: '89.160.20.0/24', data: { country_code: 'SE' } }], { databaseType: 'country ipv4', ...flat(4) }],
  'asn.mmdb': [
    [{ network: '81.2.69.0/24', data: { autonomous_system_number: 20712, autonomous_system_organization: 'Andrews & Arnold' } }],
    { databaseType: 'GeoLite2-ASN' },
  ],
  'empty.mmdb': [[], { databaseType: 'GeoLite2-City' }],
  // Boundaries of the open-time coordinate check, each of which a real database can show.
  'countries.mmdb': [
    [
      { network: '81.2.69.0/24', data: { country: { iso_code: 'GB' } } },
      { network: '89.160.20.0/24', data: { country: { iso_code: 'SE' } } },
      { network: '216.160.83.0/24', data: { country: { iso_code: 'US' } } },
    ],
    { databaseType: 'GeoIP2-Country' },
  ],
  'null-island.mmdb': [
    [
      { network: '81.2.69.0/24', data: flatRecord('', 'GB', 0, 0) },
      { network: '89.160.20.0/24', data: flatRecord('Stockholm', 'SE', 59.3293, 18.0686) },
    ],
    { databaseType: 'city ipv4', ...flat(4) },
  ],
  'one-city.mmdb': [
    [
      { network: '81.2.69.0/24', data: flatRecord('London', 'GB', 51.5142, -0.0931) },
      { network: '2.125.160.0/24', data: flatRecord('London', 'GB', 51.5143, -0.0912) },
    ],
    { databaseType: 'city ipv4', ...flat(4) },
  ],
};

let dir: string;
const file = (name: string) => join(dir, name);
const databases: Record<string, GeoDatabase> = {};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-geo-database-'));
  for (const [name, [entries, options]] of Object.entries(fixtures)) await writeFile(file(name), writeMmdb(entries, options));
  const good = readFileSync(file('geoip2-city.mmdb'));
  await writeFile(file('truncated.mmdb'), good.subarray(0, good.length >> 1));
  await writeFile(file('random.mmdb'), randomBytes(4096));
  for (const name of ['geoip2-city.mmdb', 'geoip2-country.mmdb', 'GeoLite2-City.mmdb', 'flat-city-ipv6.mmdb', 'flat-country.mmdb']) {
    databases[name] = await openGeoDatabase(file(name));
  }
});

afterAll(() => rm(dir, { recursive: true, force: true }));

describe('metadata', () => {
  it.each([
    ['geoip2-city.mmdb', 'geoip2-city', 'GeoLite2-City', 6],
    ['geoip2-country.mmdb', 'geoip2-country', 'GeoIP2-Country', 6],
    ['GeoLite2-City.mmdb', 'flat-city', 'city ipv4', 4],
    ['flat-city-ipv6.mmdb', 'flat-city', 'city ipv6', 6],
    ['flat-country.mmdb', 'flat-country', 'country ipv4', 4],
  ])('%s is %s', (name, schema, databaseType, ipVersion) => {
    const { info } = databases[name];
    expect(info).toMatchObject({ path: file(name), schema, databaseType, ipVersion });
    expect(Object.isFrozen(info)).toBe(true);
  });

  it('reports the build time and the English description', () => {
    const { info } = databases['geoip2-city.mmdb'];
    expect(info.buildEpoch.toISOString()).toBe('2026-01-01T00:00:00.000Z');
    expect(info.description).toBe('GeoLite2 City database');
    expect(databases['flat-country.mmdb'].info.description).toBe('');
  });
});

describe('GeoIP2 schema', () => {
  it('answers exactly the IPv4 network of a record, with its coordinates and accuracy', () => {
    const db = databases['geoip2-city.mmdb'];
    expect(db.lookup('81.2.69.0')).toEqual(london);
    expect(db.lookup('81.2.69.255')).toEqual(london);
    expect(db.lookup('81.2.68.255')).toBeNull();
    expect(db.lookup('81.2.70.0')).toBeNull();
    expect(Object.isFrozen(db.lookup('81.2.69.142'))).toBe(true);
  });

  it('answers exactly the IPv6 network of a record', () => {
    const db = databases['geoip2-city.mmdb'];
    expect(db.lookup('2a02:d1c0::')).toEqual(centroid('IT'));
    expect(db.lookup('2a02:d1c7:ffff:ffff:ffff:ffff:ffff:ffff')).toEqual(centroid('IT'));
    expect(db.lookup('2a02:d1bf:ffff:ffff:ffff:ffff:ffff:ffff')).toBeNull();
    expect(db.lookup('2a02:d1c8::')).toBeNull();
  });

  it('places a country-only record at the country centroid, taking the continent from the country table if absent', () => {
    expect(databases['geoip2-city.mmdb'].lookup('2001:218::1')).toEqual(centroid('JP'));
    expect(centroid('JP').continent).toBe('AS');
    expect(databases['geoip2-country.mmdb'].lookup('81.2.69.142')).toEqual(centroid('GB'));
  });

  it('ignores coordinates out of range where the open-time probe does not look, and falls back to the centroid', () => {
    expect(databases['geoip2-city.mmdb'].lookup('6.6.6.6')).toEqual(centroid('SE'));
  });

  it('has no location for a record without coordinates or a known country', () => {
    expect(databases['geoip2-city.mmdb'].lookup('1.1.1.1')).toBeNull();
    expect(databases['geoip2-city.mmdb'].lookup('5.5.5.5')).toBeNull();
  });
});

describe('flat DB-IP schema', () => {
  it('reads top-level coordinates and country, with the continent from the country table', () => {
    expect(databases['GeoLite2-City.mmdb'].lookup('81.2.69.142')).toEqual({
      lat: 51.5143,
      lon: -0.0912,
      country: 'GB',
      continent: 'EU',
      accuracyKm: null,
    });
    expect(databases['flat-city-ipv6.mmdb'].lookup('2a02:d1c0::1')).toMatchObject({ lat: 44.208, lon: 9.969, country: 'IT' });
    expect(databases['GeoLite2-City.mmdb'].lookup('81.2.70.1')).toBeNull();
  });

  it('places a country-only record at the country centroid', () => {
    expect(databases['flat-country.mmdb'].lookup('89.160.20.112')).toEqual(centroid('SE'));
  });
});

describe('the open-time coordinate check', () => {
  it.each([
    ['countries.mmdb', 'a country-only database, which has no coordinates', '216.160.83.56', centroid('US')],
    ['null-island.mmdb', 'a point at exactly 0°, 0°', '81.2.69.142', { lat: 0, lon: 0, country: 'GB', continent: 'EU', accuracyKm: null }],
    ['one-city.mmdb', 'two probes in one city, a street apart', '2.125.160.216', { lat: 51.5143, lon: -0.0912, country: 'GB', continent: 'EU', accuracyKm: null }],
  ])('%s opens: %s', async (name, _what, ip, location) => {
    expect((await openGeoDatabase(file(name))).lookup(ip)).toEqual(location);
  });
});

describe('rejection', () => {
  it.each([
    ['missing.mmdb', /cannot read the file/],
    ['truncated.mmdb', /not a MaxMind DB file|does not fit/],
    ['random.mmdb', /not a MaxMind DB file/],
    ['asn.mmdb', /no record carries a location or a country \(database_type GeoLite2-ASN\)/],
    ['empty.mmdb', /no record carries a location or a country/],
  ])('%s fails with a GeoDatabaseError naming the path', async (name, problem) => {
    const error = await openGeoDatabase(file(name)).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(GeoDatabaseError);
    expect(error).toMatchObject({ code: 'GEO_DATABASE_INVALID', message: expect.stringContaining(file(name)) });
    expect((error as Error).message).toMatch(problem);
  });

  it('keeps the underlying error as the cause', async () => {
    const error = await openGeoDatabase(file('missing.mmdb')).catch((caught: unknown) => caught);
    expect((error as Error).cause).toMatchObject({ code: 'ENOENT' });
  });
});

describe('published for other threads', () => {
  it.each(['geoip2-city.mmdb', 'flat-city-ipv6.mmdb'])('%s is published as its path, its bytes in shared memory, and its info', (name) => {
    const { info, published } = databases[name];
    expect(published).toEqual({ path: file(name), buffer: expect.any(SharedArrayBuffer), info });
    expect(published.buffer.byteLength).toBe(statSync(file(name)).size);
    expect(Object.isFrozen(published)).toBe(true);
  });

  it.each(['geoip2-city.mmdb', 'GeoLite2-City.mmdb', 'flat-country.mmdb'])('%s attached from a structured clone answers as the original', (name) => {
    const original = databases[name];
    // What postMessage hands a worker: a fresh, unfrozen object around the same shared memory.
    const attached = attachGeoDatabase(structuredClone(original.published));
    expect(attached.info).toEqual(original.info);
    expect(Object.isFrozen(attached.info)).toBe(true);
    for (const ip of ['81.2.69.142', '89.160.20.112', '2a02:d1c0::1', '2001:218::1', '1.1.1.1', '81.2.70.1']) {
      expect(attached.lookup(ip), ip).toEqual(original.lookup(ip));
    }
  });
});
