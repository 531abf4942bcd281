// A geo database whose records decode to impossible coordinates is refused, at open and on hot reload through a
// running Meridian, and the old database keeps serving: MaxMind's broken reference files and synthesized ones.
import { copyFile, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { GeoDatabaseError, openGeoDatabase } from '../src/geo/database.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { startMeridian } from '../src/main.ts';
import { json, rawConfig, send, startProxy, startUpstream, until } from './support/harness.ts';
import type { RunningProxy, Upstream } from './support/harness.ts';
import { double, writeMmdb } from './support/mmdb-writer.ts';
import type { MmdbValue } from './support/mmdb-writer.ts';
import { hasReferenceGeoData, referenceGeoFile } from './support/reference-geo-data.ts';


let dir: string;
let upstream: Upstream;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-geo-corrupt-'));
  upstream = await startUpstream((_req, res) => res.end('ok'));
});
afterAll(async () => {
  await upstream.close();
  await rm(dir, { recursive: true, force: true });
});

async function refusal(path: string): Promise<GeoDatabaseError> {
  const error = await openGeoDatabase(path).then(() => null, (caught: unknown) => caught);
  expect(error, `${path} should be refused`).toBeInstanceOf(GeoDatabaseError);
  return error as GeoDatabaseError;
}

const running: RunningProxy[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(running.splice(0).map((proxy) => proxy.shutdown()));
});

/**
 * Starts Meridian on the file at `path`, renames `bad` over it the way geoipupdate does, and returns the log line
 * that reports the reload outcome (polled with a deadline) and the admin port to ask `/route` on.
 */
async function reloadThroughMeridian(path: string, bad: Uint8Array): Promise<{ line: string; adminPort: number }> {
  const proxy = await startProxy([upstream.origin], { geo: { databases: [path] } });
  running.push(proxy);
  const lines: string[] = [];
  vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => void lines.push(args.join(' ')));
  await writeFile(`${path}.tmp`, bad);
  await rename(`${path}.tmp`, path);
  const line = await until(() => lines.find((text) => text.includes(path)), `the reload outcome of ${path}`);
  return { line, adminPort: proxy.adminPort };
}

const located = async (adminPort: number, ip: string) => json(await send(adminPort, { path: `/route?ip=${ip}` })).location;

if (hasReferenceGeoData()) {
  describe("MaxMind's broken reference files", () => {
    it.each([
      ['GeoIP2-City-Test-Broken-Double-Format.mmdb', 'location.latitude of 81.2.69.142 decodes to 1.79e-52, not a coordinate'],
      ['GeoIP2-City-Test-Invalid-Node-Count.mmdb', 'node_count 100000 does not fit the file'],
      ['MaxMind-DB-test-broken-pointers-24.mmdb', 'probe lookup failed (Unknown type'],
    ])('%s is refused at open, naming the file and what is wrong', async (name, problem) => {
      const error = await refusal(referenceGeoFile(name));
      expect(error.message).toContain(`geo database ${referenceGeoFile(name)}: ${problem}`);
    });

    it('a hot reload to the broken-double file is refused, and clients stay where the good database put them', async () => {
      const path = join(await mkdtemp(join(dir, 'broken-double-')), 'GeoIP2-City.mmdb');
      await copyFile(referenceGeoFile('GeoIP2-City-Test.mmdb'), path);
      const broken = await readFile(referenceGeoFile('GeoIP2-City-Test-Broken-Double-Format.mmdb'));
      const { line, adminPort } = await reloadThroughMeridian(path, broken);
      expect(line).toContain(`geo database ${path} rejected, the previous one keeps serving`);
      expect(line).toContain('location.latitude of 81.2.69.142 decodes to 1.79e-52, not a coordinate');
      expect(await located(adminPort, '81.2.69.142')).toEqual({ lat: 51.5142, lon: -0.0931, country: 'GB', continent: 'EU' });
      expect(await located(adminPort, '89.160.20.112')).toEqual({ lat: 58.4167, lon: 15.6167, country: 'SE', continent: 'EU' });
    });

    it('Meridian does not start on the broken-double file', async () => {
      const broken = referenceGeoFile('GeoIP2-City-Test-Broken-Double-Format.mmdb');
      // Should it start after all, it is shut down like any other.
      const started = startProxy([upstream.origin], { geo: { databases: [broken] } }).then((proxy) => void running.push(proxy));
      await expect(started).rejects.toThrow(`geo database ${broken}: location.latitude of 81.2.69.142 decodes to 1.79e-52, not a coordinate`);
    });

    it('a config reload that names the broken-double file is rejected whole, and the good database keeps serving', async () => {
      const folder = await mkdtemp(join(dir, 'config-reload-'));
      const good = join(folder, 'GeoIP2-City.mmdb');
      await copyFile(referenceGeoFile('GeoIP2-City-Test.mmdb'), good);
      const configPath = join(folder, 'meridian.json');
      const write = (databases: string[], forwardedFor: string) =>
        writeFile(configPath, JSON.stringify(rawConfig([upstream.origin], { geo: { databases }, headers: { forwardedFor } })));
      await write([good], 'overwrite');
      const meridian = await startMeridian(await loadConfigFile(configPath, {}), { configPath });
      running.push({ shutdown: () => meridian.shutdown() } as RunningProxy);
      vi.spyOn(console, 'error').mockImplementation(() => {});
      const broken = referenceGeoFile('GeoIP2-City-Test-Broken-Double-Format.mmdb');
      // Another field changes with it: a rejected reload applies none of it.
      await write([broken], 'append');
      const result = await meridian.runtime.reload();
      expect(result.ok).toBe(false);
      expect(result.ok ? [] : result.problems).toEqual([
        { path: 'geo.databases[0]', message: `geo database ${broken}: location.latitude of 81.2.69.142 decodes to 1.79e-52, not a coordinate` },
      ]);
      const adminPort = meridian.adminAddress.port;
      expect(await located(adminPort, '81.2.69.142')).toEqual({ lat: 51.5142, lon: -0.0931, country: 'GB', continent: 'EU' });
      expect(json(await send(adminPort, { path: '/status' })).config).toMatchObject({ version: 1 });
    });
  });
}

