// Bodies stream through Meridian in both directions: never buffered whole, backpressure honoured,
// and an abort or a dying upstream on either side is passed on instead of being papered over.
import { afterEach, describe, expect, test } from 'vitest';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { readBody, startProxy, startUpstream, type Handler, type RunningProxy, type Upstream } from './support/harness.ts';

const MiB = 1024 * 1024;
const BIG = 256 * MiB;
const CHUNK = 64 * 1024;
/** Distinct random chunks cycled in order, so a reordered or dropped chunk changes the hash. */
const PATTERN = Array.from({ length: 17 }, () => randomBytes(CHUNK));

// Garbage (socket read buffers) would otherwise blur the memory measurement; collect it before each sample.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let upstream: Upstream | undefined;
let proxy: RunningProxy | undefined;

afterEach(async () => {
  await proxy?.shutdown();
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
});

async function setup(handler: Handler): Promise<RunningProxy> {
  upstream = await startUpstream(handler);
  proxy = await startProxy([upstream.origin]);
  return proxy;
}

function responseOf(req: ReturnType<typeof httpRequest>): Promise<IncomingMessage> {
  return once(req, 'response').then(([res]) => res as IncomingMessage);
}

describe('upload', () => {
  test('a 256 MiB upload streams through to a slow reader: early first bytes, bounded lag', async () => {
    let clientSent = 0;
    let sentWhenUpstreamSawFirstByte = -1;
    let maxAhead = 0;
    const { port } = await setup((req, res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      req.on('data', (chunk: Buffer) => {
        if (bytes === 0) sentWhenUpstreamSawFirstByte = clientSent;
        const before = bytes;
        bytes += chunk.length;
        hash.update(chunk);
        maxAhead = Math.max(maxAhead, clientSent - bytes);
        if (Math.floor(before / MiB) !== Math.floor(bytes / MiB)) {
          // A slow reader: a proxy that kept reading from the client regardless would run ahead of it.
          req.pause();
          setTimeout(() => req.resume(), 1);
        }
      });
      req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') })));
    });

    const req = httpRequest({ host: '127.0.0.1', port, method: 'PUT', path: '/v1/storage/files', agent: false, headers: { 'content-length': BIG } });
    const response = responseOf(req);
    const sent = createHash('sha256');
    for (let i = 0; clientSent < BIG; i++) {
      const chunk = PATTERN[i % PATTERN.length];
      sent.update(chunk);
      clientSent += chunk.length;
      if (!req.write(chunk)) await once(req, 'drain');
    }
    req.end();
    const res = await response;
    const outcome = await readBody(res);

    expect(res.statusCode).toBe(200);
    expect(JSON.parse(outcome.body.toString())).toEqual({ bytes: BIG, sha256: sent.digest('hex') });
    // A buffering proxy would forward nothing until all 256 MiB had arrived.
    expect(sentWhenUpstreamSawFirstByte).toBeGreaterThan(0);
    expect(sentWhenUpstreamSawFirstByte).toBeLessThan(32 * MiB);
    // What the client sent but the upstream had not yet read sits in socket buffers and Meridian: it stays small.
    expect(maxAhead).toBeLessThan(48 * MiB);
  });

  test('a client aborting mid-upload aborts the upstream request before it completes', async () => {
    const upstreamClosed = Promise.withResolvers<{ complete: boolean; bytes: number }>();
    const firstBytes = Promise.withResolvers<void>();
    const { port } = await setup((req) => {
      let bytes = 0;
      req.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        firstBytes.resolve();
      });
      req.on('error', () => {});
      req.on('close', () => upstreamClosed.resolve({ complete: req.complete, bytes }));
    });

    // Chunked, no content-length: the upstream cannot know the end unless the proxy tells it.
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/upload', agent: false });
    req.on('error', () => {});
    req.write(PATTERN[0]);
    await firstBytes.promise;
    req.destroy();

    const seen = await upstreamClosed.promise;
    expect(seen.complete).toBe(false);
    expect(seen.bytes).toBeGreaterThan(0);
  });
});

