// Chunked uploads with the real node-appwrite SDK, through Meridian with two worker threads, to an Appwrite-shaped
// backend of four regions whose storage is bound to the region (test/support/appwrite-backend.ts). A chunk that
// reaches a region other than the one holding its upload gets Appwrite's 404 and the SDK throws, so an upload that
// completes with every chunk recorded in one region is an upload Meridian kept together.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ID } from 'node-appwrite';
import { InputFile } from 'node-appwrite/file';
import { Client as WebClient, Realtime, type RealtimeResponseEvent } from 'appwrite';
import { metricValue, send, until } from './support/harness.ts';
import { startSplitter } from './support/splitter.ts';
import {
  CHUNK_SIZE,
  PLACES,
  REGION_NAMES,
  ZONES,
  appwriteStorage,
  patternBytes,
  startAppwriteBackend,
  startAppwriteFront,
  writeGeoFixture,
  type AppwriteBackend,
  type AppwriteFront,
  type RegionName,
  type ZoneName,
} from './support/appwrite-backend.ts';

const BUCKET = 'photos';

let geo: Awaited<ReturnType<typeof writeGeoFixture>>;
beforeAll(async () => {
  geo = await writeGeoFixture();
});
afterAll(() => geo.remove());

/**
 * Where an upload's chunks went: a list of problems, empty when every chunk of `fileId` was stored in `region` (and
 * no other region saw any) and the region holds exactly `bytes`.
 */
function landedWhollyIn(backend: AppwriteBackend, project: string, fileId: string, region: RegionName, bytes: Buffer): string[] {
  const problems: string[] = [];
  const regions = backend.regionsOf(fileId, project);
  if (regions.join() !== region) problems.push(`chunks reached ${regions.join(', ') || 'no region'}, not only ${region}`);
  const chunks = backend.chunksOf(fileId, project);
  const expected = Math.ceil(bytes.length / CHUNK_SIZE);
  const stored = chunks.filter((c) => c.region === region && c.status === 201).map((c) => c.chunk);
  if (new Set(stored).size !== expected) problems.push(`${region} stored chunks ${stored.join(', ')} of ${expected}`);
  const refused = chunks.filter((c) => c.status !== 201);
  if (refused.length > 0) problems.push(`refused: ${refused.map((c) => `chunk ${c.chunk} in ${c.region}/${c.zone}: ${c.status} ${c.type}`).join('; ')}`);
  const file = backend.regions[region].file(project, BUCKET, fileId);
  if (!file?.complete) problems.push(`${region} holds ${file ? `${file.chunksUploaded} of ${file.chunksTotal} chunks` : 'nothing'}`);
  else if (!file.bytes().equals(bytes)) problems.push(`${region} holds different bytes`);
  return problems;
}

