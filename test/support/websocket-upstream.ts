// A real `ws` upstream on 127.0.0.1, port 0, for tunnel tests: echoes every message (text stays text,
// binary stays binary) and records each handshake and each close it sees. Also a silent TCP server that never answers.
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { answeredProbe, closeServer } from './harness.ts';

export interface Handshake {
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
}

export interface Closed {
  readonly code: number;
  readonly reason: string;
}

export interface WebSocketUpstreamOptions {
  /** Refuse every upgrade with this status instead of accepting it. */
  readonly refuseWith?: number;
  /** Called with each accepted socket, after the echo handler is attached. */
  readonly onConnection?: (socket: WebSocket) => void;
}

export interface WebSocketUpstream {
  readonly port: number;
  /** `http://127.0.0.1:PORT`, usable as an endpoint in a config. */
  readonly origin: string;
  /** Every upgrade request that reached this server, accepted or refused. */
  readonly handshakes: Handshake[];
  /** Close frames received from clients, in order. */
  readonly closes: Closed[];
  readonly sockets: Set<WebSocket>;
  close(): Promise<void>;
}

export async function startWebSocketUpstream(options: WebSocketUpstreamOptions = {}): Promise<WebSocketUpstream> {
  const handshakes: Handshake[] = [];
  const closes: Closed[] = [];
  const sockets = new Set<WebSocket>();
  const server = createServer((req, res) => {
    if (!answeredProbe(req, res)) res.writeHead(426).end();
  });
  const wss = new WebSocketServer({
    server,
    verifyClient: (info, done) => {
      handshakes.push({ url: info.req.url ?? '', headers: info.req.headers });
      if (options.refuseWith === undefined) done(true);
      else done(false, options.refuseWith);
    },
  });
  wss.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
    socket.on('close', (code, reason) => {
      sockets.delete(socket);
      closes.push({ code, reason: reason.toString('utf8') });
    });
    // Tests cut connections on purpose; a reset must not become an uncaught error.
    socket.on('error', () => {});
    options.onConnection?.(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    handshakes,
    closes,
    sockets,
    close: async () => {
      for (const socket of sockets) socket.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await closeServer(server);
    },
  };
}

/** Accepts TCP connections and never sends a byte: a TLS endpoint here never finishes connecting (health checks included). */
export interface SilentServer {
  readonly port: number;
  /** Connections currently open, for asserting that Meridian gave up on them. */
  readonly open: Set<Socket>;
  /** Connections ever accepted. */
  readonly accepted: number;
  close(): Promise<void>;
}

export async function startSilentServer(): Promise<SilentServer> {
  const open = new Set<Socket>();
  let accepted = 0;
  const server = createNetServer((socket) => {
    accepted++;
    open.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => open.delete(socket));
    // Read and drop the TLS ClientHello: unread bytes would hide the peer's FIN, and the socket would never close.
    socket.resume();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    port,
    open,
    get accepted() {
      return accepted;
    },
    close: async () => {
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
