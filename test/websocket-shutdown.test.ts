// WebSockets at shutdown (DESIGN.md §7): tunnels keep serving while HTTP exchanges drain, then each gets a 1001 Going
// Away close frame, between two messages, one after another across drainTimeout, so realtime clients do not all
// reconnect to the other instances in the same second.
import { afterEach, describe, expect, test } from 'vitest';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { WebSocket } from 'ws';
import type { Tunnel } from '../src/proxy/websocket.ts';
import { send, startProxy, until, type RunningProxy } from './support/harness.ts';
import { startWebSocketUpstream, type WebSocketUpstream } from './support/websocket-upstream.ts';

const REALTIME = '/v1/realtime?project=demo&channels[]=files';
const GOING_AWAY = 1001;
const MiB = 1024 * 1024;

let proxy: RunningProxy | undefined;
let up: WebSocketUpstream | undefined;
let clients: WebSocket[] = [];
const held: ServerResponse[] = [];

afterEach(async () => {
  for (const client of clients) client.terminate();
  for (const res of held) res.destroy();
  await proxy?.shutdown();
  await up?.close();
  proxy = undefined;
  up = undefined;
  clients = [];
  held.length = 0;
});

/** An echoing ws upstream that also holds plain HTTP requests to `/slow` until the test ends them. */
async function setup(drainTimeout: string): Promise<RunningProxy> {
  up = await startWebSocketUpstream({ onRequest: (_req, res) => held.push(res) });
  proxy = await startProxy([up.origin], { shutdown: { drainDelay: 0, drainTimeout } });
  return proxy;
}

async function opened(port: number): Promise<WebSocket> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${REALTIME}`);
  ws.on('error', () => {});
  clients.push(ws);
  await once(ws, 'open');
  return ws;
}

/** Resolves with the close code and when it came, in performance.now() time. */
function closing(ws: WebSocket): Promise<{ code: number; at: number }> {
  return once(ws, 'close').then(([code]) => ({ code: code as number, at: performance.now() }));
}

/** The echo of `text`; fails at once if the tunnel closes first. */
function echoed(ws: WebSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const onMessage = (data: Buffer): void => {
      ws.off('close', onClose);
      resolve(data.toString('utf8'));
    };
    const onClose = (code: number): void => {
      ws.off('message', onMessage);
      reject(new Error(`the tunnel closed (${code}) instead of echoing ${JSON.stringify(text)}`));
    };
    ws.once('message', onMessage).once('close', onClose);
    ws.send(text);
  });
}

function tunnels(running: RunningProxy): Tunnel[] {
  return [...running.meridian.runtime.traffic.tunnels] as Tunnel[];
}

describe('shutdown with open WebSockets', () => {
  test('every client gets 1001 Going Away, one after another across drainTimeout, and the upstream side closes too', async () => {
    const running = await setup('2s');
    const count = 6;
    const sockets = await Promise.all(Array.from({ length: count }, () => opened(running.port)));
    const closes = sockets.map(closing);
    const startedAt = performance.now();
    await running.shutdown();
    const took = performance.now() - startedAt;
    const results = await Promise.all(closes);

    expect(results.map((r) => r.code)).toEqual(Array(count).fill(GOING_AWAY));
    // The clients answered with their own close frames, which reached the upstream as clean closes.
    await until(() => up!.sockets.size === 0, 'the upstream side of every tunnel to close');
    expect(up!.closes.map((c) => c.code)).toEqual(Array(count).fill(GOING_AWAY));
    // Tunnel i of n gets its close frame at i/n of the window less the grace (a quarter of 2 s): timers never fire
    // early, so each close comes no sooner than its turn, and the whole shutdown stays within drainTimeout.
    const spread = 2_000 - 500;
    const times = results.map((r) => r.at - startedAt).sort((a, b) => a - b);
    times.forEach((time, i) => expect(time, `close ${i + 1} of ${count}`).toBeGreaterThanOrEqual(((i + 1) / count) * spread - 20));
    expect(times[count - 1] - times[0]).toBeGreaterThanOrEqual(spread / 2);
    expect(took).toBeLessThan(2_000 + 1_000);
  });

  test('a tunnel keeps relaying while an HTTP request drains, and after it has', async () => {
    const running = await setup('2s');
    const ws = await opened(running.port);
    const closed = closing(ws);
    const slow = send(running.port, { path: '/slow' });
    await until(() => held.length === 1, 'the slow request at the upstream');

    const stopping = running.shutdown();
    await until(() => running.meridian.runtime.traffic.draining, 'the drain to start');
    expect(await echoed(ws, 'while draining')).toBe('while draining');

    held[0].end('done');
    expect((await slow).status).toBe(200);
    await until(() => running.meridian.runtime.traffic.inflight === 0, 'the last exchange to end');
    // Before, tunnels were cut (1006) the moment the last HTTP exchange ended.
    expect(await echoed(ws, 'after the exchanges drained')).toBe('after the exchanges drained');

    expect((await closed).code).toBe(GOING_AWAY);
    await stopping;
  });

  test('a large message in flight when its turn comes arrives whole, before the close frame', async () => {
    const running = await setup('4s');
    const ws = await opened(running.port);
    const message = randomBytes(32 * MiB);
    const events: (Buffer | number)[] = [];
    ws.on('message', (data: Buffer) => events.push(data));
    const closed = closing(ws).then(({ code }) => events.push(code));
    // A client that reads nothing: the message backs up into Meridian, which holds only part of it.
    ws.pause();
    [...up!.sockets][0].send(message);
    const stopping = running.shutdown();
    const [tunnel] = tunnels(running);
    await until(() => tunnel.goingAway, "the tunnel's turn to close", 5_000);
    // The test's premise: the turn came in the middle of the message.
    expect(tunnel.frames.atMessageBoundary).toBe(false);
    ws.resume();
    await closed;
    expect(events.map((e) => (typeof e === 'number' ? e : `message of ${e.length} bytes`))).toEqual([`message of ${message.length} bytes`, GOING_AWAY]);
    expect((events[0] as Buffer).equals(message)).toBe(true);
    await stopping;
  });

  test('a tunnel closed by its client before its turn does not hold shutdown up', async () => {
    const running = await setup('20s');
    const ws = await opened(running.port);
    const startedAt = performance.now();
    const stopping = running.shutdown();
    ws.close(1000);
    await stopping;
    expect(performance.now() - startedAt).toBeLessThan(5_000);
  });
});