describe('chunked uploads through Meridian with two workers', () => {
  let backend: AppwriteBackend;
  let front: AppwriteFront;
  beforeAll(async () => {
    backend = await startAppwriteBackend();
    front = await startAppwriteFront(backend, { geoDatabase: geo.path, workers: 2 });
  });
  afterAll(async () => {
    await front?.shutdown();
    await backend?.close();
  });

  it('lands every chunk of uploads from four places in the region nearest each, and reads them back whole and by range', async () => {
    // Three full chunks and an odd tail: four chunks, the first alone, then three at once, as the SDK sends them.
    const size = 3 * CHUNK_SIZE + 2 * 1024 * 1024 + 123;
    const places = Object.values(PLACES);
    const uploads = places.map((place, i) => ({ ...place, fileId: ID.unique(), bytes: patternBytes(size, i + 1) }));
    // All four at once: each worker serves chunks of several uploads, and none may stray to another's region.
    const results = await Promise.all(
      uploads.map(({ ip, fileId, bytes }) =>
        appwriteStorage(front.endpoint, 'p1', ip).storage.createFile({ bucketId: BUCKET, fileId, file: InputFile.fromBuffer(bytes, `${fileId}.bin`) }),
      ),
    );
    for (const [i, { region, fileId, bytes }] of uploads.entries()) {
      expect(results[i]).toMatchObject({ $id: fileId, bucketId: BUCKET, sizeOriginal: size, chunksTotal: 4, chunksUploaded: 4 });
      expect(landedWhollyIn(backend, 'p1', fileId, region, bytes), `upload from ${region}`).toEqual([]);
    }

    for (const { ip, region, fileId, bytes } of uploads) {
      const { storage } = appwriteStorage(front.endpoint, 'p1', ip);
      // Storage is bound to the region, so a read served anywhere else would be a 404 and the SDK would throw.
      expect(Buffer.from(await storage.getFileDownload({ bucketId: BUCKET, fileId })).equals(bytes), `download from ${region}`).toBe(true);
      expect(Buffer.from(await storage.getFileView({ bucketId: BUCKET, fileId })).equals(bytes), `view from ${region}`).toBe(true);

      // Ranges across the first chunk boundary, from the middle to the end, and the last bytes.
      const path = `/v1/storage/buckets/${BUCKET}/files/${fileId}/download`;
      const ranges: [string, number, number][] = [
        [`bytes=${CHUNK_SIZE - 100}-${CHUNK_SIZE + 99}`, CHUNK_SIZE - 100, CHUNK_SIZE + 99],
        [`bytes=${2 * CHUNK_SIZE + 7}-`, 2 * CHUNK_SIZE + 7, size - 1],
        ['bytes=-1000', size - 1000, size - 1],
      ];
      for (const [range, start, end] of ranges) {
        const reply = await send(front.port, { path, headers: { 'x-appwrite-project': 'p1', 'x-forwarded-for': ip, range } });
        expect(reply.status, `${range} from ${region}`).toBe(206);
        expect(reply.headers['content-range']).toBe(`bytes ${start}-${end}/${size}`);
        expect(reply.body.equals(bytes.subarray(start, end + 1)), `${range} from ${region}`).toBe(true);
      }
      // Every read was served by the region holding the file: two whole reads and three ranges.
      const reads = backend.regions[region].downloads.filter((d) => d.fileId === fileId);
      expect(reads.map((d) => d.status)).toEqual([200, 200, 206, 206, 206]);
    }
  }, 60_000);
});

describe('two projects with different home regions, uploading at once from one address', () => {
  let backend: AppwriteBackend;
  let front: AppwriteFront;
  const HOMES = { p1: 'eu-north', p2: 'us-west' } as const satisfies Record<string, RegionName>;
  beforeAll(async () => {
    backend = await startAppwriteBackend();
    front = await startAppwriteFront(backend, {
      geoDatabase: geo.path,
      workers: 2,
      overrides: { routing: { projects: { p1: { home: HOMES.p1 }, p2: { home: HOMES.p2 } } } },
    });
  });
  afterAll(async () => {
    await front?.shutdown();
    await backend?.close();
  });

  it('keeps each upload whole in its project’s home region, over 20 rounds of two uploads to the same bucket path and file id', async () => {
    // One server (New York, nearest us-east, neither project's home) uploads to the same bucket name in both projects
    // at once, under the same file id (an app naming files itself, say by user). Each upload's first chunk goes to its
    // project's home; a later chunk that followed the other upload's first chunk would reach a region that never saw
    // its upload and get a 404. Pins keyed by (client IP, path) did exactly that, and pins keyed by the id alone would
    // too; pins keyed by (project, upload id) cannot confuse the two uploads.
    const ip = PLACES.newYork.ip;
    const size = 2 * CHUNK_SIZE + 1024 * 1024;
    const clients = { p1: appwriteStorage(front.endpoint, 'p1', ip).storage, p2: appwriteStorage(front.endpoint, 'p2', ip).storage };
    const failures: string[] = [];
    for (let round = 0; round < 20; round++) {
      const fileId = ID.unique();
      const uploads = (['p1', 'p2'] as const).map((project, i) => ({ project, fileId, bytes: patternBytes(size, 100 * round + i) }));
      const settled = await Promise.allSettled(
        uploads.map(({ project, fileId, bytes }) =>
          clients[project].createFile({ bucketId: BUCKET, fileId, file: InputFile.fromBuffer(bytes, `${fileId}.bin`) }),
        ),
      );
      for (const [i, { project, fileId, bytes }] of uploads.entries()) {
        const outcome = settled[i];
        const problems = landedWhollyIn(backend, project, fileId, HOMES[project], bytes);
        if (outcome.status === 'rejected') problems.unshift(`the SDK threw: ${String(outcome.reason)}`);
        if (problems.length > 0) failures.push(`round ${round + 1}, ${project}: ${problems.join('; ')}`);
      }
    }
    expect(failures).toEqual([]);
  }, 120_000);
});



