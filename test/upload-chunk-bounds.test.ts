// What holding upload chunks and looking for an upload's region may cost, and what they may not: a held chunk and a
// first chunk's answer stream without waiting (holding keeps references, reading the upload id looks at a prefix),
// a chunk over `uploads.retryChunkBytes` is not held, and pin discovery asks at most `retries.maxAttempts` regions,
// only those the route allows, each within `timeouts.response`.
import { afterEach, describe, expect, test } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { metricValue, send, type Overrides } from './support/harness.ts';
import { acceptsChunk, diesAfter } from './support/chunk-backends.ts';
import { startWorld, type Layout, type World } from './support/zones.ts';
import { PLACES, writeGeoFixture } from './support/appwrite-backend.ts';

const PATH = '/v1/storage/buckets/photos/files';
const MiB = 1024 * 1024;
const SELF = { region: 'home', zone: 'az-1' };
const TWO_ZONES: Layout = {
  home: { location: [50.11, 8.68], zones: { 'az-1': ['home-a'], 'az-3': ['home-b'] } },
  far: { location: [40.71, -74.0], zones: { 'az-1': ['far-a'] } },
};

let world: World | undefined;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await world?.close();
  world = undefined;
  await Promise.all(cleanups.splice(0).map((c) => c()));
});

async function start(layout: Layout, overrides: Overrides = {}, workers = 1): Promise<World> {
  world = await startWorld(layout, SELF, { health: { interval: '1h' }, ...overrides }, workers);
  return world;
}

const sha = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');


/** Appwrite's 404 for an upload the region does not know (or any other type), once the body has been read. */
function notFound(type = 'storage_file_not_found'): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'The requested file could not be found.', code: 404, type, version: '1.7.4' }));
    });
  };
}

function chunkHeaders(length: number, id?: string, extra: Record<string, string> = {}): Record<string, string> {
  const headers: Record<string, string> = {
    'content-type': 'application/octet-stream',
    'content-length': String(length),
    'content-range': `bytes ${id === undefined ? 0 : 5 * MiB}-${(id === undefined ? 0 : 5 * MiB) + length - 1}/${20 * MiB}`,
    'x-appwrite-project': 'shop',
    ...extra,
  };
  if (id !== undefined) headers['x-appwrite-id'] = id;
  return headers;
}

describe('holding delays nothing', () => {
  test('a held chunk reaches the upstream as it arrives, before the client has sent the rest, and is still sent again whole', async () => {
    const w = await start(TWO_ZONES);
    const body = randomBytes(3 * MiB);
    const firstBytes = Promise.withResolvers<void>();
    // home-a signals its first bytes, then dies once the client has sent past 1 MiB: the chunk must be held to survive.
    w.backends['home-a'].handler = (req) => {
      let seen = 0;
      req.on('data', (chunk: Buffer) => {
        if (seen === 0) firstBytes.resolve();
        seen += chunk.length;
        if (seen >= 1 * MiB) req.socket.destroy();
      });
    };
    w.backends['home-b'].handler = acceptsChunk('home-b');
    w.backends['far-a'].handler = acceptsChunk('far-a');
    const req = request({ host: '127.0.0.1', port: w.port, method: 'POST', path: PATH, headers: chunkHeaders(body.length, 'upload-1') });
    const answered = once(req, 'response') as Promise<[IncomingMessage]>;
    // 64 KiB, then nothing more until the upstream has seen bytes: a proxy that read the whole chunk first would
    // never dispatch it, and this would time out.
    req.write(body.subarray(0, 64 * 1024));
    await Promise.race([firstBytes.promise, timeout(5_000, 'the upstream to get the first bytes while the client held the rest')]);
    expect(w.backends['home-b'].requests).toBe(0);
    req.end(body.subarray(64 * 1024));
    const [res] = await answered;
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    expect(res.statusCode).toBe(201);
    expect(JSON.parse(Buffer.concat(chunks).toString())).toMatchObject({ served: 'home-b', sha256: sha(body) });
    expect(await metricValue(w.adminPort, 'meridian_upload_chunk_retries_total{result="retried"}')).toBe(1);
  });

  test('a first chunk’s answer reaches the client as it streams, before its upload id is complete, and the id is still learned', async () => {
    const w = await start(TWO_ZONES);
    // home answers 503 to everything: the first chunk goes on to far (its upload starts where it lands), and a later
    // chunk reaches far only by the pin read from that answer; unpinned, it would stay in home and get the 503.
    for (const name of ['home-a', 'home-b']) {
      w.backends[name].handler = (req, res) => {
        req.resume();
        req.on('end', () => res.writeHead(503).end());
      };
    }
    const clientSaw = Promise.withResolvers<void>();
    w.backends['far-a'].handler = (req, res) => {
      req.resume();
      req.on('end', () => {
        // No Content-Length: the answer streams. The id is cut mid-way; the rest waits for the client to see the start.
        res.writeHead(201, { 'content-type': 'application/json' });
        res.write('{"$id":"split-up');
        void clientSaw.promise.then(() => res.end('load-7","bucketId":"photos"}'));
      });
    };
    const first = request({ host: '127.0.0.1', port: w.port, method: 'POST', path: PATH, headers: chunkHeaders(1024) });
    first.end(randomBytes(1024));
    const [res] = (await once(first, 'response')) as [IncomingMessage];
    expect(res.statusCode).toBe(201);
    const [head] = (await Promise.race([once(res, 'data'), timeout(5_000, 'the start of the answer while the id is incomplete')])) as [Buffer];
    expect(head.toString()).toBe('{"$id":"split-up');
    clientSaw.resolve();
    const rest: Buffer[] = [];
    for await (const chunk of res) rest.push(chunk as Buffer);
    expect(head.toString() + Buffer.concat(rest).toString()).toBe('{"$id":"split-upload-7","bucketId":"photos"}');

    w.backends['far-a'].handler = acceptsChunk('far-a');
    const later = await send(w.port, { method: 'POST', path: PATH, headers: chunkHeaders(1024, 'split-upload-7'), body: randomBytes(1024) });
    expect(later.status).toBe(201);
    expect(JSON.parse(later.body.toString()).served).toBe('far-a');
  });
});

