// WebSocket upgrades (/v1/realtime) are routed like requests, project affinity included, and tunnelled byte for byte
// to one endpoint: messages, close codes and handshake headers pass through, failed connects fail over, and refusals
// are JSON. Smuggling and shutdown have files of their own.
import { afterEach, describe, expect, test } from 'vitest';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import diagnostics from 'node:diagnostics_channel';
import type { IncomingMessage } from 'node:http';
import { WebSocket } from 'ws';
import { tunnelClose, tunnelOpen } from '../src/proxy/events.ts';
import type { TunnelRecord } from '../src/proxy/record.ts';
import { BOOT_PROBE_ONLY, deadPort, parseRawResponse, rawExchange, startProxy, until, type Overrides, type RunningProxy } from './support/harness.ts';
import { startRecordingUpstream, startSilentServer, startWebSocketUpstream, type SilentServer, type WebSocketUpstream, type WebSocketUpstreamOptions } from './support/websocket-upstream.ts';
import { startWorld, type World } from './support/zones.ts';

const REALTIME = '/v1/realtime?project=demo&channels[]=files';
/** A silent endpoint never answers the boot health check either; this closes that probe's connection quickly. */
const QUICK_PROBE_TIMEOUT = { timeout: '50ms' } as const;
const MiB = 1024 * 1024;

let proxy: RunningProxy | undefined;
let upstreams: { close(): Promise<void> }[] = [];
let clients: WebSocket[] = [];

afterEach(async () => {
  for (const client of clients) client.terminate();
  await proxy?.shutdown();
  await Promise.all(upstreams.map((u) => u.close()));
  proxy = undefined;
  upstreams = [];
  clients = [];
});

async function upstream(options: WebSocketUpstreamOptions = {}): Promise<WebSocketUpstream> {
  const started = await startWebSocketUpstream(options);
  upstreams.push(started);
  return started;
}

async function silent(): Promise<SilentServer> {
  const started = await startSilentServer();
  upstreams.push(started);
  return started;
}

async function meridian(origins: readonly string[], overrides: Overrides = {}): Promise<RunningProxy> {
  proxy = await startProxy(origins, overrides);
  return proxy;
}

