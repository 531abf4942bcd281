// Malformed requests, written byte for byte on raw TCP sockets: Meridian answers them itself with a JSON error
// and closes. No upstream sees a malformed head; one whose body turns out malformed is cut short upstream.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { connect } from 'node:net';
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { parseRawResponse, rawExchange, startProxy, startUpstream, until, type RunningProxy, type Upstream } from './support/harness.ts';
import { MERIDIAN_VERSION } from '../src/version.ts';

const MAX_HEADER_BYTES = 4096;

let upstream: Upstream;
let proxy: RunningProxy;
const held: ServerResponse[] = [];

beforeAll(async () => {
  upstream = await startUpstream((req, res) => {
    if (req.url === '/held') {
      held.push(res);
      return;
    }
    res.end('reached the upstream');
  });
  proxy = await startProxy([upstream.origin], { listen: { maxHeaderBytes: MAX_HEADER_BYTES } });
});

afterAll(async () => {
  await proxy?.shutdown();
  await upstream?.close();
});

/** Sends raw bytes and returns the parsed answer plus how many requests the upstream saw meanwhile. */
async function exchange(raw: string): Promise<{ status: number; headers: Record<string, string>; body: Record<string, unknown>; forwarded: number }> {
  const before = upstream.requests;
  const reply = parseRawResponse(await rawExchange(proxy.port, raw));
  return { status: reply.status, headers: reply.headers, body: JSON.parse(reply.body) as Record<string, unknown>, forwarded: upstream.requests - before };
}

function expectRejected(reply: Awaited<ReturnType<typeof exchange>>, status: number, type: string): void {
  expect(reply.status).toBe(status);
  expect(reply.headers['content-type']).toBe('application/json');
  expect(reply.headers['cache-control']).toBe('no-store');
  expect(reply.body).toMatchObject({ code: status, type, version: MERIDIAN_VERSION });
  expect(reply.forwarded).toBe(0);
}

describe('malformed requests', () => {
  test('a well-formed request on the same kind of raw socket does reach the upstream', async () => {
    const before = upstream.requests;
    const reply = parseRawResponse(await rawExchange(proxy.port, 'GET /v1/health HTTP/1.1\r\nHost: cloud.example.com\r\nConnection: close\r\n\r\n'));
    expect(reply.status).toBe(200);
    expect(reply.body).toBe('reached the upstream');
    expect(upstream.requests - before).toBe(1);
  });

  test('a bad request line is a 400', async () => {
    expectRejected(await exchange('GET /v1/health HTTP/1.1 extra\r\nHost: cloud.example.com\r\n\r\n'), 400, 'meridian_bad_request');
    expectRejected(await exchange('NOT A REQUEST\r\n\r\n'), 400, 'meridian_bad_request');
  });

  test('Content-Length together with Transfer-Encoding is a 400 (request smuggling)', async () => {
    const raw = 'POST /v1/account HTTP/1.1\r\nHost: cloud.example.com\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
    expectRejected(await exchange(raw), 400, 'meridian_bad_request');
  });

  test('two different Content-Length headers are a 400', async () => {
    const raw = 'POST /v1/account HTTP/1.1\r\nHost: cloud.example.com\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!';
    expectRejected(await exchange(raw), 400, 'meridian_bad_request');
  });

  test('headers larger than listen.maxHeaderBytes are a 431', async () => {
    const raw = `GET /v1/account HTTP/1.1\r\nHost: cloud.example.com\r\nX-Fill: ${'a'.repeat(MAX_HEADER_BYTES * 2)}\r\n\r\n`;
    expectRejected(await exchange(raw), 431, 'meridian_headers_too_large');
  });

  test('an HTTP/1.1 request without Host is a JSON 400', async () => {
    expectRejected(await exchange('GET /v1/account HTTP/1.1\r\nConnection: close\r\n\r\n'), 400, 'meridian_bad_request');
  });

  test('a malformed chunked body is a 400 and the upstream request it had started is cut short', async () => {
    const upstreamClosed = Promise.withResolvers<boolean>();
    const streaming = await startUpstream((req) => {
      req.on('error', () => {});
      req.on('close', () => upstreamClosed.resolve(req.complete));
    });
    const throughStreaming = await startProxy([streaming.origin]);
    try {
      const raw = 'POST /v1/storage/buckets/b/files HTTP/1.1\r\nHost: cloud.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nnot-a-size\r\n\r\n';
      const reply = parseRawResponse(await rawExchange(throughStreaming.port, raw));
      expect(reply.status).toBe(400);
      expect(JSON.parse(reply.body)).toMatchObject({ code: 400, type: 'meridian_bad_request' });
      expect(await upstreamClosed.promise).toBe(false);
    } finally {
      await throughStreaming.shutdown();
      await streaming.close();
    }
  });

  test('a malformed request pipelined behind one in flight never corrupts the response in flight', async () => {
    const socket = connect(proxy.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => {});
    const closed = once(socket, 'close');
    await once(socket, 'connect');
    const heldBefore = held.length;
    socket.write('GET /held HTTP/1.1\r\nHost: cloud.example.com\r\n\r\nNOT A REQUEST\r\n\r\n');
    await until(() => held.length > heldBefore, 'the first request at the upstream');
    const res = held[held.length - 1];
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 10 });
    res.end('first body');
    await closed;

    // The first response arrives whole and in front; only then the 400 for the garbage behind it.
    const raw = Buffer.concat(chunks).toString('latin1');
    const first = parseRawResponse(Buffer.from(raw, 'latin1'));
    expect(first.status).toBe(200);
    expect(first.body).toBe('first body');
    const rest = raw.slice(raw.indexOf('first body') + 'first body'.length);
    const second = parseRawResponse(Buffer.from(rest, 'latin1'));
    expect(second.status).toBe(400);
    expect(JSON.parse(second.body)).toMatchObject({ code: 400, type: 'meridian_bad_request' });
  });
});