describe('uploads.retryChunkBytes', () => {
  test('a chunk over it streams unheld: no retry, and it is not counted against the process-wide memory', async () => {
    const w = await start(TWO_ZONES, { uploads: { retryChunkBytes: 1 * MiB } });
    w.backends['home-a'].handler = diesAfter(64 * 1024);
    w.backends['home-b'].handler = acceptsChunk('home-b');
    const reply = await send(w.port, { method: 'POST', path: PATH, headers: chunkHeaders(1 * MiB + 1, 'upload-1'), body: randomBytes(1 * MiB + 1) });
    expect(reply.status).toBe(502);
    expect(w.backends['home-b'].requests).toBe(0);
    expect(await metricValue(w.adminPort, 'meridian_upload_chunk_retries_total{result="retried"}')).toBe(0);
    // not_held counts chunks the process-wide memory had no room for; this one was never a candidate.
    expect(await metricValue(w.adminPort, 'meridian_upload_chunk_retries_total{result="not_held"}')).toBe(0);

    // At the bound itself, the chunk is held and sent again.
    const body = randomBytes(1 * MiB);
    const held = await send(w.port, { method: 'POST', path: PATH, headers: chunkHeaders(body.length, 'upload-1'), body });
    expect(held.status).toBe(201);
    expect(JSON.parse(held.body.toString())).toMatchObject({ served: 'home-b', sha256: sha(body) });
  });

  test('0 turns chunk retries off', async () => {
    const w = await start(TWO_ZONES, { uploads: { retryChunkBytes: 0 } });
    w.backends['home-a'].handler = diesAfter(1024);
    w.backends['home-b'].handler = acceptsChunk('home-b');
    const reply = await send(w.port, { method: 'POST', path: PATH, headers: chunkHeaders(4096, 'upload-1'), body: randomBytes(4096) });
    expect(reply.status).toBe(502);
    expect(w.backends['home-b'].requests).toBe(0);
  });
});

