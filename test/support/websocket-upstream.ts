// A real `ws` upstream on 127.0.0.1, port 0, for tunnel tests: echoes every message (text stays text,
// binary stays binary) and records each handshake and each close it sees. Also a silent TCP server that never answers,
// and a raw recording upstream that keeps every byte it receives and answers upgrades with whatever a test scripts.
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
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
  /** Answers plain HTTP requests (health checks aside); the default is 426. */
  readonly onRequest?: (req: IncomingMessage, res: ServerResponse) => void;
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
    if (answeredProbe(req, res)) return;
    if (options.onRequest) options.onRequest(req, res);
    else res.writeHead(426).end();
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

/** What a recording upstream sends once a request head (not a health check) has arrived; null holds the answer. */
export type ScriptedAnswer = (head: string) => string | null;

export interface RecordingUpstream {
  readonly port: number;
  readonly origin: string;
  /** Every byte received on connections that were not health checks, in order of arrival. */
  received(): Buffer;
  /** Those connections: each one's socket, open or closed, to answer a held request by hand. */
  readonly sockets: Socket[];
  /** Those connections still open. */
  open(): number;
  close(): Promise<void>;
}

const PROBE = /^user-agent:[ \t]*meridian-health-check[ \t]*$/im;
const PROBE_ANSWER = 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 18\r\n\r\n{"version":"test"}';

/**
 * A raw TCP upstream: nothing in it parses more than a request head, so it records exactly what reaches it, bytes
 * smuggled behind an upgrade request included, and answers with exactly what the test scripts (a 101 with a wrong
 * accept, a refusal that keeps the connection open, …). Health checks are answered 200 and left out of the record.
 */
export async function startRecordingUpstream(answer: ScriptedAnswer): Promise<RecordingUpstream> {
  const chunks: Buffer[] = [];
  const sockets: Socket[] = [];
  const all = new Set<Socket>();
  const server = createNetServer((socket) => {
    all.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => all.delete(socket));
    let pending = Buffer.alloc(0);
    let traffic = false;
    socket.on('data', (chunk: Buffer) => {
      if (traffic) {
        chunks.push(chunk);
        return;
      }
      pending = Buffer.concat([pending, chunk]);
      for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
        const head = pending.subarray(0, end + 4).toString('latin1');
        if (PROBE.test(head)) {
          socket.write(PROBE_ANSWER);
          pending = pending.subarray(end + 4);
          continue;
        }
        traffic = true;
        sockets.push(socket);
        chunks.push(pending);
        const reply = answer(head);
        if (reply !== null) socket.write(reply, 'latin1');
        return;
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    received: () => Buffer.concat(chunks),
    sockets,
    open: () => sockets.filter((socket) => !socket.destroyed).length,
    close: async () => {
      for (const socket of all) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