describe('download', () => {
  test('a 256 MiB download to a slow reader holds the upstream back and keeps memory flat', async () => {
    let written = 0;
    let pauses = 0;
    const firstPause = Promise.withResolvers<void>();
    const { port } = await setup((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG });
      let i = 0;
      const pump = (): void => {
        while (written < BIG) {
          const chunk = PATTERN[i++ % PATTERN.length];
          written += chunk.length;
          if (!res.write(chunk)) {
            pauses++;
            firstPause.resolve();
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });

    gc();
    const rssBefore = process.memoryUsage().rss;
    const req = httpRequest({ host: '127.0.0.1', port, path: '/v1/storage/files/big/download', agent: false });
    req.end();
    const res = await responseOf(req);
    // Nothing is read until the upstream has had to wait for its socket once.
    await firstPause.promise;

    const expected = createHash('sha256');
    for (let i = 0; i < BIG / CHUNK; i++) expected.update(PATTERN[i % PATTERN.length]);
    const hash = createHash('sha256');
    let received = 0;
    let maxAhead = 0;
    let rssPeak = rssBefore;
    res.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      const before = received;
      received += chunk.length;
      maxAhead = Math.max(maxAhead, written - received);
      if (Math.floor(before / MiB) !== Math.floor(received / MiB)) {
        // A slow reader: every MiB it stops for a moment, so a proxy that ignores backpressure would run ahead.
        res.pause();
        setTimeout(() => res.resume(), 1);
      }
      if (Math.floor(before / (8 * MiB)) !== Math.floor(received / (8 * MiB))) {
        gc();
        rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
      }
    });
    await once(res, 'end');

    expect(res.complete).toBe(true);
    expect(received).toBe(BIG);
    expect(hash.digest('hex')).toBe(expected.digest('hex'));
    expect(pauses).toBeGreaterThan(0);
    // What the upstream wrote but the client had not yet read sits in socket buffers and Meridian: it stays small.
    expect(maxAhead).toBeLessThan(48 * MiB);
    expect(rssPeak - rssBefore).toBeLessThan(100 * MiB);
  });

  test('a client aborting mid-download closes the upstream response before it finishes', async () => {
    const upstreamClosed = Promise.withResolvers<boolean>();
    const { port } = await setup((_req, res) => {
      res.writeHead(200, { 'content-length': BIG });
      const pump = (): void => {
        while (res.write(PATTERN[0]));
        res.once('drain', pump);
      };
      pump();
      res.on('close', () => upstreamClosed.resolve(res.writableFinished));
    });

    const req = httpRequest({ host: '127.0.0.1', port, path: '/download', agent: false });
    req.on('error', () => {});
    req.end();
    const res = await responseOf(req);
    await once(res, 'data');
    res.destroy();

    expect(await upstreamClosed.promise).toBe(false);
  });
});

describe('upstream dies mid-response', () => {
  async function partialThenDie(writeHead: (res: ServerResponse) => void): Promise<{ status: number | undefined; complete: boolean; body: string }> {
    const clientSawBytes = Promise.withResolvers<void>();
    const { port } = await setup((req, res) => {
      writeHead(res);
      res.write('partial body ');
      void clientSawBytes.promise.then(() => req.socket.destroy());
    });
    const req = httpRequest({ host: '127.0.0.1', port, path: '/v1/storage/files/x/view', agent: false });
    req.on('error', () => {});
    req.end();
    const res = await responseOf(req);
    res.once('data', () => clientSawBytes.resolve());
    const outcome = readBody(res);
    const { complete, body } = await outcome;
    return { status: res.statusCode, complete, body: body.toString() };
  }

  test('a chunked body cut short reaches the client as an incomplete response', async () => {
    const outcome = await partialThenDie((res) => res.writeHead(200, { 'content-type': 'text/plain' }));
    expect(outcome.status).toBe(200);
    expect(outcome.body).toBe('partial body ');
    expect(outcome.complete).toBe(false);
  });

  test('a body shorter than its content-length reaches the client as an incomplete response', async () => {
    const outcome = await partialThenDie((res) => res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 1000 }));
    expect(outcome.status).toBe(200);
    expect(outcome.body).toBe('partial body ');
    expect(outcome.complete).toBe(false);
  });
});
