// A client that sends a request head and part of its body, then goes silent, must not hold an upstream slot:
// after `timeouts.idle` it gets a 408 JSON answer, the upstream attempt is aborted, and its circuit-breaker slot is
// free again. An upstream still computing its answer to a complete request is not a stall.
import { afterEach, expect, test } from 'vitest';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { parseRawResponse, send, startProxy, startUpstream, until, type RunningProxy, type Upstream } from './support/harness.ts';
import { MERIDIAN_VERSION } from '../src/version.ts';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

const IDLE_MS = 300;

/** Local endpoint that reads bodies to the end and answers with their size; the fallback region answers "fallback". */
async function world(overrides: Record<string, Record<string, unknown>> = {}): Promise<{ proxy: RunningProxy; local: Upstream; fallback: Upstream; aborted: () => number }> {
  let aborted = 0;
  const local = await startUpstream((req: IncomingMessage, res) => {
    let bytes = 0;
    req.on('data', (chunk: Buffer) => (bytes += chunk.length));
    req.on('end', () => res.end(`local ${bytes}`));
    req.on('aborted', () => aborted++);
  });
  const fallback = await startUpstream((req, res) => {
    req.resume();
    req.on('end', () => res.end('fallback'));
  });
  cleanup.push(() => local.close(), () => fallback.close());
  const proxy = await startProxy([local.origin, fallback.origin], {
    timeouts: { idle: `${IDLE_MS}ms` },
    circuitBreaker: { maxRequests: 4 },
    // One failure would eject: a stall counted against the endpoint would move the next request to the fallback.
    outlierDetection: { consecutiveFailures: 1 },
    ...overrides,
  });
  cleanup.push(() => proxy.shutdown());
  return { proxy, local, fallback, aborted: () => aborted };
}

/** Send a head announcing `length` bytes and only the first `sent` of them, then go silent; collect the answer. */
async function stall(port: number, length: number, sent: number, method = 'POST'): Promise<{ socket: Socket; received: () => Buffer; closed: Promise<unknown> }> {
  const socket = connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {});
  cleanup.push(() => void socket.destroy());
  await once(socket, 'connect');
  socket.write(`${method} /v1/storage/buckets/b/files HTTP/1.1\r\nHost: appwrite.test\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\n\r\n`);
  if (sent > 0) socket.write(Buffer.alloc(sent, 0x61));
  return { socket, received: () => Buffer.concat(chunks), closed: once(socket, 'close') };
}

test('a body that stalls mid-way gets a 408 JSON answer and the connection closes', async () => {
  const { proxy, local, aborted } = await world();
  const client = await stall(proxy.port, 100_000, 1_000);
  await until(() => local.requests === 1, 'the stalled upload to reach the upstream');
  await client.closed;
  const answer = parseRawResponse(client.received());
  expect(answer.status).toBe(408);
  expect(answer.headers['content-type']).toBe('application/json');
  expect(answer.headers['connection']).toBe('close');
  expect(JSON.parse(answer.body)).toMatchObject({ code: 408, type: 'meridian_request_timeout', version: MERIDIAN_VERSION });
  await until(() => aborted() === 1, 'the upstream attempt to be aborted');
});

test('stalled bodies free their circuit-breaker slots and never count against the endpoint', async () => {
  const { proxy, local, fallback } = await world();
  // As many as the endpoint's concurrency limit: before the fix these held every slot forever.
  const clients = await Promise.all([1, 2, 3, 4].map(() => stall(proxy.port, 50_000, 500)));
  await Promise.all(clients.map((c) => c.closed));
  for (const c of clients) expect(parseRawResponse(c.received()).status).toBe(408);
  const reply = await send(proxy.port, { method: 'POST', path: '/v1/functions', body: 'x'.repeat(10) });
  expect(reply.status).toBe(200);
  // Served by the local endpoint: not ejected, and not short of slots.
  expect(reply.body.toString()).toBe('local 10');
  expect(fallback.requests).toBe(0);
  expect(local.requests).toBeGreaterThanOrEqual(2);
});

test('a client that stalls before sending any body byte is not retried elsewhere', async () => {
  const { proxy, fallback } = await world();
  const client = await stall(proxy.port, 10_000, 0);
  await client.closed;
  expect(parseRawResponse(client.received()).status).toBe(408);
  expect(fallback.requests).toBe(0);
});

test.each([
  ['before any body byte', 0],
  ['mid-way', 500],
])('a PUT whose body is held for retries, stalled %s, is not replayed elsewhere', async (_when, sent) => {
  // Held bodies (retries.bufferBodyBytes) may be replayed after an upstream's failure, never after the client's.
  const { proxy, local, fallback } = await world({ retries: { bufferBodyBytes: 4096 } });
  const client = await stall(proxy.port, 2_000, sent, 'PUT');
  await client.closed;
  expect(parseRawResponse(client.received()).status).toBe(408);
  expect(local.requests).toBeLessThanOrEqual(1);
  expect(fallback.requests).toBe(0);
});

test('an upstream computing its answer after the whole body arrived is bounded by timeouts.response, not idle', async () => {
  let answer: (() => void) | undefined;
  const slow = await startUpstream((req, res) => {
    req.resume();
    req.on('end', () => (answer = () => res.end('computed')));
  });
  cleanup.push(() => slow.close());
  const proxy = await startProxy([slow.origin], { timeouts: { idle: `${IDLE_MS}ms`, response: '10s' } });
  cleanup.push(() => proxy.shutdown());
  const reply = send(proxy.port, { method: 'POST', path: '/v1/functions/f/executions', body: 'payload' });
  await until(() => answer, 'the whole body to reach the upstream');
  // Three idle periods pass on the client's socket while the upstream thinks.
  const since = performance.now();
  await until(() => performance.now() - since > 3 * IDLE_MS, 'three idle periods', 5_000, 50);
  answer!();
  const done = await reply;
  expect(done.status).toBe(200);
  expect(done.body.toString()).toBe('computed');
});
