// Held bodies (DESIGN.md §4): a small PUT or DELETE body is kept in memory, so after a reset or a 503 the request
// is replayed on the next endpoint byte for byte. A POST may have been acted on and is never replayed; a body over
// `retries.bufferBodyBytes` (or of unknown length) was streamed, so there is nothing left to replay.
import { afterEach, describe, expect, test } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { json, send, startProxy, startUpstream, type RunningProxy, type Upstream } from './support/harness.ts';

/** Small enough that tests stay quick, large enough that a truncated replay would show. */
const LIMIT = 4096;

/** What the first endpoint does once it has read the whole request: hang up, or answer 503. */
type Failure = 'reset' | '503';

interface Received {
  readonly method: string;
  readonly contentLength: string | undefined;
  readonly body: Buffer;
}

interface Setup {
  readonly proxy: RunningProxy;
  /** The local endpoint, which fails every request after reading it. */
  readonly failing: Upstream;
  /** The next candidate, which records what reached it and answers 200. */
  readonly recording: Upstream;
  readonly received: Received[];
}

const running: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((close) => close()));
});

function readAll(req: IncomingMessage, then: (body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => then(Buffer.concat(chunks)));
}

/** A fresh pair of endpoints and Meridian for each test, so passive ejection from an earlier test cannot skip the failing one. */
async function setup(failure: Failure): Promise<Setup> {
  const received: Received[] = [];
  const failing = await startUpstream((req: IncomingMessage, res: ServerResponse) =>
    // The whole body arrived first: the upstream could have acted on it, which is what makes a replay a decision.
    readAll(req, () => (failure === 'reset' ? req.socket.destroy() : res.writeHead(503, { 'content-type': 'text/plain' }).end('busy'))),
  );
  const recording = await startUpstream((req, res) =>
    readAll(req, (body) => {
      received.push({ method: req.method ?? '', contentLength: req.headers['content-length'], body });
      res.end('stored');
    }),
  );
  const proxy = await startProxy([failing.origin, recording.origin], { retries: { bufferBodyBytes: LIMIT } });
  running.push(() => proxy.shutdown(), () => failing.close(), () => recording.close());
  return { proxy, failing, recording, received };
}

const sha = (body: Buffer): string => createHash('sha256').update(body).digest('hex');
const path = '/v1/databases/main/collections/posts/documents/doc-1';

describe('held bodies are replayed on the next endpoint', () => {
  test.each([
    ['PUT', 'reset'],
    ['PUT', '503'],
    ['DELETE', 'reset'],
    ['DELETE', '503'],
  ] as const)('a %s after a %s, with the identical body', async (method, failure) => {
    const { proxy, failing, received } = await setup(failure);
    // Random bytes, so a replay of the wrong bytes or of a prefix cannot pass by accident.
    const body = randomBytes(LIMIT);
    // Explicit: node's client frames no body of a DELETE by itself.
    const headers = { 'content-type': 'application/octet-stream', 'content-length': String(body.length) };
    const reply = await send(proxy.port, { method, path, headers, body });
    expect(`${reply.status} ${reply.body.toString()}`).toBe('200 stored');
    expect(failing.requests).toBe(1);
    expect(received).toHaveLength(1);
    expect(received[0].method).toBe(method);
    expect(received[0].contentLength).toBe(String(LIMIT));
    expect(received[0].body.length).toBe(LIMIT);
    expect(sha(received[0].body)).toBe(sha(body));
  });
});

describe('bodies that are not replayed', () => {
  test('a POST after a reset gets 502: the upstream may have acted on it', async () => {
    const { proxy, failing, recording } = await setup('reset');
    const reply = await send(proxy.port, { method: 'POST', path, headers: { 'content-type': 'application/json' }, body: '{"title":"hello"}' });
    expect(reply.status).toBe(502);
    expect(json(reply)).toMatchObject({ code: 502, type: 'meridian_upstream_error' });
    expect(failing.requests).toBe(1);
    expect(recording.requests).toBe(0);
  });

  test('a POST after a 503 gets that 503', async () => {
    const { proxy, failing, recording } = await setup('503');
    const reply = await send(proxy.port, { method: 'POST', path, headers: { 'content-type': 'application/json' }, body: '{"title":"hello"}' });
    expect(`${reply.status} ${reply.body.toString()}`).toBe('503 busy');
    expect(failing.requests).toBe(1);
    expect(recording.requests).toBe(0);
  });

  test.each([
    ['one byte over retries.bufferBodyBytes', { 'content-length': String(LIMIT + 1) }, LIMIT + 1],
    // Without Content-Length the size is unknown until the end, so the body is streamed, however small.
    ['chunked, of unknown length', { 'transfer-encoding': 'chunked' }, 16],
  ])('a PUT %s is streamed, so a reset gets 502', async (_, headers, size) => {
    const { proxy, failing, recording } = await setup('reset');
    const reply = await send(proxy.port, { method: 'PUT', path, headers: { 'content-type': 'application/octet-stream', ...headers }, body: randomBytes(size) });
    expect(reply.status).toBe(502);
    expect(json(reply)).toMatchObject({ code: 502, type: 'meridian_upstream_error' });
    expect(failing.requests).toBe(1);
    expect(recording.requests).toBe(0);
  });
});
