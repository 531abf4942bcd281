// Upload pinning: the chunks of an upload follow the region that took its first chunk, keyed by project and upload
// id (learned from the first chunk's answer), including node-appwrite's 8 concurrent chunks, until the pin has been
// idle for its ttl; in every thread.
import { describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { chunkKind, UploadPins, uploadKey } from './upload-pins.ts';
import { UploadIdReader, namesUpload } from './upload-id.ts';
import { SharedPinTable } from './shared-pin-table.ts';
import type { WorkerInput, WorkerResult } from '../../test/support/shared-pin-table-worker.ts';

const HOUR = 3_600_000;
const key = (id: string, project = 'shop'): string => uploadKey(project, id);

/** Poll `check` every few ms until it holds, or fail after a deadline: no fixed sleeps. */
async function until(check: () => boolean, what: string, deadlineMs = 5_000): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

describe('chunkKind', () => {
  it('tells a first chunk, a later chunk of an upload, and anything else apart', () => {
    expect(chunkKind({ 'content-range': 'bytes 0-5242879/41943040' }, 'shop')).toEqual({ kind: 'first' });
    expect(chunkKind({ 'content-range': 'bytes 5242880-10485759/41943040', 'x-appwrite-id': 'f1' }, 'shop')).toEqual({ kind: 'later', key: key('f1') });
    // The id decides, whatever the range: a retried first chunk of a known upload carries it too.
    expect(chunkKind({ 'content-range': 'bytes 0-99/800', 'x-appwrite-id': 'f1' }, 'shop')).toEqual({ kind: 'later', key: key('f1') });
    expect(chunkKind({ 'content-range': 'bytes 100-199/800' }, 'shop')).toBeNull();
    expect(chunkKind({ 'content-range': 'bytes 100-199/800', 'x-appwrite-id': '' }, 'shop')).toBeNull();
    expect(chunkKind({ 'content-range': 'items 0-9/100' }, 'shop')).toBeNull();
    expect(chunkKind({}, 'shop')).toBeNull();
  });

  it('keys an upload by its project and id: one id in two projects is two uploads', () => {
    expect(uploadKey('shop', 'f1')).not.toBe(uploadKey('blog', 'f1'));
    expect(uploadKey(undefined, 'f1')).not.toBe(uploadKey('shop', 'f1'));
    // No project and id pair spells another's key.
    expect(uploadKey('a', 'b\nc')).not.toBe(uploadKey('a\nb', 'c'));
  });
});

describe('UploadIdReader', () => {
  it('reads $id from the start of a File answer, across chunk edges', () => {
    const body = Buffer.from('{"$id":"65f0c1a2b3d4e5f60718","bucketId":"photos","name":"a.bin","chunksTotal":8,"chunksUploaded":1}');
    const reader = new UploadIdReader();
    expect(reader.read(body.subarray(0, 12))).toBeUndefined();
    expect(reader.finished).toBe(false);
    expect(reader.read(body.subarray(12))).toBe('65f0c1a2b3d4e5f60718');
    expect(reader.finished).toBe(true);
    expect(reader.read(body)).toBeUndefined();
  });

  it('gives up after a small prefix without an id, and takes nothing that is not an Appwrite id', () => {
    const reader = new UploadIdReader();
    expect(reader.read(Buffer.alloc(1_100, 0x20))).toBeUndefined();
    expect(reader.finished).toBe(true);
    expect(new UploadIdReader().read(Buffer.from('{"$id":"has space"}'))).toBeUndefined();
    expect(new UploadIdReader().read(Buffer.from(`{"$id":"${'x'.repeat(37)}"}`))).toBeUndefined();
  });

  it('only a successful JSON answer names an upload', () => {
    expect(namesUpload(201, 'application/json')).toBe(true);
    expect(namesUpload(200, 'application/json; charset=utf-8')).toBe(true);
    expect(namesUpload(404, 'application/json')).toBe(false);
    expect(namesUpload(200, 'text/html')).toBe(false);
    expect(namesUpload(200, undefined)).toBe(false);
  });
});

describe('UploadPins', () => {
  it('pins nothing until told, then sends every chunk of the upload to that region', () => {
    const pins = new UploadPins(HOUR, 100);
    expect(pins.regionFor(key('f1'))).toBeUndefined();
    pins.pin(key('f1'), 'eu-south');
    expect(Array.from({ length: 8 }, () => pins.regionFor(key('f1')))).toEqual(Array(8).fill('eu-south'));
  });

  it('keeps the first pin made for an upload: a later answer from elsewhere never moves it', () => {
    const pins = new UploadPins(HOUR, 100);
    pins.pin(key('f1'), 'eu-south');
    pins.pin(key('f1'), 'us-east');
    expect(pins.regionFor(key('f1'))).toBe('eu-south');
  });

  it('two uploads at once, from one client, in two projects, keep their own regions', () => {
    const pins = new UploadPins(HOUR, 100);
    pins.pin(key('same-id', 'shop'), 'eu-north');
    pins.pin(key('same-id', 'blog'), 'us-west');
    expect([pins.regionFor(key('same-id', 'shop')), pins.regionFor(key('same-id', 'blog'))]).toEqual(['eu-north', 'us-west']);
  });

  it('forgets an upload once it has been idle for the ttl, and keeps it while chunks keep coming', async () => {
    const ttl = 200;
    const pins = new UploadPins(ttl, 100);
    pins.pin(key('idle'), 'eu-south');
    pins.pin(key('busy'), 'eu-north');
    // A canary pinned last and never read: once it has expired, so has every pin made before it and not read since.
    pins.pin(key('canary'), 'us-west');
    const started = performance.now();
    let busy: string | undefined = 'eu-north';
    // regionFor renews what it reads; the table itself can look without renewing.
    const table = SharedPinTable.attach(pins.memory.uploads);
    await until(() => {
      busy = pins.regionFor(key('busy'));
      return busy === undefined || table.get(key('canary'), performance.timeOrigin + performance.now()) === -1;
    }, 'the canary pin to expire');
    expect(performance.now() - started).toBeGreaterThanOrEqual(ttl - 1);
    expect(busy).toBe('eu-north');
    expect(pins.regionFor(key('idle'))).toBeUndefined();
  });

  it('bounds its memory by maxEntries, dropping the least recently used upload', () => {
    const pins = new UploadPins(HOUR, 2);
    pins.pin(key('a'), 'us-west');
    pins.pin(key('b'), 'us-east');
    expect(pins.regionFor(key('a'))).toBe('us-west');
    pins.pin(key('c'), 'eu-north');
    expect(pins.regionFor(key('b'))).toBeUndefined();
    expect(pins.regionFor(key('a'))).toBe('us-west');
    expect(pins.regionFor(key('c'))).toBe('eu-north');
  });

  it('takes new bounds from a reload at the swap, keeping the most recent pins', () => {
    const pins = new UploadPins(HOUR, 100);
    for (const id of ['a', 'b', 'c']) pins.pin(key(id), `region-${id}`);
    const swap = pins.prepare(2 * HOUR, 2);
    expect(pins.maxEntries).toBe(100);
    swap();
    expect({ ttlMs: pins.ttlMs, maxEntries: pins.maxEntries, ...pins.entries }).toEqual({ ttlMs: 2 * HOUR, maxEntries: 2, uploads: 2 });
    expect(pins.regionFor(key('a'))).toBeUndefined();
    expect(pins.regionFor(key('b'))).toBe('region-b');
    expect(pins.regionFor(key('c'))).toBe('region-c');
  });

  it('a reload that brings new regions leaves every pin naming the region it named', () => {
    const pins = new UploadPins(HOUR, 100);
    pins.pin(key('a'), 'eu-south');
    pins.pin(key('b'), 'us-west');
    pins.prepare(2 * HOUR, 50)();
    pins.pin(key('c'), 'ap-east');
    pins.pin(key('d'), 'eu-south');
    expect(['a', 'b', 'c', 'd'].map((id) => pins.regionFor(key(id)))).toEqual(['eu-south', 'us-west', 'ap-east', 'eu-south']);
  });
});

describe('UploadPins across threads', () => {
  it('a view of the same memory reads the pins another made, whatever order each met the regions in', () => {
    const pins = new UploadPins(HOUR, 100);
    const view = new UploadPins(structuredClone(pins.memory));
    pins.pin(key('a'), 'eu-south');
    view.pin(key('b'), 'us-west');
    view.pin(key('c'), 'eu-south');
    expect(['a', 'b', 'c'].map((id) => pins.regionFor(key(id)))).toEqual(['eu-south', 'us-west', 'eu-south']);
    expect(view.regionFor(key('a'))).toBe('eu-south');
    expect([pins.entries, view.entries]).toEqual([{ uploads: 3 }, { uploads: 3 }]);
  });

  it("two threads pinning at once, meeting the regions in opposite orders, read each other's pins by name", async () => {
    const pins = new UploadPins(HOUR, 10_000);
    const regions = ['us-west', 'us-east', 'eu-north', 'eu-south', 'ap-east'];
    const control = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
    const results = await Promise.all(
      ([0, 1] as const).map(async (thread) => {
        const input: WorkerInput = { thread, control, scenario: { kind: 'upload-pins', pins: pins.memory, uploads: 2_000, regions } };
        const worker = new Worker(new URL('../../test/support/shared-pin-table-worker.ts', import.meta.url), { workerData: input });
        const exited = once(worker, 'exit');
        const [result] = (await once(worker, 'message')) as [WorkerResult];
        await exited;
        return result;
      }),
    );
    expect(results.map((r) => [r.hits, r.wrong])).toEqual([
      [2_000, 0],
      [2_000, 0],
    ]);
    expect(pins.entries).toEqual({ uploads: 4_000 });
  });
});
