// Smuggling through a WebSocket upgrade: only a verified 101 turns a connection into a tunnel. Until then nothing the
// client sends behind its handshake reaches the upstream; any other answer is relayed as one response and the
// connection closes; and an upgrade request that is not a valid handshake never leaves Meridian.
import { afterEach, describe, expect, test } from 'vitest';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import { parseRawResponse, rawExchange, startProxy, until, type Overrides, type RunningProxy } from './support/harness.ts';
import { startRecordingUpstream, startWebSocketUpstream, type RecordingUpstream, type ScriptedAnswer, type WebSocketUpstream } from './support/websocket-upstream.ts';

const REALTIME = '/v1/realtime?project=demo&channels[]=files';
/** The key and accept of RFC 6455 §1.3, so the expected accept does not come from the code under test. */
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';
const SWITCH = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${ACCEPT}\r\n\r\n`;
const SMUGGLED = 'GET /admin HTTP/1.1\r\nHost: internal\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n';

let proxy: RunningProxy | undefined;
let upstreams: (RecordingUpstream | WebSocketUpstream)[] = [];
let sockets: (Socket | WebSocket)[] = [];

afterEach(async () => {
  for (const socket of sockets) socket instanceof WebSocket ? socket.terminate() : socket.destroy();
  await proxy?.shutdown();
  await Promise.all(upstreams.map((u) => u.close()));
  proxy = undefined;
  upstreams = [];
  sockets = [];
});

async function recording(answer: ScriptedAnswer): Promise<RecordingUpstream> {
  const started = await startRecordingUpstream(answer);
  upstreams.push(started);
  return started;
}

async function meridian(origin: string, overrides: Overrides = {}): Promise<number> {
  proxy = await startProxy([origin], overrides);
  return proxy.port;
}

function handshake(lines: readonly string[] = []): string {
  const base = [`GET ${REALTIME} HTTP/1.1`, 'Host: cloud.example.com', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Key: ${KEY}`, 'Sec-WebSocket-Version: 13'];
  return `${[...base, ...lines].join('\r\n')}\r\n\r\n`;
}

/** `allowHalfOpen` keeps the client writing after Meridian's FIN, as a hostile one would. */
async function rawClient(port: number, allowHalfOpen = false): Promise<{ socket: Socket; received: () => Buffer }> {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen });
  sockets.push(socket);
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(socket, 'connect');
  return { socket, received: () => Buffer.concat(chunks) };
}

/** A client-to-server binary frame, masked as clients must, built by hand so it can ride behind the handshake. */
function maskedFrame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const mask = randomBytes(4);
  return Buffer.concat([Buffer.from([0x82, 0x80 | payload.length]), mask, Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]))]);
}

/** Waits until Meridian has dropped its upstream connection, so nothing more can still arrive there. */
async function upstreamClosed(up: RecordingUpstream): Promise<string> {
  await until(() => up.sockets.length > 0 && up.open() === 0, 'Meridian to close its upstream connection');
  return up.received().toString('latin1');
}

