// Upload pinning: a chunked upload's later chunks follow the region that served its first chunk, per client and
// path, including node-appwrite's 8 concurrent chunks, until the pin has been idle for its ttl; in every thread.
import { describe, expect, it } from 'vitest';
import { once } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { UploadPins } from './upload-pins.ts';
import type { WorkerInput, WorkerResult } from '../../test/support/shared-pin-table-worker.ts';

const PATH = '/v1/storage/buckets/photos/files';
const ALICE = '81.2.69.142';
const BOB = '2a02:d1c0::1';
const HOUR = 3_600_000;

const firstChunk: IncomingHttpHeaders = { 'content-range': 'bytes 0-5242879/41943040', 'x-appwrite-project': 'shop' };
const chunk = (id: string, n: number): IncomingHttpHeaders => ({
  'content-range': `bytes ${n * 5_242_880}-${(n + 1) * 5_242_880 - 1}/41943040`,
  'x-appwrite-id': id,
});

/** Poll `check` every few ms until it holds, or fail after a deadline: no fixed sleeps. */
async function until(check: () => boolean, what: string, deadlineMs = 5_000): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

describe('UploadPins', () => {
  it('sends later chunks to the region that served the first chunk', () => {
    const pins = new UploadPins(HOUR, 100);
    // The first chunk carries no id and is not pinned yet: it is routed by geography.
    expect(pins.regionFor(firstChunk, ALICE, PATH)).toBeUndefined();
    pins.served(firstChunk, ALICE, PATH, 'eu-south');
    expect(pins.regionFor(chunk('file-1', 1), ALICE, PATH)).toBe('eu-south');
    // The query string is not part of the upload's identity.
    expect(pins.regionFor(chunk('file-1', 2), ALICE, `${PATH}?project=shop`)).toBe('eu-south');
  });

  it('gives all 8 concurrent chunks of one upload the same region, even when they are served elsewhere', () => {
    const pins = new UploadPins(HOUR, 100);
    pins.served(firstChunk, ALICE, PATH, 'eu-south');
    const regions = Array.from({ length: 8 }, (_, n) => pins.regionFor(chunk('file-1', n + 1), ALICE, PATH));
    // A later chunk's response never moves the pin.
    pins.served(chunk('file-1', 3), ALICE, PATH, 'us-east');
    regions.push(pins.regionFor(chunk('file-1', 9), ALICE, PATH));
    expect(regions).toEqual(Array(9).fill('eu-south'));
  });

  it('keeps an upload on its region once adopted, even after a new first chunk on the same path', () => {
    const pins = new UploadPins(HOUR, 100);
    pins.served(firstChunk, ALICE, PATH, 'eu-south');
    expect(pins.regionFor(chunk('file-1', 1), ALICE, PATH)).toBe('eu-south');
    // The same client starts a second upload to the same bucket, and that one lands in eu-north.
    pins.served(firstChunk, ALICE, PATH, 'eu-north');
    expect(pins.regionFor(chunk('file-1', 2), ALICE, PATH)).toBe('eu-south');
    expect(pins.regionFor(chunk('file-2', 1), ALICE, PATH)).toBe('eu-north');
  });

  it('does not share first-chunk pins between clients or paths', () => {
    const pins = new UploadPins(HOUR, 100);
    pins.served(firstChunk, ALICE, PATH, 'eu-south');
    expect(pins.regionFor(chunk('file-b', 1), BOB, PATH)).toBeUndefined();
    expect(pins.regionFor(chunk('file-a', 1), ALICE, '/v1/storage/buckets/videos/files')).toBeUndefined();
    expect(pins.regionFor(chunk('file-a', 1), ALICE, PATH)).toBe('eu-south');
  });

  it('pins an upload whose first chunk it never saw by the region that served a chunk with its id', () => {
    const pins = new UploadPins(HOUR, 100);
    expect(pins.regionFor(chunk('file-1', 4), ALICE, PATH)).toBeUndefined();
    pins.served(chunk('file-1', 4), ALICE, PATH, 'us-west');
    expect(pins.regionFor(chunk('file-1', 5), BOB, '/elsewhere')).toBe('us-west');
  });

  it.each([
    { what: 'no Content-Range', headers: {} },
    { what: 'a range that does not start at 0', headers: { 'content-range': 'bytes 5242880-10485759/41943040' } },
    { what: 'an empty id on a later chunk', headers: { 'content-range': 'bytes 100-199/800', 'x-appwrite-id': '' } },
    { what: 'a range in another unit', headers: { 'content-range': 'items 0-9/100' } },
  ])('pins nothing for a request with $what', ({ headers }) => {
    const pins = new UploadPins(HOUR, 100);
    pins.served(headers, ALICE, PATH, 'eu-south');
    expect(pins.regionFor(chunk('file-1', 1), ALICE, PATH)).toBeUndefined();
    expect(pins.regionFor(headers, ALICE, PATH)).toBeUndefined();
  });

  it('forgets a first chunk after its ttl', async () => {
    const pins = new UploadPins(50, 100);
    pins.served(firstChunk, ALICE, PATH, 'eu-south');
    let probes = 0;
    // Each probe is a fresh upload id, so probing never refreshes the first-chunk pin it reads.
    await until(() => pins.regionFor(chunk(`probe-${probes++}`, 1), ALICE, PATH) === undefined, 'the first-chunk pin to expire');
    expect(probes).toBeGreaterThan(0);
  });

  it('forgets an upload once it has been idle for the ttl, and keeps it while chunks keep coming', async () => {
    const ttl = 200;
    const pins = new UploadPins(ttl, 100);
    pins.served(chunk('idle', 1), ALICE, PATH, 'eu-south');
    pins.served(chunk('busy', 1), ALICE, PATH, 'eu-north');
    // A canary pinned last: once it has expired, so has every pin made before it and not touched since.
    pins.served(firstChunk, BOB, PATH, 'us-west');
    const started = performance.now();
    let busy: string | undefined = 'eu-north';
    let n = 0;
    await until(() => {
      busy = pins.regionFor(chunk('busy', ++n), ALICE, PATH);
      return busy === undefined || pins.regionFor(chunk(`canary-${n}`, 1), BOB, PATH) === undefined;
    }, 'the canary pin to expire');
    expect(performance.now() - started).toBeGreaterThanOrEqual(ttl - 1);
    expect(busy).toBe('eu-north');
    expect(pins.regionFor(chunk('idle', 2), ALICE, PATH)).toBeUndefined();
    expect(pins.regionFor(chunk('busy', ++n), ALICE, PATH)).toBe('eu-north');
  });

  it('bounds its memory by maxEntries, dropping the least recently used upload', () => {
    const pins = new UploadPins(HOUR, 2);
    pins.served(chunk('a', 1), ALICE, PATH, 'us-west');
    pins.served(chunk('b', 1), ALICE, PATH, 'us-east');
    expect(pins.regionFor(chunk('a', 2), ALICE, PATH)).toBe('us-west');
    pins.served(chunk('c', 1), ALICE, PATH, 'eu-north');
    expect(pins.regionFor(chunk('b', 2), ALICE, PATH)).toBeUndefined();
    expect(pins.regionFor(chunk('a', 3), ALICE, PATH)).toBe('us-west');
    expect(pins.regionFor(chunk('c', 2), ALICE, PATH)).toBe('eu-north');
  });

  it('takes new bounds from a reload at the swap, keeping the most recent pins', () => {
    const pins = new UploadPins(HOUR, 100);
    for (const id of ['a', 'b', 'c']) pins.served(chunk(id, 1), ALICE, PATH, `region-${id}`);
    const swap = pins.prepare(2 * HOUR, 2);
    expect(pins.maxEntries).toBe(100);
    swap();
    expect({ ttlMs: pins.ttlMs, maxEntries: pins.maxEntries, ...pins.entries }).toEqual({ ttlMs: 2 * HOUR, maxEntries: 2, uploads: 2, firstChunks: 0 });
    expect(pins.regionFor(chunk('a', 2), ALICE, PATH)).toBeUndefined();
    expect(pins.regionFor(chunk('b', 2), ALICE, PATH)).toBe('region-b');
    expect(pins.regionFor(chunk('c', 2), ALICE, PATH)).toBe('region-c');
  });

  it('a reload that brings new regions leaves every pin naming the region it named', () => {
    const pins = new UploadPins(HOUR, 100);
    pins.served(chunk('a', 1), ALICE, PATH, 'eu-south');
    pins.served(chunk('b', 1), ALICE, PATH, 'us-west');
    pins.prepare(2 * HOUR, 50)();
    pins.served(chunk('c', 1), ALICE, PATH, 'ap-east');
    pins.served(chunk('d', 1), ALICE, PATH, 'eu-south');
    expect(['a', 'b', 'c', 'd'].map((id) => pins.regionFor(chunk(id, 2), ALICE, PATH))).toEqual(['eu-south', 'us-west', 'ap-east', 'eu-south']);
  });
});

describe('UploadPins across threads', () => {
  it('a view of the same memory reads the pins another made, whatever order each met the regions in', () => {
    const pins = new UploadPins(HOUR, 100);
    const view = new UploadPins(structuredClone(pins.memory));
    pins.served(chunk('a', 1), ALICE, PATH, 'eu-south');
    view.served(chunk('b', 1), ALICE, PATH, 'us-west');
    view.served(chunk('c', 1), ALICE, PATH, 'eu-south');
    pins.served(firstChunk, BOB, PATH, 'us-west');
    expect(['a', 'b', 'c'].map((id) => pins.regionFor(chunk(id, 2), ALICE, PATH))).toEqual(['eu-south', 'us-west', 'eu-south']);
    expect(view.regionFor(chunk('d', 1), BOB, PATH)).toBe('us-west');
    expect([pins.entries, view.entries]).toEqual([
      { uploads: 4, firstChunks: 1 },
      { uploads: 4, firstChunks: 1 },
    ]);
  });

  it('two threads pinning at once, meeting the regions in opposite orders, read each other\'s pins by name', async () => {
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
    expect(pins.entries).toEqual({ uploads: 4_000, firstChunks: 0 });
  });
});
