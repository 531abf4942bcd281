// A geo database is read once, by the main thread, into shared memory: a worker thread attaches the published
// descriptor and answers as the main thread does, reads the very bytes the main thread holds, and follows hot reloads.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GeoDatabaseError, openGeoDatabase } from '../src/geo/database.ts';
import type { PublishedGeoDatabase } from '../src/geo/database.ts';
import { GeoLocator } from '../src/geo/locator.ts';
import type { GeoWorkerReply, GeoWorkerRequest } from './support/geo-worker.ts';
import { writeMmdb, cityRecord } from './support/mmdb-writer.ts';
import type { MmdbValue } from './support/mmdb-writer.ts';

const city = cityRecord;
const geoip2 = (london: MmdbValue) =>
  writeMmdb(
    [
      { network: '81.2.69.0/24', data: london },
      { network: '2a02:d1c0::/29', data: city('IT', 'EU', 42.8333, 12.8333) },
      { network: '2001:218::/32', data: { country: { iso_code: 'JP' } } },
    ],
    { databaseType: 'GeoIP2-City' },
  );
const london = city('GB', 'EU', 51.5142, -0.0931);
const stockholm = city('SE', 'EU', 59.3293, 18.0686);

let dir: string;
let worker: Worker;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meridian-geo-shared-'));
  worker = new Worker(new URL('./support/geo-worker.ts', import.meta.url));
});
afterAll(async () => {
  await worker.terminate();
  await rm(dir, { recursive: true, force: true });
});

/** One request to the worker thread and its reply; a crash in the worker rejects. */
async function ask(request: GeoWorkerRequest): Promise<GeoWorkerReply> {
  worker.postMessage(request);
  const [reply] = await once(worker, 'message');
  return reply as GeoWorkerReply;
}

async function file(name: string, bytes: Uint8Array): Promise<string> {
  const path = join(dir, name);
  await writeFile(`${path}.tmp`, bytes);
  await rename(`${path}.tmp`, path);
  return path;
}

it('a worker attaches the published database and answers every address as the main thread does', async () => {
  const path = await file('same-answers.mmdb', geoip2(london));
  const locator = await GeoLocator.open([path], { cacheSize: 100 });
  const [published] = locator.published;
  expect(published).toEqual({ path, buffer: expect.any(SharedArrayBuffer), info: locator.databases[0] });
  expect(published.buffer).toBeInstanceOf(SharedArrayBuffer);

  expect(await ask({ attach: locator.published })).toEqual({ attached: [{ shared: true, byteLength: (await stat(path)).size }] });
  const ips = ['81.2.69.142', '2a02:d1c0::1', '2001:218::1', '8.8.8.8', '2a02:d1c8::1', '10.0.0.1', 'not-an-ip'];
  const here = ips.map((ip) => locator.locate(ip));
  expect(here.map((location) => location?.country ?? null)).toEqual(['GB', 'IT', 'JP', null, null, null, null]);
  expect(await ask({ locate: ips })).toEqual({ located: here });
});

it('the worker reads the one resident copy: a byte the main thread changes is what the worker sees', async () => {
  // A copy of its own, since the test writes into the database's memory.
  const database = await openGeoDatabase(await file('written-to.mmdb', geoip2(london)));
  await ask({ attach: [database.published] });
  // The country code is stored as a string of two bytes after its control byte, 0x42 ('B'): "BGB".
  const memory = Buffer.from(database.published.buffer);
  const at = memory.indexOf('BGB') + 1;
  expect(await ask({ peek: at })).toEqual({ byte: 'G'.charCodeAt(0) });

  memory.write('SE', at, 'latin1');
  expect(await ask({ peek: at })).toEqual({ byte: 'S'.charCodeAt(0) });
  // An address the worker has not cached: its reader decodes the changed bytes, as the main thread's does.
  expect(database.lookup('81.2.69.7')).toMatchObject({ country: 'SE', lat: 51.5142 });
  expect(await ask({ locate: ['81.2.69.7'] })).toMatchObject({ located: [{ country: 'SE', lat: 51.5142 }] });
});

describe('hot reload', () => {
  it('publishes new memory to forward to the worker, which serves from the old memory until it swaps', async () => {
    const path = await file('reloaded.mmdb', geoip2(london));
    const publications: (readonly PublishedGeoDatabase[])[] = [];
    const locator = await GeoLocator.open([path], { cacheSize: 100, onPublish: (published) => publications.push(published) });
    const [before] = locator.published;
    await ask({ attach: locator.published });

    await file('reloaded.mmdb', geoip2(stockholm));
    await locator.reload();
    expect(publications).toHaveLength(1);
    const [after] = publications[0];
    expect(after.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(after.buffer).not.toBe(before.buffer);
    expect(locator.published).toEqual(publications[0]);
    expect(locator.locate('81.2.69.1')).toMatchObject({ country: 'SE' });
    // The main thread swapped; the worker's reader still holds the old buffer, and it answers from it.
    expect(await ask({ locate: ['81.2.69.1'] })).toMatchObject({ located: [{ country: 'GB' }] });

    await ask({ attach: publications[0] });
    expect(await ask({ locate: ['81.2.69.2'] })).toMatchObject({ located: [{ country: 'SE' }] });

    await file('reloaded.mmdb', randomBytes(4096));
    await expect(locator.reload()).rejects.toBeInstanceOf(GeoDatabaseError);
    expect(publications).toHaveLength(1);
    expect(locator.published[0].buffer).toBe(after.buffer);
    expect(locator.locate('81.2.69.3')).toMatchObject({ country: 'SE' });
    expect(await ask({ locate: ['81.2.69.3'] })).toMatchObject({ located: [{ country: 'SE' }] });
  });
});
