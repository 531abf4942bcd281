// What pin discovery costs a real upload. A Stockholm client's first chunk lands in eu-south while eu-north is down,
// through instance A, which pins it; eu-north is back for the later chunks, which node-appwrite sends 8 at once and a
// splitter deals to A and B in turn. B knows no pin, so each of its chunks goes to eu-north first, gets Appwrite's
// 404, and is sent again, held, to eu-south. The cost is one wasted attempt (the chunk's bytes sent to the wrong
// region) per chunk B took before its first discovery answered, never more than retries.maxAttempts - 1 per chunk.
// The same upload through A alone is the baseline. With MERIDIAN_PRINT_FIGURES=1 the figures are printed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ID } from 'node-appwrite';
import { InputFile } from 'node-appwrite/file';
import { metricValue } from './support/harness.ts';
import { startSplitter } from './support/splitter.ts';
import {
  CHUNK_SIZE,
  PLACES,
  ZONES,
  appwriteStorage,
  patternBytes,
  startAppwriteBackend,
  startAppwriteFront,
  writeGeoFixture,
  type AppwriteBackend,
  type AppwriteFront,
} from './support/appwrite-backend.ts';

const CHUNKS = 9;
const ROUNDS = 3;

let geo: Awaited<ReturnType<typeof writeGeoFixture>>;
let backend: AppwriteBackend;
let fronts: AppwriteFront[] = [];
let alternating: Awaited<ReturnType<typeof startSplitter>>;
let aOnly: Awaited<ReturnType<typeof startSplitter>>;
beforeAll(async () => {
  geo = await writeGeoFixture();
  backend = await startAppwriteBackend();
  fronts = [
    await startAppwriteFront(backend, { geoDatabase: geo.path, workers: 2, self: { region: 'eu-north', zone: 'az-1' } }),
    await startAppwriteFront(backend, { geoDatabase: geo.path, workers: 2, self: { region: 'eu-north', zone: 'az-3' } }),
  ];
  alternating = await startSplitter(fronts.map((f) => f.port));
  aOnly = await startSplitter([fronts[0].port]);
});
afterAll(async () => {
  await alternating?.close();
  await aOnly?.close();
  await Promise.all(fronts.map((f) => f.shutdown()));
  await backend?.close();
  await geo?.remove();
});

interface Outcome {
  readonly ms: number;
  /** Chunk requests answered 404 storage_file_not_found: attempts discovery spent in the wrong region. */
  readonly wasted: number;
  readonly wastedBytes: number;
  /** Later chunks the instance without the pin (B) carried, and how many chunks were found by discovery. */
  readonly carriedByB: number;
  readonly discoveredByB: number;
}

/** Chunks found by discovery, both instances together. */
async function discovered(): Promise<number> {
  const counts = await Promise.all(fronts.map((f) => metricValue(f.adminPort, 'meridian_upload_chunk_retries_total{result="discovered"}')));
  return counts.reduce((a, b) => a + b, 0);
}

async function upload(splitter: Awaited<ReturnType<typeof startSplitter>>, round: number): Promise<Outcome> {
  const size = (CHUNKS - 1) * CHUNK_SIZE + 1024 * 1024;
  const bytes = patternBytes(size, 1000 + round);
  const fileId = ID.unique();
  await Promise.all(ZONES.map((zone) => backend.kill('eu-north', zone)));
  backend.onChunkHead = async (head) => {
    if (head.uploadId === undefined) await Promise.all(ZONES.map((zone) => backend.restart('eu-north', zone)));
    backend.onChunkHead = undefined;
  };
  const discoveredBefore = await discovered();
  const logged = splitter.log.length;
  const started = performance.now();
  const { storage } = appwriteStorage(`http://127.0.0.1:${splitter.port}/v1`, 'p1', PLACES.stockholm.ip);
  const file = await storage.createFile({ bucketId: 'photos', fileId, file: InputFile.fromBuffer(bytes, `${fileId}.bin`) }).finally(() => (backend.onChunkHead = undefined));
  const ms = performance.now() - started;
  expect(file).toMatchObject({ chunksTotal: CHUNKS, chunksUploaded: CHUNKS });
  expect(backend.regions['eu-south'].file('p1', 'photos', fileId)?.bytes().equals(bytes)).toBe(true);
  const chunks = backend.chunksOf(fileId);
  const wrong = chunks.filter((c) => c.region !== 'eu-south');
  expect(wrong.every((c) => c.region === 'eu-north' && c.status === 404 && c.type === 'storage_file_not_found')).toBe(true);
  // The splitter keeps counting across uploads, so the first chunk may go to either instance: the other is "B".
  const requests = splitter.log.slice(logged);
  const first = requests.find((r) => r.uploadId === undefined)!;
  const carriedByB = requests.filter((r) => r.uploadId !== undefined && r.to !== first.to).length;
  return {
    ms,
    wasted: wrong.length,
    wastedBytes: wrong.reduce((sum, c) => sum + c.bytes, 0),
    carriedByB,
    discoveredByB: (await discovered()) - discoveredBefore,
  };
}

describe('pin discovery’s cost for an upload of 9 chunks, 8 at once, across two instances', () => {
  it('wastes at most one attempt per chunk the second instance carried, and none without it', async () => {
    const results: { alone: Outcome; split: Outcome }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // Alternating order, so a warmer machine does not favour one side.
      const alone = await upload(aOnly, 2 * round);
      const split = await upload(alternating, 2 * round + 1);
      results.push({ alone, split });
    }
    for (const { alone, split } of results) {
      expect(alone.wasted).toBe(0);
      // Every later chunk B carried was asked of eu-north at most once before eu-south; and B had to discover.
      expect(split.carriedByB).toBe(Math.floor((CHUNKS - 1) / 2) + ((CHUNKS - 1) % 2));
      expect(split.wasted).toBeGreaterThanOrEqual(1);
      expect(split.wasted).toBeLessThanOrEqual(split.carriedByB);
      expect(split.discoveredByB).toBe(split.wasted);
    }
    if (process.env.MERIDIAN_PRINT_FIGURES === '1') {
      for (const [round, { alone, split }] of results.entries()) {
        console.log(
          `discovery round ${round + 1}: A alone ${alone.ms.toFixed(0)} ms, 0 wasted; A/B ${split.ms.toFixed(0)} ms, ` +
            `B carried ${split.carriedByB} later chunks, ${split.wasted} sent to eu-north first (${(split.wastedBytes / 1024 / 1024).toFixed(2)} MiB), ` +
            `ratio ${(split.ms / alone.ms).toFixed(2)}`,
        );
      }
    }
  }, 60_000);
});