describe('an answer other than 101 is relayed as one response, then the connection closes', () => {
  const refusals = [
    ['200', 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok', 'ok'],
    ['400', 'HTTP/1.1 400 Bad Request\r\nconnection: keep-alive\r\nkeep-alive: timeout=60\r\ncontent-length: 11\r\n\r\nbad request', 'bad request'],
    ['426', 'HTTP/1.1 426 Upgrade Required\r\nsec-websocket-version: 13\r\ncontent-length: 0\r\n\r\n', ''],
  ] as const;

  test.each(refusals)('a request pipelined behind the upgrade never reaches an upstream that answered %s', async (status, answer, body) => {
    // The upstream keeps its connection open after answering, as a keep-alive server would.
    const up = await recording(() => answer);
    const port = await meridian(up.origin);
    const raw = await rawExchange(port, handshake() + SMUGGLED);
    const res = parseRawResponse(raw);
    expect(res.status).toBe(Number(status));
    expect(res.body).toBe(body);
    expect(res.headers.connection).toBe('close');
    expect(res.headers['keep-alive']).toBeUndefined();
    // One response and then EOF (rawExchange returns at close): nothing answered the smuggled request.
    expect(raw.toString('latin1').match(/HTTP\/1\.1 /g)).toHaveLength(1);
    const seen = await upstreamClosed(up);
    expect(seen).toContain(`GET ${REALTIME} HTTP/1.1\r\n`);
    expect(seen).not.toContain('/admin');
    expect(seen.endsWith('\r\n\r\n')).toBe(true);
  });

  test.each(refusals)('a request sent after the %s answer arrived never reaches the upstream', async (status, answer) => {
    const up = await recording(() => answer);
    const client = await rawClient(await meridian(up.origin), true);
    const closed = once(client.socket, 'close');
    client.socket.write(handshake());
    await until(() => client.received().includes('\r\n\r\n'), 'the answer');
    expect(parseRawResponse(client.received()).status).toBe(Number(status));
    client.socket.end(SMUGGLED);
    await closed;
    expect(await upstreamClosed(up)).not.toContain('/admin');
  });

  test('an answer without a length is relayed until the upstream closes', async () => {
    const up = await recording(() => 'HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n\r\nno tunnel for you');
    const port = await meridian(up.origin);
    const exchange = rawExchange(port, handshake() + SMUGGLED);
    await until(() => up.sockets.length === 1, 'the upgrade request upstream');
    up.sockets[0].end();
    const res = parseRawResponse(await exchange);
    expect(res.status).toBe(403);
    expect(res.body).toBe('no tunnel for you');
    expect(await upstreamClosed(up)).not.toContain('/admin');
  });

  test('bytes past the announced length are not relayed: the upstream cannot add a second response', async () => {
    const up = await recording(() => 'HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n\r\nbadHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged');
    const raw = await rawExchange(await meridian(up.origin), handshake());
    expect(parseRawResponse(raw).body).toBe('bad');
    expect(raw.toString('latin1')).not.toContain('forged');
  });

  test('an informational answer before the final one is skipped', async () => {
    const up = await recording(() => 'HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\nnope');
    const res = parseRawResponse(await rawExchange(await meridian(up.origin), handshake()));
    expect(res.status).toBe(404);
    expect(res.body).toBe('nope');
  });
});

describe('an answer that is not a valid 101 or HTTP response is a 502, and nothing follows it upstream', () => {
  test.each([
    ['a 101 with a wrong accept', SWITCH.replace(ACCEPT, 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=')],
    ['a 101 without an accept', SWITCH.replace(`Sec-WebSocket-Accept: ${ACCEPT}\r\n`, '')],
    ['a 101 to another protocol', SWITCH.replace('Upgrade: websocket', 'Upgrade: h2c')],
    ['a malformed head', 'HTTP/1.1 200 OK\r\nthis is not a header\r\n\r\n'],
    ['a head with two framings', 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\nok'],
    ['a head larger than listen.maxHeaderBytes', `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(5000)}\r\ncontent-length: 0\r\n\r\n`],
  ])('%s', async (_name, answer) => {
    const up = await recording(() => answer);
    const port = await meridian(up.origin, { listen: { maxHeaderBytes: 4096 } });
    const raw = await rawExchange(port, handshake() + SMUGGLED);
    const res = parseRawResponse(raw);
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toBe('application/json');
    expect(JSON.parse(res.body)).toMatchObject({ code: 502, type: 'meridian_upstream_error' });
    expect(raw.toString('latin1')).not.toContain('101 Switching');
    expect(await upstreamClosed(up)).not.toContain('/admin');
  });

  test('an upstream that closes before answering', async () => {
    const up = await recording(() => null);
    const port = await meridian(up.origin);
    const exchange = rawExchange(port, handshake());
    await until(() => up.sockets.length === 1, 'the upgrade request upstream');
    up.sockets[0].destroy();
    expect(parseRawResponse(await exchange).status).toBe(502);
  });
});

describe('an upgrade request that is not a valid WebSocket handshake gets 400 and never reaches an upstream', () => {
  const replace = (name: string, line: string | null) => (text: string) =>
    text.replace(new RegExp(`${name}: [^\\r]*\\r\\n`, 'i'), line === null ? '' : `${line}\r\n`);
  test.each([
    ['no Sec-WebSocket-Key', replace('Sec-WebSocket-Key', null)],
    ['a key of 15 bytes', replace('Sec-WebSocket-Key', `Sec-WebSocket-Key: ${Buffer.alloc(15, 7).toString('base64')}`)],
    ['a key that is not base64', replace('Sec-WebSocket-Key', 'Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==')],
    ['two keys', (text: string) => text.replace('\r\n\r\n', `\r\nSec-WebSocket-Key: ${KEY}\r\n\r\n`)],
    ['Sec-WebSocket-Version 8', replace('Sec-WebSocket-Version', 'Sec-WebSocket-Version: 8')],
    ['no Sec-WebSocket-Version', replace('Sec-WebSocket-Version', null)],
    ['POST', (text: string) => text.replace(/^GET/, 'POST')],
    ['HTTP/1.0', (text: string) => text.replace(' HTTP/1.1\r\n', ' HTTP/1.0\r\n')],
    ['Upgrade: h2c', replace('Upgrade', 'Upgrade: h2c')],
    ['no Host', replace('Host', null)],
    ['a Content-Length body, with a request inside it', (text: string) => text.replace('\r\n\r\n', `\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`)],
    ['a chunked body', (text: string) => text.replace('\r\n\r\n', '\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')],
  ])('%s', async (_name, edit) => {
    const up = await recording(() => SWITCH);
    const port = await meridian(up.origin);
    const res = parseRawResponse(await rawExchange(port, edit(handshake())));
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['sec-websocket-version']).toBe('13');
    expect(JSON.parse(res.body)).toMatchObject({ code: 400, type: 'meridian_bad_request' });
    expect(up.sockets).toHaveLength(0);
    expect(up.received().length).toBe(0);
  });
});

describe('a valid 101', () => {
  test('still tunnels messages both ways between real ws peers', async () => {
    const up: WebSocketUpstream = await startWebSocketUpstream({ onConnection: (socket) => socket.send('welcome') });
    upstreams.push(up);
    const port = await meridian(up.origin);
    const ws = new WebSocket(`ws://127.0.0.1:${port}${REALTIME}`);
    sockets.push(ws);
    const [welcome] = (await once(ws, 'message')) as [Buffer];
    expect(welcome.toString()).toBe('welcome');
    ws.send('ping through');
    const [echo] = (await once(ws, 'message')) as [Buffer];
    expect(echo.toString()).toBe('ping through');
  });

  test('bytes the client sent early reach the upstream only after its 101, and in order', async () => {
    const up = await recording(() => null);
    const client = await rawClient(await meridian(up.origin));
    const [first, second] = [maskedFrame('early one'), maskedFrame('early two')];
    client.socket.write(Buffer.concat([Buffer.from(handshake(), 'latin1'), first]));
    await until(() => up.sockets.length === 1, 'the upgrade request upstream');
    await new Promise<void>((resolve) => client.socket.write(second, () => resolve()));
    const beforeSwitch = up.received();
    expect(beforeSwitch.toString('latin1').endsWith('\r\n\r\n')).toBe(true);
    up.sockets[0].write(SWITCH);
    const expected = Buffer.concat([beforeSwitch, first, second]);
    await until(() => up.received().length >= expected.length, 'the held frames upstream');
    expect(up.received().equals(expected)).toBe(true);
    await until(() => client.received().includes('\r\n\r\n'), 'the 101 at the client');
    expect(client.received().toString('latin1')).toBe(SWITCH);
  });
});
