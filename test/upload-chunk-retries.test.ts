// Upload chunks that fail mid-stream are sent again: a chunk (Content-Range) up to `uploads.retryChunkBytes` is held
// while it streams, and a reset, a refused connect or a 502/503/504 sends it whole to the next endpoint; a later chunk
// only within its region, where the upload's other chunks are, a first chunk to the next candidate (its upload starts
// wherever it lands). Over the process's `uploads.retryBufferBytes`, a chunk streams unheld and the metric counts it.
import { afterEach, describe, expect, test } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { metricValue, send, until, type Overrides } from './support/harness.ts';
import { acceptsChunk, diesAfter } from './support/chunk-backends.ts';
import { startWorld, type World } from './support/zones.ts';

const PATH = '/v1/storage/buckets/photos/files';
const MiB = 1024 * 1024;
const LAYOUT = {
  home: { location: [50.11, 8.68] as [number, number], zones: { 'az-1': ['home-a'], 'az-3': ['home-b'] } },
  far: { location: [40.71, -74.0] as [number, number], zones: { 'az-1': ['far-a'] } },
};
const SELF = { region: 'home', zone: 'az-1' };

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

async function start(overrides: Overrides = {}, workers = 1): Promise<World> {
  world = await startWorld(LAYOUT, SELF, { health: { interval: '1h' }, ...overrides }, workers);
  return world;
}


function chunkRequest(body: Buffer, id?: string) {
  const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'content-range': `bytes 0-${body.length - 1}/${body.length * 4}`, 'x-appwrite-project': 'shop' };
  if (id !== undefined) headers['x-appwrite-id'] = id;
  return { method: 'POST', path: PATH, headers, body };
}



describe('a chunk whose upstream dies while it streams', () => {
  test.each([1, 2])('is sent whole to the sibling zone of its region, and the client never sees the failure (%i data-plane threads)', async (workers) => {
    const w = await start({}, workers);
    w.backends['home-a'].handler = diesAfter(1 * MiB);
    w.backends['home-b'].handler = acceptsChunk('home-b');
    w.backends['far-a'].handler = acceptsChunk('far-a');
    const body = randomBytes(5 * MiB);
    const reply = await send(w.port, chunkRequest(body, 'upload-1'));
    expect(reply.status).toBe(201);
    const file = JSON.parse(reply.body.toString());
    expect(file.served).toBe('home-b');
    expect(file.sha256).toBe(createHash('sha256').update(body).digest('hex'));
    expect(w.backends['far-a'].requests).toBe(0);
    expect(await metricValue(w.meridian.adminAddress.port, 'meridian_upload_chunk_retries_total{result="retried"}')).toBe(1);
  });

  test('a later chunk never goes to another region: with both zones of its region failing, the client gets the error', async () => {
    const w = await start();
    w.backends['home-a'].handler = diesAfter(64 * 1024);
    w.backends['home-b'].handler = (req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(503).end());
    };
    w.backends['far-a'].handler = acceptsChunk('far-a');
    const reply = await send(w.port, chunkRequest(randomBytes(2 * MiB), 'upload-1'));
    expect(reply.status).toBe(503);
    expect(w.backends['far-a'].requests).toBe(0);
    expect(w.backends['home-a'].requests + w.backends['home-b'].requests).toBe(2);
  });

  test('an unpinned later chunk whose region refuses every connect goes on to the next region: nothing reached the first', async () => {
    const w = await start();
    await w.backends['home-a'].kill();
    await w.backends['home-b'].kill();
    w.backends['far-a'].handler = acceptsChunk('far-a');
    const body = randomBytes(2 * MiB);
    const reply = await send(w.port, chunkRequest(body, 'upload-1'));
    expect(reply.status).toBe(201);
    expect(JSON.parse(reply.body.toString())).toMatchObject({ served: 'far-a', sha256: createHash('sha256').update(body).digest('hex') });
  });

  test('a pinned later chunk whose region refuses every connect stays there: its upload lives in that region', async () => {
    const w = await start();
    w.backends['home-a'].handler = acceptsChunk('home-a');
    w.backends['far-a'].handler = acceptsChunk('far-a');
    expect((await send(w.port, chunkRequest(randomBytes(64 * 1024)))).status).toBe(201);
    await w.backends['home-a'].kill();
    await w.backends['home-b'].kill();
    const reply = await send(w.port, chunkRequest(randomBytes(2 * MiB), 'upload-1'));
    expect(reply.status).toBe(502);
    expect(w.backends['far-a'].requests).toBe(0);
  });

  test('a first chunk whose region fails goes on to the next region: its upload has no chunk anywhere yet', async () => {
    const w = await start();
    w.backends['home-a'].handler = diesAfter(64 * 1024);
    await w.backends['home-b'].kill();
    w.backends['far-a'].handler = acceptsChunk('far-a');
    const body = randomBytes(2 * MiB);
    const reply = await send(w.port, chunkRequest(body));
    expect(reply.status).toBe(201);
    expect(JSON.parse(reply.body.toString())).toMatchObject({ served: 'far-a', sha256: createHash('sha256').update(body).digest('hex') });
  });

  test('over the process-wide chunk memory, streams unheld: no retry, and the metric counts it', async () => {
    const w = await start({ uploads: { retryBufferBytes: 1 * MiB } });
    w.backends['home-a'].handler = diesAfter(64 * 1024);
    w.backends['home-b'].handler = acceptsChunk('home-b');
    w.backends['far-a'].handler = acceptsChunk('far-a');
    const reply = await send(w.port, chunkRequest(randomBytes(2 * MiB), 'upload-1'));
    expect(reply.status).toBe(502);
    expect(w.backends['home-b'].requests).toBe(0);
    expect(await metricValue(w.meridian.adminAddress.port, 'meridian_upload_chunk_retries_total{result="not_held"}')).toBe(1);
    expect(await metricValue(w.meridian.adminAddress.port, 'meridian_upload_chunk_retries_total{result="retried"}')).toBe(0);
  });

  test('gives its held bytes back when it ends, so the next chunks are held again', async () => {
    const w = await start({ uploads: { retryBufferBytes: 3 * MiB } });
    w.backends['home-a'].handler = acceptsChunk('home-a');
    for (let i = 0; i < 4; i++) expect((await send(w.port, chunkRequest(randomBytes(2 * MiB), 'upload-1'))).status).toBe(201);
    await until(async () => (await metricValue(w.meridian.adminAddress.port, 'meridian_upload_chunk_retries_total{result="not_held"}')) === 0, 'the metric');
    expect(w.meridian.runtime.traffic.heldBytes).toBe(0);
  });
});