function client(port: number, options: { protocols?: string[]; headers?: Record<string, string>; path?: string } = {}): WebSocket {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${options.path ?? REALTIME}`, options.protocols, { headers: options.headers });
  ws.on('error', () => {});
  clients.push(ws);
  return ws;
}

async function opened(port: number, options: Parameters<typeof client>[1] = {}): Promise<WebSocket> {
  const ws = client(port, options);
  await once(ws, 'open');
  return ws;
}

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return once(ws, 'message').then(([data, isBinary]) => ({ data: data as Buffer, isBinary: isBinary as boolean }));
}

/** The HTTP answer a client got instead of a 101, read through ws's 'unexpected-response'. */
async function refusal(ws: WebSocket): Promise<{ status: number; headers: IncomingMessage['headers']; body: string }> {
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') };
}

describe('tunnel', () => {
  test('text and binary messages are echoed through, each keeping its type', async () => {
    const up = await upstream();
    const ws = await opened((await meridian([up.origin])).port);
    ws.send('hello realtime');
    const text = await nextMessage(ws);
    expect(text.isBinary).toBe(false);
    expect(text.data.toString('utf8')).toBe('hello realtime');
    const bytes = Buffer.from([0, 1, 2, 250, 255]);
    ws.send(bytes);
    const binary = await nextMessage(ws);
    expect(binary.isBinary).toBe(true);
    expect(binary.data.equals(bytes)).toBe(true);
  });

  // Appwrite's realtime refuses a bad subscription by sending an error event and closing at once (code 1008): the client
  // must read the reason before the close, in both the in-process and the worker data plane.
  test.each([1, 2])("an upstream's last message before its close reaches the client before the close (%i data-plane threads)", async (workers) => {
    // Large enough to still sit in Meridian's socket buffers when the upstream's close arrives.
    const error = JSON.stringify({ type: 'error', data: { code: 1008, message: 'Missing or unknown project ID', detail: 'x'.repeat(8 * MiB) } });
    // Like Appwrite: the error event, the close frame, and the TCP connection ended at once, without waiting for the
    // client's close frame.
    const up = await upstream({
      onConnection: (socket) => {
        socket.send(error);
        socket.close(1008, 'Missing or unknown project ID');
        (socket as unknown as { _socket: { end(): void } })._socket.end();
      },
    });
    proxy = await startProxy([up.origin], {}, { workers });
    const ws = client(proxy.port);
    clients.push(ws);
    const events: string[] = [];
    ws.on('message', (data) => events.push(`message ${String(data) === error ? 'error event' : 'something else'}`));
    const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
    events.push(`close ${code} ${reason.toString()}`);
    expect(events).toEqual(['message error event', 'close 1008 Missing or unknown project ID']);
  });

  test('a 5 MiB binary message arrives intact in both directions', async () => {
    const up = await upstream();
    const ws = await opened((await meridian([up.origin])).port);
    const payload = randomBytes(5 * MiB);
    ws.send(payload);
    const echoed = await nextMessage(ws);
    expect(echoed.data.length).toBe(payload.length);
    expect(echoed.data.equals(payload)).toBe(true);
  });

  test('a close code and reason from the client reach the upstream', async () => {
    const up = await upstream();
    const ws = await opened((await meridian([up.origin])).port);
    ws.close(4001, 'bye');
    await once(ws, 'close');
    const [closed] = await until(() => (up.closes.length > 0 ? up.closes : null), 'the upstream to see the close');
    expect(closed).toEqual({ code: 4001, reason: 'bye' });
  });

  test('a close code and reason from the upstream reach the client', async () => {
    const up = await upstream({ onConnection: (socket) => socket.close(4002, 'moved') });
    const ws = client((await meridian([up.origin])).port);
    const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
    expect(code).toBe(4002);
    expect(reason.toString('utf8')).toBe('moved');
  });

  test('frames sent in the same packet as the upgrade request are not lost', async () => {
    const up = await upstream();
    const { port } = await meridian([up.origin]);
    const socket: Socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    const handshake =
      `GET ${REALTIME} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
    socket.write(Buffer.concat([Buffer.from(handshake, 'latin1'), maskedTextFrame('early')]));
    try {
      const echo = Buffer.from([0x81, 5, ...Buffer.from('early')]);
      const received = await until(() => {
        const all = Buffer.concat(chunks);
        const split = all.indexOf('\r\n\r\n');
        return split >= 0 && all.length >= split + 4 + echo.length ? all : null;
      }, 'the 101 and the echoed early frame');
      const split = received.indexOf('\r\n\r\n');
      expect(received.subarray(0, 12).toString('latin1')).toBe('HTTP/1.1 101');
      expect(received.subarray(split + 4).equals(echo)).toBe(true);
    } finally {
      socket.destroy();
    }
  });
});

