// The memory chunk retries hold during real uploads: node-appwrite sends an upload's first chunk alone, then the rest
// up to 8 at once, and Meridian (two workers) holds each chunk's bytes while it streams. The process-wide count is
// watched from a thread of its own (test/support/held-bytes-watch.ts) for its high-water mark. With
// MERIDIAN_PRINT_FIGURES=1 the peaks are printed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ID } from 'node-appwrite';
import { InputFile } from 'node-appwrite/file';
import { Traffic } from '../src/proxy/plane.ts';
import { DEFAULT_UPLOAD_RETRY_BUFFER_BYTES, DEFAULT_UPLOAD_RETRY_CHUNK_BYTES } from '../src/config/defaults.ts';
import { until } from './support/harness.ts';
import { watchHeldBytes } from './support/held-bytes-watch.ts';
import {
  CHUNK_SIZE,
  PLACES,
  appwriteStorage,
  patternBytes,
  startAppwriteBackend,
  startAppwriteFront,
  writeGeoFixture,
  type AppwriteBackend,
  type AppwriteFront,
} from './support/appwrite-backend.ts';

const MiB = 1024 * 1024;

let geo: Awaited<ReturnType<typeof writeGeoFixture>>;
let backend: AppwriteBackend;
let front: AppwriteFront;
beforeAll(async () => {
  geo = await writeGeoFixture();
  backend = await startAppwriteBackend();
  front = await startAppwriteFront(backend, { geoDatabase: geo.path, workers: 2 });
});
afterAll(async () => {
  await front?.shutdown();
  await backend?.close();
  await geo?.remove();
});

describe('the watcher', () => {
  it('reads what a data-plane thread holds, from another thread', async () => {
    const traffic = new Traffic(Traffic.allocate(1));
    const watch = await watchHeldBytes(traffic.buffer);
    expect(traffic.tryHold(12_345, 1 * MiB)).toBe(true);
    // Held until the watcher has certainly read it a few times.
    await new Promise((resolve) => setTimeout(resolve, 20));
    traffic.releaseHeld(12_345);
    const { peakBytes, readings } = await watch.stop();
    expect(peakBytes).toBe(12_345);
    expect(readings).toBeGreaterThan(10);
  });
});

describe('chunk bytes held for retries during node-appwrite uploads, with two workers', () => {
  // 8 chunks: the first alone, then 7 at once; 9 chunks: the first alone, then 8 at once (node-appwrite's most).
  it.each([8, 9])('an upload of %i chunks holds at most one retry copy per chunk in flight, and gives all back', async (chunks) => {
    const size = (chunks - 1) * CHUNK_SIZE + 3 * MiB;
    const bytes = patternBytes(size, chunks);
    const fileId = ID.unique();
    const traffic = front.meridian.runtime.traffic;
    expect(traffic.heldBytes).toBe(0);
    const watch = await watchHeldBytes(traffic.buffer);
    const { storage } = appwriteStorage(front.endpoint, 'p1', PLACES.stockholm.ip);
    const file = await storage.createFile({ bucketId: 'photos', fileId, file: InputFile.fromBuffer(bytes, `${fileId}.bin`) });
    // The last exchange gives its bytes back when its response closes, just after the SDK has the answer.
    await until(() => traffic.heldBytes === 0, 'every held byte given back');
    const { peakBytes } = await watch.stop();
    expect(file).toMatchObject({ chunksTotal: chunks, chunksUploaded: chunks });
    expect(backend.regions[PLACES.stockholm.region].file('p1', 'photos', fileId)?.bytes().equals(bytes)).toBe(true);

    // Each chunk request (5 MiB and its multipart envelope) holds its Content-Length while it streams.
    const chunkRequests = backend.chunksOf(fileId).filter((c) => c.status === 201);
    expect(chunkRequests).toHaveLength(chunks);
    const largest = Math.max(...chunkRequests.map((c) => c.bytes));
    const inFlightAtMost = Math.min(chunks - 1, 8);
    // At least one whole chunk was held (the later chunks normally are all held at once, as the figures show).
    expect(peakBytes).toBeGreaterThanOrEqual(largest);
    expect(peakBytes).toBeLessThanOrEqual(inFlightAtMost * largest);
    expect(peakBytes).toBeLessThanOrEqual(inFlightAtMost * DEFAULT_UPLOAD_RETRY_CHUNK_BYTES);
    expect(peakBytes).toBeLessThan(DEFAULT_UPLOAD_RETRY_BUFFER_BYTES);
    if (process.env.MERIDIAN_PRINT_FIGURES === '1') {
      const mib = (n: number): string => (n / MiB).toFixed(2);
      console.log(
        `held-peak chunks=${chunks} concurrent<=${inFlightAtMost} peak=${peakBytes} B (${mib(peakBytes)} MiB, ${(peakBytes / largest).toFixed(2)} chunks of ${largest} B) ` +
          `bound=${mib(inFlightAtMost * largest)} MiB cap=${mib(DEFAULT_UPLOAD_RETRY_BUFFER_BYTES)} MiB`,
      );
    }
  }, 30_000);
});