describe('the zone receiving an upload dies while a chunk streams into it', () => {
  let backend: AppwriteBackend;
  let front: AppwriteFront;
  beforeAll(async () => {
    backend = await startAppwriteBackend();
    // Health checks at boot only (startAppwriteFront's default): the dead zone stays a candidate, so what saves the
    // upload is the data plane sending the held chunk again, not a health check taking the zone out.
    front = await startAppwriteFront(backend, { geoDatabase: geo.path, workers: 2 });
  });
  afterAll(async () => {
    await front?.shutdown();
    await backend?.close();
  });

  it('completes: the cut chunk is sent whole to the sibling zone, and every chunk is stored in the region', async () => {
    // Four chunks: the first alone, then three at once. The zone that gets the first later chunk is killed once that
    // chunk's first bytes have arrived (node-appwrite never retries a chunk: without Meridian's retry it throws).
    const { ip, region } = PLACES.stockholm;
    const size = 3 * CHUNK_SIZE + 1024 * 1024 + 17;
    const fileId = ID.unique();
    const bytes = patternBytes(size, 4242);
    const probesBefore = Object.fromEntries(Object.entries(backend.zones).map(([name, zone]) => [name, zone.probes]));
    const contentLengths: number[] = [];
    let killed: { zone: ZoneName; contentRange: string | undefined } | undefined;
    backend.onChunkHead = (head, req) => {
      contentLengths.push(Number(req.headers['content-length']));
      if (head.uploadId === undefined || killed !== undefined) return;
      killed = { zone: head.zone, contentRange: head.contentRange };
      const zone = head.zone;
      req.once('data', () => {
        // Hold the rest of the body back so the cut is surely mid-chunk, then crash the zone.
        req.pause();
        void backend.kill(head.region, zone);
      });
    };
    const { storage } = appwriteStorage(front.endpoint, 'p1', ip);
    const file = await storage
      .createFile({ bucketId: BUCKET, fileId, file: InputFile.fromBuffer(bytes, `${fileId}.bin`) })
      .finally(() => (backend.onChunkHead = undefined));
    expect(file).toMatchObject({ $id: fileId, sizeOriginal: size, chunksTotal: 4, chunksUploaded: 4 });
    expect(killed, 'a later chunk reached a zone').toBeDefined();

    // The killed zone took part of a later chunk and lost it; its sibling stored that chunk, and the region holds the
    // whole upload. No other region saw any of it.
    const sibling = killed!.zone === 'az-1' ? 'az-3' : 'az-1';
    const chunks = backend.chunksOf(fileId);
    const cut = chunks.filter((c) => c.status === 0);
    expect(cut.length).toBeGreaterThanOrEqual(1);
    expect(cut.every((c) => c.region === region && c.zone === killed!.zone)).toBe(true);
    const [, start, end] = /^bytes (\d+)-(\d+)\//.exec(killed!.contentRange ?? '') ?? [];
    expect(cut.find((c) => c.contentRange === killed!.contentRange)!.bytes, 'bytes the killed zone got').toBeLessThan(Number(end) - Number(start) + 1);
    for (const { contentRange } of cut) {
      expect(chunks.some((c) => c.contentRange === contentRange && c.region === region && c.zone === sibling && c.status === 201), `${contentRange} in ${sibling}`).toBe(true);
    }
    expect(backend.regionsOf(fileId)).toEqual([region]);
    expect(chunks.filter((c) => c.status !== 0 && c.status !== 201)).toEqual([]);
    const stored = backend.regions[region].file('p1', BUCKET, fileId);
    expect(stored?.complete).toBe(true);
    expect(stored!.bytes().equals(bytes)).toBe(true);
    expect(Buffer.from(await storage.getFileDownload({ bucketId: BUCKET, fileId })).equals(bytes)).toBe(true);

    expect(await metricValue(front.adminPort, 'meridian_upload_chunk_retries_total{result="retried"}')).toBeGreaterThanOrEqual(1);
    // Every chunk request fits under uploads.retryChunkBytes (5 MiB + 64 KiB), so each whole chunk was held: the
    // multipart envelope around a 5 MiB chunk is a few hundred bytes.
    expect(Math.max(...contentLengths)).toBeLessThanOrEqual(CHUNK_SIZE + 64 * 1024);
    expect(Math.max(...contentLengths)).toBeGreaterThan(CHUNK_SIZE);
    // No health check ran after boot: the dead zone was still a candidate all along.
    for (const [name, zone] of Object.entries(backend.zones)) expect(zone.probes, name).toBe(probesBefore[name]);
  }, 30_000);
});

