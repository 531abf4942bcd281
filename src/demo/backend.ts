// A simulated Appwrite backend for one region/zone on loopback: health version, a request echo,
// streamed upload counting, and a realtime WebSocket that says which region/zone answered.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

/** What the simulated backends report from `/v1/health/version`, as an Appwrite server would. */
export const DEMO_APPWRITE_VERSION = '1.7.4';
export const HEALTH_VERSION_PATH = '/v1/health/version';
export const REALTIME_PATH = '/v1/realtime';

export interface DemoBackend {
  readonly region: string;
  readonly zone: string;
  /** `http://127.0.0.1:PORT`, the endpoint the demo topology points at. */
  readonly origin: string;
  /** Stops listening and ends every connection, WebSockets included. */
  close(): Promise<void>;
}

export async function startBackend(region: string, zone: string): Promise<DemoBackend> {
  const server = createServer((req, res) => answer(req, res, region, zone));
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => {
    if (urlOf(req).pathname !== REALTIME_PATH) {
      socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => realtime(ws, req, region, zone));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const client of wss.clients) client.terminate();
      wss.close();
      server.closeAllConnections();
    }));
  return { region, zone, origin: `http://127.0.0.1:${port}`, close };
}

function answer(req: IncomingMessage, res: ServerResponse, region: string, zone: string): void {
  const url = urlOf(req);
  if (hasBody(req)) {
    // Count the upload as it streams past; a multi-GiB file never sits in memory.
    let bytes = 0;
    req.on('data', (chunk: Buffer) => (bytes += chunk.length));
    req.on('end', () => reply(res, region, zone, { region, zone, bytes }));
    return;
  }
  if (url.pathname === HEALTH_VERSION_PATH) {
    reply(res, region, zone, { version: DEMO_APPWRITE_VERSION });
    return;
  }
  reply(res, region, zone, {
    region,
    zone,
    method: req.method,
    path: url.pathname,
    query: queryOf(url.searchParams),
    clientIp: req.headers['x-forwarded-for'] ?? null,
    proto: req.headers['x-forwarded-proto'] ?? null,
    requestId: req.headers['x-request-id'] ?? null,
  });
}

function reply(res: ServerResponse, region: string, zone: string, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-demo-region': region,
    'x-demo-zone': zone,
  });
  res.end(text);
}

function realtime(ws: WebSocket, req: IncomingMessage, region: string, zone: string): void {
  const channels = urlOf(req).searchParams.getAll('channels[]');
  ws.send(JSON.stringify({ type: 'connected', data: { channels, user: null, region, zone } }));
  ws.on('message', (data) => {
    ws.send(JSON.stringify({ type: 'event', data: { echo: String(data), region, zone } }));
  });
}

function urlOf(req: IncomingMessage): URL {
  return new URL(req.url ?? '/', 'http://backend.invalid');
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** Repeated keys such as Appwrite's `channels[]` become arrays, so the echo shows every value. */
function queryOf(params: URLSearchParams): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const key of new Set(params.keys())) {
    const values = params.getAll(key);
    out[key] = values.length === 1 ? values[0] : values;
  }
  return out;
}