describe('pin discovery: a later chunk of an upload this instance never pinned', () => {
  const DISCOVERY_LAYOUT = {
    home: { location: [50.11, 8.68] as [number, number], zones: { 'az-1': ['home-a'] } },
    near: { location: [48.86, 2.35] as [number, number], zones: { 'az-1': ['near-a'] } },
    far: { location: [40.71, -74.0] as [number, number], zones: { 'az-1': ['far-a'] } },
  };
  const notFound = (type: string) => (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'The requested file could not be found.', code: 404, type, version: '1.7.4' }));
    });
  };

  async function discoveryWorld(): Promise<World> {
    world = await startWorld(DISCOVERY_LAYOUT, SELF, { health: { interval: '1h' } });
    return world;
  }

  test('goes on to the next region after storage_file_not_found, is pinned where it is accepted, and the next chunk goes straight there', async () => {
    const w = await discoveryWorld();
    w.backends['home-a'].handler = notFound('storage_file_not_found');
    w.backends['near-a'].handler = notFound('storage_file_not_found');
    w.backends['far-a'].handler = acceptsChunk('far-a');
    const body = randomBytes(1 * MiB);
    const reply = await send(w.port, chunkRequest(body, 'upload-elsewhere'));
    expect(reply.status).toBe(201);
    expect(JSON.parse(reply.body.toString())).toMatchObject({ served: 'far-a', sha256: createHash('sha256').update(body).digest('hex') });
    expect(await metricValue(w.meridian.adminAddress.port, 'meridian_upload_chunk_retries_total{result="discovered"}')).toBe(1);
    const before = [w.backends['home-a'].requests, w.backends['near-a'].requests];
    expect((await send(w.port, chunkRequest(randomBytes(1024), 'upload-elsewhere'))).status).toBe(201);
    expect([w.backends['home-a'].requests, w.backends['near-a'].requests]).toEqual(before);
    expect(w.backends['far-a'].requests).toBe(2);
  });

  test('relays any other 404 as it is, and a 404 from every region it may ask, without going further', async () => {
    const w = await discoveryWorld();
    w.backends['home-a'].handler = notFound('storage_bucket_not_found');
    w.backends['near-a'].handler = acceptsChunk('near-a');
    const other = await send(w.port, chunkRequest(randomBytes(1024), 'upload-1'));
    expect(other.status).toBe(404);
    expect(JSON.parse(other.body.toString()).type).toBe('storage_bucket_not_found');
    expect(w.backends['near-a'].requests).toBe(0);

    for (const name of ['home-a', 'near-a', 'far-a']) w.backends[name].handler = notFound('storage_file_not_found');
    const nowhere = await send(w.port, chunkRequest(randomBytes(1024), 'upload-2'));
    expect(nowhere.status).toBe(404);
    expect(JSON.parse(nowhere.body.toString()).type).toBe('storage_file_not_found');
    expect(await metricValue(w.meridian.adminAddress.port, 'meridian_upload_chunk_retries_total{result="discovered"}')).toBe(0);
  });

  test('a first chunk, or a chunk whose upload is pinned here, is never sent looking elsewhere', async () => {
    const w = await discoveryWorld();
    // Pinned to home by an accepted chunk; home then loses the upload (its storage was reset, say).
    w.backends['home-a'].handler = acceptsChunk('home-a');
    expect((await send(w.port, chunkRequest(randomBytes(1024), 'upload-3'))).status).toBe(201);
    w.backends['home-a'].handler = notFound('storage_file_not_found');
    w.backends['near-a'].handler = acceptsChunk('near-a');
    expect((await send(w.port, chunkRequest(randomBytes(1024), 'upload-3'))).status).toBe(404);
    expect((await send(w.port, chunkRequest(randomBytes(1024)))).status).toBe(404);
    expect(w.backends['near-a'].requests).toBe(0);
  });
});
