// A loopback HTTP proxy in front of several Meridian instances that sends each request to the next of them in turn,
// as a client would whose DNS answer changes, or that leaves through several egress addresses.
import { once } from 'node:events';
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeServer } from './harness.ts';

/**
 * A loopback HTTP proxy that sends each request to the next of `ports` in turn, whatever connection it came on (the
 * SDK's fetch keeps one connection alive for many requests, so splitting connections would not split an upload).
 * Headers and body pass through as they stream; `log` says which port each request went to.
 */
export async function startSplitter(ports: readonly number[]): Promise<{ readonly port: number; readonly log: SplitRecord[]; close(): Promise<void> }> {
  const agent = new Agent({ keepAlive: true });
  const log: SplitRecord[] = [];
  let next = 0;
  const server = createServer((req, res) => {
    const to = next++ % ports.length;
    const id = req.headers['x-appwrite-id'];
    log.push({ to, method: req.method ?? '', uploadId: typeof id === 'string' ? id : undefined, contentRange: req.headers['content-range'] });
    const headers = { ...req.headers };
    for (const hop of ['connection', 'keep-alive']) delete headers[hop];
    const upstream = request({ host: '127.0.0.1', port: ports[to], method: req.method, path: req.url, headers, agent }, (answer) => {
      const back = { ...answer.headers };
      for (const hop of ['connection', 'keep-alive', 'transfer-encoding']) delete back[hop];
      res.writeHead(answer.statusCode ?? 502, back);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    log,
    close: async () => {
      agent.destroy();
      await closeServer(server);
    },
  };
}

export interface SplitRecord {
  /** Index into the splitter's ports. */
  readonly to: number;
  readonly method: string;
  readonly uploadId: string | undefined;
  readonly contentRange: string | undefined;
}
