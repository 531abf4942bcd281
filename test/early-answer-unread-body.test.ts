// An answer sent while the client is still sending its body (Meridian's own 502/503, or an upstream's early 413) must
// not leave the connection alive with part of the body unread: the next request on it would hang behind those bytes.
// The answer says `Connection: close` and the connection ends once it is flushed.
import { afterEach, expect, test } from 'vitest';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { deadPort, parseRawResponse, send, startProxy, startUpstream, until, type RunningProxy } from './support/harness.ts';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

const DECLARED = 4 * 1024 * 1024;

/** Starts an upload of DECLARED bytes, sends only the first 256 KiB, and waits for whatever the proxy does. */
async function partialUpload(proxy: RunningProxy, requestLine = 'PUT /v1/storage/buckets/b/files/f HTTP/1.1'): Promise<{ received: () => Buffer; closed: Promise<unknown>; socket: Socket }> {
  const socket = connect(proxy.port, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {});
  cleanup.push(() => void socket.destroy());
  await once(socket, 'connect');
  socket.write(`${requestLine}\r\nHost: appwrite.test\r\nContent-Length: ${DECLARED}\r\n\r\n`);
  socket.write(Buffer.alloc(256 * 1024, 0x62));
  return { socket, received: () => Buffer.concat(chunks), closed: once(socket, 'close') };
}

test('a 502 answered before the body arrived closes the connection instead of keeping it alive', async () => {
  const proxy = await startProxy([`http://127.0.0.1:${await deadPort()}`, `http://127.0.0.1:${await deadPort()}`]);
  cleanup.push(() => proxy.shutdown());
  const client = await partialUpload(proxy);
  await until(() => client.received().includes('\r\n\r\n'), 'the answer head');
  const answer = parseRawResponse(client.received());
  expect(answer.status).toBe(502);
  expect(answer.headers['connection']).toBe('close');
  // Ended by the proxy, well within the test's own deadline, though the client never finished its body.
  await client.closed;
  expect(JSON.parse(answer.body)).toMatchObject({ code: 502 });
});

test("an upstream's early 413 is relayed with Connection: close and the connection ends", async () => {
  const strict = await startUpstream((_req, res) => {
    // Rejects on the head alone, as Appwrite does for a file over its size limit.
    res.writeHead(413, { 'content-type': 'application/json' });
    res.end('{"message":"File size not allowed","code":413,"type":"storage_invalid_file_size","version":"1.9.0"}');
  });
  cleanup.push(() => strict.close());
  const proxy = await startProxy([strict.origin]);
  cleanup.push(() => proxy.shutdown());
  const client = await partialUpload(proxy);
  await until(() => client.received().includes('\r\n\r\n'), 'the answer head');
  const answer = parseRawResponse(client.received());
  expect(answer.status).toBe(413);
  expect(answer.headers['connection']).toBe('close');
  await client.closed;
});

test('OPTIONS * answered while its body is still arriving closes the connection', async () => {
  const upstream = await startUpstream((_req, res) => res.end('never'));
  cleanup.push(() => upstream.close());
  const proxy = await startProxy([upstream.origin]);
  cleanup.push(() => proxy.shutdown());
  const client = await partialUpload(proxy, 'OPTIONS * HTTP/1.1');
  await until(() => client.received().includes('\r\n\r\n'), 'the answer head');
  const answer = parseRawResponse(client.received());
  expect(answer.status).toBe(200);
  expect(answer.headers['connection']).toBe('close');
  await client.closed;
  expect(upstream.requests).toBe(0);
});

test("a rate limit's 429 answered while the body is still arriving closes the connection", async () => {
  const upstream = await startUpstream((req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  cleanup.push(() => upstream.close());
  const proxy = await startProxy([upstream.origin], { rateLimits: { rules: [{ name: 'api', rate: 0.001, burst: 1 }] } });
  cleanup.push(() => proxy.shutdown());
  // The one request the bucket allows.
  expect((await send(proxy.port)).status).toBe(200);
  const client = await partialUpload(proxy);
  await until(() => client.received().includes('\r\n\r\n'), 'the answer head');
  const answer = parseRawResponse(client.received());
  expect(answer.status).toBe(429);
  expect(answer.headers['connection']).toBe('close');
  await client.closed;
});