describe('handshake', () => {
  test('subprotocol, cookie, origin and query string arrive upstream; X-Forwarded-For is the client, not what it claimed', async () => {
    const up = await upstream();
    const ws = await opened((await meridian([up.origin])).port, {
      protocols: ['appwrite-v2', 'appwrite-v1'],
      headers: { cookie: 'a_session_demo=secret', origin: 'https://app.example', 'x-forwarded-for': '6.6.6.6' },
    });
    expect(ws.protocol).toBe('appwrite-v2');
    const [handshake] = up.handshakes;
    expect(handshake.url).toBe(REALTIME);
    expect(handshake.headers['sec-websocket-protocol']).toBe('appwrite-v2,appwrite-v1');
    expect(handshake.headers.cookie).toBe('a_session_demo=secret');
    expect(handshake.headers.origin).toBe('https://app.example');
    expect(handshake.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(handshake.headers.upgrade).toBe('websocket');
    expect(handshake.headers['x-request-id']).toMatch(/./);
  });

  // Fails today: headers.ts drops every name listed in Connection, Upgrade included, so the upstream sees a plain GET.
  test("Firefox's `Connection: keep-alive, Upgrade` still upgrades", async () => {
    const up = await upstream();
    const { port } = await meridian([up.origin]);
    const socket: Socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write(
      `GET ${REALTIME} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n` +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    );
    try {
      const [first] = (await once(socket, 'data')) as [Buffer];
      expect(first.subarray(0, 12).toString('latin1')).toBe('HTTP/1.1 101');
    } finally {
      socket.destroy();
    }
  });

  test('an upstream that refuses the upgrade with 403 is passed through to the client', async () => {
    const up = await upstream({ refuseWith: 403 });
    const { status } = await refusal(client((await meridian([up.origin])).port));
    expect(status).toBe(403);
    expect(up.handshakes).toHaveLength(1);
  });

  test('an h2c upgrade is refused with JSON and never reaches an upstream', async () => {
    const up = await upstream();
    const { port } = await meridian([up.origin]);
    const raw = await rawExchange(
      port,
      'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n',
    );
    const res = parseRawResponse(raw);
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toBe('application/json');
    expect(JSON.parse(res.body)).toMatchObject({ code: 400, type: 'meridian_bad_request' });
    expect(up.handshakes).toHaveLength(0);
  });
});

describe('failover', () => {
  test('a refused first candidate fails over to the second, which serves the socket', async () => {
    const up = await upstream();
    const ws = await opened((await meridian([`http://127.0.0.1:${await deadPort()}`, up.origin])).port);
    ws.send('still here');
    expect((await nextMessage(ws)).data.toString('utf8')).toBe('still here');
    expect(up.handshakes).toHaveLength(1);
  });

  test('when every candidate refuses, the client gets a 502 in Appwrite JSON with CORS', async () => {
    const dead = [`http://127.0.0.1:${await deadPort()}`, `http://127.0.0.1:${await deadPort()}`];
    const ws = client((await meridian(dead)).port, { headers: { origin: 'https://app.example' } });
    const res = await refusal(ws);
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example');
    expect(JSON.parse(res.body)).toMatchObject({ code: 502, type: 'meridian_upstream_unreachable' });
  });

  test('retries.maxAttempts bounds the candidates tried', async () => {
    const up = await upstream();
    const { port } = await meridian([`http://127.0.0.1:${await deadPort()}`, up.origin], { retries: { maxAttempts: 1 } });
    expect((await refusal(client(port))).status).toBe(502);
    expect(up.handshakes).toHaveLength(0);
  });

  test('an endpoint that never finishes connecting times out with 504', async () => {
    const hang = await silent();
    const { port } = await meridian([`https://127.0.0.1:${hang.port}`], { timeouts: { connect: '100ms' }, health: QUICK_PROBE_TIMEOUT });
    const res = await refusal(client(port));
    expect(res.status).toBe(504);
    expect(JSON.parse(res.body)).toMatchObject({ code: 504, type: 'meridian_upstream_timeout' });
    await until(() => hang.open.size === 0, 'the timed-out connection to be closed');
  });

  test('a client that leaves while Meridian is still connecting aborts the upstream connect', async () => {
    const hang = await silent();
    const { port, meridian: running } = await meridian([`https://127.0.0.1:${hang.port}`], { timeouts: { connect: '30s' }, health: QUICK_PROBE_TIMEOUT });
    // The boot health check connects to the silent server too: let it give up before counting connections.
    await until(() => running.runtime.health().lastProbe[0] !== null && hang.open.size === 0, 'the boot health check to give up');
    const before = hang.accepted;
    const ws = client(port);
    await until(() => hang.accepted === before + 1, 'Meridian to start connecting upstream');
    ws.terminate();
    await until(() => hang.open.size === 0, 'the pending upstream connection to be abandoned');
  });
});

describe('events', () => {
  test('tunnelOpen and tunnelClose are published once per tunnel, naming the endpoint it stayed on', async () => {
    const up = await upstream();
    const seen: string[] = [];
    const onOpen = (message: unknown): void => void seen.push(`open ${(message as TunnelRecord).requestId}`);
    const onClose = (message: unknown): void => {
      const record = message as TunnelRecord;
      seen.push(`close ${record.requestId} ${record.endpoint?.origin}`);
    };
    diagnostics.subscribe(tunnelOpen.name, onOpen);
    diagnostics.subscribe(tunnelClose.name, onClose);
    try {
      const ws = await opened((await meridian([`http://127.0.0.1:${await deadPort()}`, up.origin])).port, { headers: { 'x-request-id': 'rt-1' } });
      ws.close();
      await until(() => seen.length === 2, 'the close event');
      expect(seen).toEqual(['open rt-1', `close rt-1 ${up.origin}`]);
    } finally {
      diagnostics.unsubscribe(tunnelOpen.name, onOpen);
      diagnostics.unsubscribe(tunnelClose.name, onClose);
    }
  });
});

describe('project affinity', () => {
  let world: World | undefined;
  afterEach(async () => {
    await world?.close();
    world = undefined;
  });

  // Loopback clients have no location, so without affinity every realtime socket stays in the local region.
  test('a realtime upgrade for a project is tunnelled to its home region, named only in the query string', async () => {
    world = await startWorld(
      {
        local: { location: [50.11, 8.68], zones: { 'az-1': ['local-1'] } },
        'eu-south': { location: [45.46, 9.19], zones: { 'az-1': ['eu-south-1'] } },
      },
      { region: 'local', zone: 'az-1' },
      { routing: { projects: { shop: { home: 'eu-south' } } }, health: BOOT_PROBE_ONLY },
    );
    // Each backend greets a new socket with its name.
    const greeting = async (path: string): Promise<string> => {
      const ws = client(world!.port, { path });
      try {
        const [name] = (await once(ws, 'message')) as [Buffer];
        return name.toString('utf8');
      } finally {
        ws.terminate();
      }
    };
    expect(await greeting('/v1/realtime?project=shop&channels[]=files')).toBe('eu-south-1');
    expect(await greeting('/v1/realtime?project=blog&channels[]=files')).toBe('local-1');
    expect(await greeting('/v1/realtime?channels[]=files&project=shop')).toBe('eu-south-1');
  });
});

/** A client-to-server text frame (clients must mask), built by hand so it can share a packet with the handshake. */
function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const mask = randomBytes(4);
  const masked = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

describe('an upstream that hangs up before answering the upgrade', () => {
  test('the handshake goes to the next candidate, since only the GET went up, and the socket then works', async () => {
    const hangsUp = await startRecordingUpstream(() => null);
    upstreams.push(hangsUp);
    const next = await upstream();
    const { port } = await meridian([hangsUp.origin, next.origin]);
    const ws = client(port);
    await until(() => hangsUp.sockets.length === 1, 'the upgrade request to reach the first endpoint');
    hangsUp.sockets[0].destroy();
    await once(ws, 'open');
    const reply = nextMessage(ws);
    ws.send('after failover');
    expect((await reply).data.toString()).toBe('after failover');
    expect(next.handshakes).toHaveLength(1);
  });

  test('after part of an answer it is a 502, never a second upstream', async () => {
    const halfAnswers = await startRecordingUpstream(() => 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n');
    upstreams.push(halfAnswers);
    const next = await upstream();
    const { port } = await meridian([halfAnswers.origin, next.origin]);
    const ws = client(port);
    await until(() => halfAnswers.sockets.length === 1, 'the upgrade request to reach the first endpoint');
    const refused = refusal(ws);
    halfAnswers.sockets[0].destroy();
    expect((await refused).status).toBe(502);
    expect(next.handshakes).toHaveLength(0);
  });
});
