// Appwrite's realtime refuses a socket (no project, a bad subscription) by sending an error event and a 1008 close
// frame and ending its side at once: often the 101, the error, the close and the FIN arrive in one packet. The client
// must get the upgrade, then the error event, then the close with its code and reason, whatever shape that takes.
import { afterEach, expect, test } from 'vitest';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import { startProxy, type RunningProxy } from './support/harness.ts';

const ERROR = JSON.stringify({ type: 'error', data: { code: 1008, message: 'Missing or unknown project ID' } });
const REASON = 'Missing or unknown project ID';

/** An unmasked server frame of `opcode` carrying `payload` (under 126 bytes here). */
function frame(opcode: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x80 | opcode, payload.length]), payload]);
}

/**
 * A raw upstream: a WebSocket upgrade gets, in one write that also ends the connection, the 101, the error event and
 * the close frame; anything else (the health check) gets 200.
 */
async function startRefusingRealtime(): Promise<{ readonly origin: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let head = '';
    socket.on('data', (data: Buffer) => {
      head += data.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const key = /^sec-websocket-key:\s*(\S+)/im.exec(head)?.[1];
      if (key === undefined) {
        socket.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 19\r\nconnection: close\r\n\r\n{"version":"1.7.4"}');
        return;
      }
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      const code = Buffer.alloc(2);
      code.writeUInt16BE(1008);
      socket.end(
        Buffer.concat([
          Buffer.from(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n\r\n`, 'latin1'),
          frame(0x1, Buffer.from(ERROR)),
          frame(0x8, Buffer.concat([code, Buffer.from(REASON)])),
        ]),
      );
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    origin: `http://127.0.0.1:${port}`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let proxy: RunningProxy | undefined;
let up: Awaited<ReturnType<typeof startRefusingRealtime>> | undefined;
afterEach(async () => {
  await proxy?.shutdown();
  await up?.close();
  proxy = undefined;
  up = undefined;
});

test.each([1, 2])('101, error event, close frame and FIN in one packet: the client reads the error, then the 1008 close (%i data-plane threads)', async (workers) => {
  up = await startRefusingRealtime();
  proxy = await startProxy([up.origin], {}, { workers });
  const ws = new WebSocket(`ws://127.0.0.1:${proxy.port}/v1/realtime`);
  ws.on('error', () => {});
  const seen: string[] = [];
  ws.on('open', () => seen.push('open'));
  ws.on('message', (data) => seen.push(String(data) === ERROR ? 'error event' : `message ${String(data)}`));
  ws.on('unexpected-response', (_req, res) => seen.push(`refused ${res.statusCode}`));
  const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
  seen.push(`close ${code} ${reason.toString()}`);
  expect(seen).toEqual(['open', 'error event', `close 1008 ${REASON}`]);
});