describe('pin discovery is bounded', () => {
  // Four regions at growing distance from home (Frankfurt): Paris, London, New York.
  const FOUR: Layout = {
    home: { location: [50.11, 8.68], zones: { 'az-1': ['home-a'] } },
    paris: { location: [48.86, 2.35], zones: { 'az-1': ['paris-a'] } },
    london: { location: [51.51, -0.13], zones: { 'az-1': ['london-a'] } },
    newyork: { location: [40.71, -74.0], zones: { 'az-1': ['newyork-a'] } },
  };

  test('asks the regions nearest first, at most retries.maxAttempts of them, then relays the last 404', async () => {
    const w = await start(FOUR, { retries: { maxAttempts: 3 } });
    // Which backends got a chunk, in the order the requests arrived.
    const order: string[] = [];
    const answer = (name: string, handler: (req: IncomingMessage, res: ServerResponse) => void): void => {
      w.backends[name].handler = (req, res) => {
        order.push(name);
        handler(req, res);
      };
    };
    for (const name of ['home-a', 'paris-a', 'london-a']) answer(name, notFound());
    answer('newyork-a', acceptsChunk('newyork-a'));
    const reply = await send(w.port, { method: 'POST', path: PATH, headers: chunkHeaders(4096, 'upload-far'), body: randomBytes(4096) });
    // The upload lives in the fourth region: three attempts are spent before it, so the client gets the 404.
    expect(reply.status).toBe(404);
    expect(JSON.parse(reply.body.toString()).type).toBe('storage_file_not_found');
    expect(order).toEqual(['home-a', 'paris-a', 'london-a']);
    expect(await metricValue(w.adminPort, 'meridian_upload_chunk_retries_total{result="discovered"}')).toBe(0);

    // Within the bound, the region that has the upload is found, nearest first, and pinned there.
    answer('london-a', acceptsChunk('london-a'));
    order.length = 0;
    const found = await send(w.port, { method: 'POST', path: PATH, headers: chunkHeaders(4096, 'upload-london'), body: randomBytes(4096) });
    expect(found.status).toBe(201);
    expect(JSON.parse(found.body.toString()).served).toBe('london-a');
    expect(order).toEqual(['home-a', 'paris-a', 'london-a']);
    expect(await metricValue(w.adminPort, 'meridian_upload_chunk_retries_total{result="discovered"}')).toBe(1);
    order.length = 0;
    expect((await send(w.port, { method: 'POST', path: PATH, headers: chunkHeaders(4096, 'upload-london'), body: randomBytes(4096) })).status).toBe(201);
    expect(order).toEqual(['london-a']);
  });

  test('a region that does not answer in timeouts.response ends the search with a 504: no further region is asked', async () => {
    const w = await start(FOUR, { timeouts: { response: '300ms' } });
    w.backends['home-a'].handler = notFound();
    // Reads the chunk and never answers.
    w.backends['paris-a'].handler = (req) => req.resume();
    w.backends['london-a'].handler = acceptsChunk('london-a');
    const started = performance.now();
    const reply = await send(w.port, { method: 'POST', path: PATH, headers: chunkHeaders(4096, 'upload-1'), body: randomBytes(4096) });
    const elapsed = performance.now() - started;
    expect(reply.status).toBe(504);
    expect(w.backends['london-a'].requests).toBe(0);
    expect(elapsed).toBeGreaterThanOrEqual(250);
    // One response timeout and the 404 before it, with room for a busy machine; not another region's attempt.
    expect(elapsed).toBeLessThan(5_000);
  });

  test('never leaves a strict fence: the regions outside it are not asked, even when the upload is there', async () => {
    const geo = await writeGeoFixture();
    cleanups.push(() => geo.remove());
    const layout: Layout = {
      home: { location: [50.11, 8.68], zones: { 'az-1': ['home-a'] } },
      paris: { location: [48.86, 2.35], zones: { 'az-1': ['paris-a'] } },
      newyork: { location: [40.71, -74.0], zones: { 'az-1': ['newyork-a'] } },
    };
    const w = await start(layout, {
      geo: { databases: [geo.path], trustedProxies: ['127.0.0.0/8'] },
      routing: { fences: [{ name: 'eu', match: { continent: 'EU' }, regions: ['home', 'paris'], mode: 'strict' }] },
    });
    for (const name of ['home-a', 'paris-a']) w.backends[name].handler = notFound();
    w.backends['newyork-a'].handler = acceptsChunk('newyork-a');
    const fromStockholm = { 'x-forwarded-for': PLACES.stockholm.ip };
    const fenced = await send(w.port, { method: 'POST', path: PATH, headers: chunkHeaders(4096, 'upload-us', fromStockholm), body: randomBytes(4096) });
    expect(fenced.status).toBe(404);
    expect(w.backends['newyork-a'].requests).toBe(0);
    expect(w.backends['home-a'].requests + w.backends['paris-a'].requests).toBe(2);

    // A client outside the fence finds the same upload in New York.
    const fromNewYork = { 'x-forwarded-for': PLACES.newYork.ip };
    const outside = await send(w.port, { method: 'POST', path: PATH, headers: chunkHeaders(4096, 'upload-us', fromNewYork), body: randomBytes(4096) });
    expect(outside.status).toBe(201);
    expect(JSON.parse(outside.body.toString()).served).toBe('newyork-a');
    // Pinned now; the fenced client still never reaches it.
    const again = await send(w.port, { method: 'POST', path: PATH, headers: chunkHeaders(4096, 'upload-us', fromStockholm), body: randomBytes(4096) });
    expect(again.status).toBe(503);
    expect(w.backends['newyork-a'].requests).toBe(1);
  });
});

function timeout(ms: number, what: string): Promise<never> {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms).unref());
}
