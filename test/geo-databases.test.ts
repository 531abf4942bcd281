// Geo databases as files: what the test writer produces, several databases behind one locator, the bundled
// DB-IP default, a corrupt record, and hot reload by rename (good files swap in and are published, bad ones are refused).
import { randomBytes } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Reader } from 'maxmind';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GeoDatabaseError } from '../src/geo/database.ts';
import type { PublishedGeoDatabase } from '../src/geo/database.ts';
import { DEFAULT_GEO_DATABASES, GeoLocator } from '../src/geo/locator.ts';
import type { GeoReloadEvent } from '../src/geo/locator.ts';
import { uint16, writeMmdb, cityRecord } from './support/mmdb-writer.ts';
import type { MmdbValue } from './support/mmdb-writer.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-geo-databases-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const city = cityRecord;
const london = city('GB', 'EU', 51.5142, -0.0931);
const stockholm = city('SE', 'EU', 59.3293, 18.0686);
const geoip2 = (data: MmdbValue, buildEpoch = 1_700_000_000) =>
  writeMmdb([{ network: '81.2.69.0/24', data }], { databaseType: 'GeoIP2-City', buildEpoch });

/** Replaces a file the way geoipupdate does: write a sibling, then rename it over the original. */
async function replace(path: string, bytes: Uint8Array): Promise<void> {
  await writeFile(`${path}.tmp`, bytes);
  await rename(`${path}.tmp`, path);
}

describe('the test writer', () => {
  const value = {
    text: 'Linköping',
    // Strings long enough for each of the three size encodings.
    short: 'x'.repeat(100),
    medium: 'x'.repeat(300),
    long: 'x'.repeat(70_000),
    double: -0.0931,
    uint16: uint16(65_535),
    uint32: 4_294_967_295,
    uint64: 2n ** 40n,
    yes: true,
    no: false,
    list: ['a', 1, [2.5]],
    nested: { empty: {}, none: [] },
  };

  it.each([24, 28, 32] as const)('writes %i-bit records that maxmind reads back, in IPv4 and IPv6 trees', (recordSize) => {
    for (const ipVersion of [4, 6] as const) {
      const entries = [
        { network: '81.2.69.0/24', data: value },
        { network: '81.2.69.128/25', data: 'more specific' },
        ...(ipVersion === 6 ? [{ network: '2a02:d1c0::/29', data: 'six' }] : []),
      ];
      const reader = new Reader(writeMmdb(entries, { databaseType: 'Test', ipVersion, recordSize, buildEpoch: 1_234_567_890 }));
      expect(reader.metadata).toMatchObject({ databaseType: 'Test', ipVersion, recordSize, binaryFormatMajorVersion: 2, binaryFormatMinorVersion: 0 });
      expect(reader.metadata.buildEpoch.getTime()).toBe(1_234_567_890_000);
      expect(reader.getWithPrefixLength('81.2.69.1')).toEqual([{ ...value, uint16: 65_535 }, 25]);
      expect(reader.getWithPrefixLength('81.2.69.200')).toEqual(['more specific', 25]);
      expect(reader.get('81.2.70.1')).toBeNull();
      if (ipVersion === 6) expect(reader.getWithPrefixLength('2a02:d1c7::1')).toEqual(['six', 29]);
    }
  });

  it('writes 28-bit records above 2^24, whose top nibbles share the middle byte', () => {
    // A 16 MiB value first puts the next record's data pointer above 2^24, as in full-size City databases.
    const entries = [
      { network: '1.0.0.0/8', data: 'x'.repeat(2 ** 24) },
      { network: '81.2.69.0/24', data: 'London' },
    ];
    const reader = new Reader(writeMmdb(entries, { databaseType: 'Test', recordSize: 28 }));
    expect(reader.get('81.2.69.1')).toBe('London');
  });
});

describe('several databases', () => {
  it('answers IPv4 from the IPv4 file and IPv6 from the IPv6 file, in the order given', async () => {
    const v4 = join(dir, 'flat-ipv4.mmdb');
    const v6 = join(dir, 'flat-ipv6.mmdb');
    const flat = { languages: [], description: {} };
    await writeFile(v4, writeMmdb([{ network: '81.2.69.0/24', data: { country_code: 'GB', latitude: 51.5, longitude: -0.1 } }], { databaseType: 'city ipv4', ipVersion: 4, ...flat }));
    await writeFile(v6, writeMmdb([{ network: '2a02:d1c0::/29', data: { country_code: 'IT', latitude: 44.2, longitude: 9.97 } }], { databaseType: 'city ipv6', ipVersion: 6, ...flat }));
    const locator = await GeoLocator.open([v4, v6], { cacheSize: 100 });
    expect(locator.locate('81.2.69.142')).toMatchObject({ country: 'GB', lat: 51.5 });
    expect(locator.locate('2a02:d1c0::1')).toMatchObject({ country: 'IT', lat: 44.2 });
    expect(locator.locate('2a02:d1c8::1')).toBeNull();
    expect(locator.databases.map((info) => [info.path, info.ipVersion, info.schema])).toEqual([
      [v4, 4, 'flat-city'],
      [v6, 6, 'flat-city'],
    ]);
    expect(locator.counts).toEqual({ hit: 2, miss: 1, private: 0, error: 0 });
  });

  it('refuses to start when one file is missing, naming it', async () => {
    const good = join(dir, 'good.mmdb');
    await writeFile(good, geoip2(london));
    const missing = join(dir, 'missing.mmdb');
    const failure = GeoLocator.open([good, missing], { cacheSize: 10 });
    await expect(failure).rejects.toBeInstanceOf(GeoDatabaseError);
    await expect(failure).rejects.toThrow(missing);
  });
});