describe('two Meridian instances, with the SDK’s requests alternating between them', () => {
  let backend: AppwriteBackend;
  let fronts: AppwriteFront[] = [];
  let splitter: Awaited<ReturnType<typeof startSplitter>> | undefined;
  beforeAll(async () => {
    backend = await startAppwriteBackend();
    // Both boot while every zone is up (their one health check sees eu-north healthy, and none runs after), so B
    // routes a Stockholm client to eu-north whatever happened to A's first chunk.
    fronts = [
      await startAppwriteFront(backend, { geoDatabase: geo.path, workers: 2, self: { region: 'eu-north', zone: 'az-1' } }),
      await startAppwriteFront(backend, { geoDatabase: geo.path, workers: 2, self: { region: 'eu-north', zone: 'az-3' } }),
    ];
    splitter = await startSplitter(fronts.map((f) => f.port));
  });
  afterAll(async () => {
    await splitter?.close();
    await Promise.all(fronts.map((f) => f.shutdown()));
    await backend?.close();
  });

  it('completes in one region: the instance that never saw the first chunk finds the upload’s region after a 404', async () => {
    // A Stockholm client's nearest region, eu-north, is down while its first chunk goes through instance A: the chunk
    // lands in the next nearest, eu-south, and A pins the upload there. eu-north is back before the later chunks,
    // which alternate B, A, B: A follows its pin, but B knows no pin, routes to eu-north, and gets Appwrite's
    // 404 storage_file_not_found; pin discovery sends the held chunk on to eu-south, which has the upload.
    const { ip } = PLACES.stockholm;
    const [nearest, next]: RegionName[] = ['eu-north', 'eu-south'];
    const size = 3 * CHUNK_SIZE + 512 * 1024;
    const fileId = ID.unique();
    const bytes = patternBytes(size, 777);
    await Promise.all(ZONES.map((zone) => backend.kill(nearest, zone)));
    backend.onChunkHead = async (head) => {
      // The first chunk reached a live region: bring eu-north back before it is answered, so before any later chunk.
      if (head.uploadId === undefined) await Promise.all(ZONES.map((zone) => backend.restart(nearest, zone)));
      backend.onChunkHead = undefined;
    };
    const { storage } = appwriteStorage(`http://127.0.0.1:${splitter!.port}/v1`, 'p1', ip);
    const file = await storage
      .createFile({ bucketId: BUCKET, fileId, file: InputFile.fromBuffer(bytes, `${fileId}.bin`) })
      .finally(() => (backend.onChunkHead = undefined));
    expect(file).toMatchObject({ $id: fileId, sizeOriginal: size, chunksTotal: 4, chunksUploaded: 4 });

    // The first chunk went through A, and B carried at least one later chunk: the case that needs discovery.
    const log = splitter!.log;
    expect(log.map((r) => [r.to, r.uploadId === undefined ? 'first' : 'later'])).toEqual([
      [0, 'first'],
      [1, 'later'],
      [0, 'later'],
      [1, 'later'],
    ]);
    // Every chunk is stored in eu-south, and the region holds the file byte for byte.
    const chunks = backend.chunksOf(fileId);
    expect(chunks.filter((c) => c.status === 201).every((c) => c.region === next)).toBe(true);
    const stored = backend.regions[next].file('p1', BUCKET, fileId);
    expect(stored?.complete).toBe(true);
    expect(stored!.bytes().equals(bytes)).toBe(true);
    // eu-north was asked (by B) and knew nothing; no other region saw the upload.
    const elsewhere = chunks.filter((c) => c.region !== next);
    expect(elsewhere.length, 'chunks B sent to eu-north first').toBeGreaterThanOrEqual(1);
    expect(elsewhere.every((c) => c.region === nearest && c.status === 404 && c.type === 'storage_file_not_found')).toBe(true);
    expect(backend.regions[nearest].file('p1', BUCKET, fileId)).toBeUndefined();
    expect(await metricValue(fronts[1].adminPort, 'meridian_upload_chunk_retries_total{result="discovered"}')).toBeGreaterThanOrEqual(1);
    // A took the first chunk and read the upload's id from its answer: its later chunk went straight to eu-south.
    expect(await metricValue(fronts[0].adminPort, 'meridian_upload_chunk_retries_total{result="discovered"}')).toBe(0);
  }, 30_000);
});