describe('synthesized databases with impossible coordinates', () => {
  // The country is the same everywhere on purpose: only the coordinates are under test.
  const city = (latitude: number, longitude: number): MmdbValue => ({
    country: { iso_code: 'GB' },
    location: { latitude: double(latitude), longitude: double(longitude) },
  });
  const london = city(51.5142, -0.0931);
  const stockholm = city(59.3293, 18.0686);
  // Three probe addresses and one network the probes never reach.
  const geoip2 = (at81: MmdbValue, at89: MmdbValue, at216: MmdbValue) =>
    writeMmdb(
      [
        { network: '81.2.69.0/24', data: at81 },
        { network: '89.160.20.0/24', data: at89 },
        { network: '216.160.83.0/24', data: at216 },
        { network: '6.6.6.0/24', data: city(1, 1) },
      ],
      { databaseType: 'GeoIP2-City' },
    );
  const flat = (latitude: number) =>
    writeMmdb(
      [
        { network: '81.2.69.0/24', data: { country_code: 'GB', latitude: double(51.5143), longitude: double(-0.0912) } },
        { network: '89.160.20.0/24', data: { country_code: 'SE', latitude: double(latitude), longitude: double(18.0656) } },
      ],
      { databaseType: 'city ipv4', ipVersion: 4, languages: [], description: {} },
    );
  const seattle = city(47.2513, -122.3149);

  const cases: [string, () => Buffer, string][] = [
    [
      'every record at one point',
      () => geoip2(city(51.5142, -0.0931), city(51.5142, -0.0931), city(51.51421, -0.09311)),
      'all 3 probe addresses with coordinates (81.2.69.142, 89.160.20.112, 216.160.83.56) decode to one point, 51.5142, -0.0931',
    ],
    ['latitude 95', () => geoip2(london, city(95, 18.0686), seattle), 'location.latitude of 89.160.20.112 decodes to 95, outside [-90, 90]'],
    ['longitude -181', () => geoip2(london, stockholm, city(47.2513, -181)), 'location.longitude of 216.160.83.56 decodes to -181, outside [-180, 180]'],
    ['latitude NaN', () => geoip2(city(Number.NaN, -0.0931), stockholm, seattle), 'location.latitude of 81.2.69.142 decodes to NaN, not a coordinate'],
    ['longitude -Infinity', () => geoip2(london, city(59.3293, -Infinity), seattle), 'location.longitude of 89.160.20.112 decodes to -Infinity, not a coordinate'],
    ['a denormal latitude', () => geoip2(london, stockholm, city(5e-324, -122.3149)), 'location.latitude of 216.160.83.56 decodes to 5e-324, not a coordinate'],
    ['a tiny double, as the broken-double file has', () => geoip2(city(1.79e-52, 4.96e-91), stockholm, seattle), 'location.latitude of 81.2.69.142 decodes to 1.79e-52, not a coordinate'],
    ['latitude 95 in the flat DB-IP schema', () => flat(95), 'latitude of 89.160.20.112 decodes to 95, outside [-90, 90]'],
  ];

  it.each(cases)('%s is refused at open, naming the file', async (name, bytes, problem) => {
    const path = join(dir, `${name.replaceAll(' ', '-')}.mmdb`);
    await writeFile(path, bytes());
    expect((await refusal(path)).message).toBe(`geo database ${path}: ${problem}`);
  });

  it('a hot reload to every record at one point is refused, and clients stay where the good database put them', async () => {
    const path = join(await mkdtemp(join(dir, 'one-point-')), 'GeoIP2-City.mmdb');
    await writeFile(path, geoip2(london, stockholm, seattle));
    const { line, adminPort } = await reloadThroughMeridian(path, cases[0][1]());
    expect(line).toContain(`geo database ${path} rejected, the previous one keeps serving`);
    expect(line).toContain(cases[0][2]);
    // The file is named once, not again in the reason.
    expect(line.split(path)).toHaveLength(2);
    expect(await located(adminPort, '89.160.20.112')).toMatchObject({ lat: 59.3293, lon: 18.0686 });
  });
});