describe('the bundled DB-IP Lite City default', () => {
  it('places 81.2.69.142 in GB, Europe, and 2a02:d1c0::1 in Italy', async () => {
    const locator = await GeoLocator.open(DEFAULT_GEO_DATABASES, { cacheSize: 10 });
    expect(locator.databases.map((info) => [info.schema, info.ipVersion])).toEqual([
      ['flat-city', 4],
      ['flat-city', 6],
    ]);
    expect(locator.locate('81.2.69.142')).toMatchObject({ country: 'GB', continent: 'EU', accuracyKm: null });
    // The IPv4 tree would answer an IPv6 address from its first 32 bits (Hong Kong here); only the IPv6 tree may.
    expect(locator.locate('2a02:d1c0::1')).toMatchObject({ country: 'IT', continent: 'EU' });
  });
});

describe('a corrupt record', () => {
  it('costs its own addresses their location, counted as errors, while the rest still serve', async () => {
    const bytes = writeMmdb(
      [
        { network: '81.2.69.0/24', data: london },
        { network: '200.1.1.0/24', data: { country: { iso_code: 'CORRUPTED!' } } },
      ],
      { databaseType: 'GeoIP2-City' },
    );
    // Turn the string's control byte into an extended type 0, which no reader may accept.
    const at = bytes.indexOf('CORRUPTED!') - 1;
    bytes[at] = 0;
    bytes[at + 1] = 0;
    const path = join(dir, 'corrupt-record.mmdb');
    await writeFile(path, bytes);
    const locator = await GeoLocator.open([path], { cacheSize: 10 });
    expect(locator.locate('200.1.1.1')).toBeNull();
    expect(locator.locate('81.2.69.142')).toMatchObject({ country: 'GB' });
    expect(locator.counts).toEqual({ hit: 1, miss: 0, private: 0, error: 1 });
  });
});

describe('hot reload', () => {
  let path: string;
  let locator: GeoLocator;
  const events: GeoReloadEvent[] = [];
  const publications: (readonly PublishedGeoDatabase[])[] = [];
  let wake: () => void = () => {};
  const nextReload = async (): Promise<GeoReloadEvent> => {
    while (events.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    return events.shift()!;
  };

  beforeEach(async () => {
    path = join(await mkdtemp(join(dir, 'reload-')), 'GeoIP2-City.mmdb');
    await writeFile(path, geoip2(london));
    events.length = 0;
    publications.length = 0;
    locator = await GeoLocator.open([path], {
      cacheSize: 100,
      onPublish: (published) => publications.push(published),
      onReload: (event) => {
        events.push(event);
        wake();
      },
    });
    locator.watch();
    expect(locator.locate('81.2.69.1')).toMatchObject({ lat: 51.5142 });
  });
  afterEach(() => locator.close());

  it('swaps in a file renamed over the watched one, publishes its new memory and forgets cached answers', async () => {
    const [before] = locator.published;
    await replace(path, geoip2(stockholm, 1_800_000_000));
    expect(await nextReload()).toEqual({ path, ok: true });
    expect(publications).toHaveLength(1);
    expect(publications[0]).toEqual([{ path, buffer: expect.any(SharedArrayBuffer), info: locator.databases[0] }]);
    expect(publications[0][0].buffer).not.toBe(before.buffer);
    expect(locator.locate('81.2.69.1')).toMatchObject({ country: 'SE', lat: 59.3293 });
    expect(locator.databases[0].buildEpoch.getTime()).toBe(1_800_000_000_000);
  });

  it.each([
    ['a truncated file', () => geoip2(stockholm).subarray(0, 100)],
    ['random bytes', () => randomBytes(8192)],
    ['a database without locations (GeoLite2-ASN)', () => writeMmdb([{ network: '81.2.69.0/24', data: { autonomous_system_number: 20712 } }], { databaseType: 'GeoLite2-ASN' })],
  ])('refuses %s, publishes nothing and keeps serving the old database', async (_name, bytes) => {
    const [before] = locator.published;
    await replace(path, bytes());
    const event = await nextReload();
    expect(event).toMatchObject({ path, ok: false });
    expect(event.error).toBeInstanceOf(GeoDatabaseError);
    expect(publications).toEqual([]);
    expect(locator.published[0]).toBe(before);
    // An address never asked before, so the answer comes from the database and not from the cache.
    expect(locator.locate('81.2.69.2')).toMatchObject({ country: 'GB', lat: 51.5142 });
  });

  it('reloads on request, rejecting a bad file and swapping in a good one', async () => {
    locator.close();
    await replace(path, randomBytes(64));
    await expect(locator.reload()).rejects.toBeInstanceOf(GeoDatabaseError);
    expect(locator.locate('81.2.69.3')).toMatchObject({ country: 'GB' });
    await replace(path, geoip2(stockholm));
    await locator.reload();
    expect(locator.locate('81.2.69.3')).toMatchObject({ country: 'SE' });
    expect(events.map((event) => event.ok)).toEqual([false, true]);
  });
});