describe('the web SDK’s realtime through Meridian', () => {
  // p2's home is us-west. The SDK's WebSocket carries no X-Forwarded-For, so its location is unknown and, but for the
  // project's rule on `/v1/realtime?project=`, it would stay in this instance's own region, us-east.
  const HOME: RegionName = 'us-west';
  let backend: AppwriteBackend;
  let front: AppwriteFront;
  beforeAll(async () => {
    backend = await startAppwriteBackend();
    front = await startAppwriteFront(backend, { geoDatabase: geo.path, workers: 2, overrides: { routing: { projects: { p2: { home: HOME } } } } });
  });
  afterAll(async () => {
    await front?.shutdown();
    await backend?.close();
  });

  // The web SDK is written for browsers: its Realtime reads the free variable `window` for the heartbeat's
  // setInterval (when the socket opens: without it the open handler throws and subscribe never resolves) and for
  // window.localStorage's session cookie. Node has WebSocket but no window, so this file's worker gets a minimal one.
  const hadWindow = 'window' in globalThis;
  beforeAll(() => {
    if (!hadWindow) Object.assign(globalThis, { window: { setInterval, clearInterval, setTimeout, clearTimeout, localStorage: { getItem: () => null } } });
  });
  afterAll(() => {
    if (!hadWindow) delete (globalThis as { window?: unknown }).window;
  });

  it('subscribes in the project’s home region and receives the event of an upload that completed there', async () => {
    const client = new WebClient().setEndpoint(front.endpoint).setProject('p2');
    const realtime = new Realtime(client);
    const received: RealtimeResponseEvent<{ $id: string }>[] = [];
    const errors: unknown[] = [];
    realtime.onError((error) => errors.push(error));
    await realtime.subscribe(`buckets.${BUCKET}.files`, (event: RealtimeResponseEvent<{ $id: string }>) => received.push(event));
    try {
      // The SDK subscribes once the server said `connected`: wait until its subscription reached the home region.
      const connection = await until(() => backend.regions[HOME].realtime.find((c) => c.subscriptions.size > 0), 'a subscription in us-west');
      expect([...connection.subscriptions.values()]).toEqual([[`buckets.${BUCKET}.files`]]);

      // An upload by the project from anywhere (here Stockholm) completes in its home region, which announces it there.
      const fileId = ID.unique();
      const bytes = patternBytes(1024 * 1024, 99);
      await appwriteStorage(front.endpoint, 'p2', PLACES.stockholm.ip).storage.createFile({ bucketId: BUCKET, fileId, file: InputFile.fromBuffer(bytes, 'a.bin') });
      expect(backend.regionsOf(fileId)).toEqual([HOME]);

      const [event] = await until(() => (received.length > 0 ? received : undefined), 'the realtime event', 5_000);
      expect(event.events).toContain(`buckets.${BUCKET}.files.${fileId}.create`);
      expect(event.channels).toContain(`buckets.${BUCKET}.files`);
      expect(event.payload.$id).toBe(fileId);
      expect(event.subscriptions).toEqual([...connection.subscriptions.keys()]);
      expect(connection.events).toHaveLength(1);
      expect(errors).toEqual([]);
      // The socket went to the home region only: no other region's zones saw a realtime upgrade.
      expect(REGION_NAMES.filter((r) => backend.regions[r].realtime.length > 0)).toEqual([HOME]);
    } finally {
      await realtime.disconnect();
    }
  }, 20_000);
});
