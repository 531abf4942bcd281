// The node:http upstream: reads and discards any request body, then answers 200 with a fixed 200-byte body.
// Run as `node bench/upstream.ts PORT`; used when nginx is missing, and always for the upload scenario.
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';

export const UPSTREAM_BODY = 'x'.repeat(200);

export function serveUpstream(port: number): void {
  const body = Buffer.from(UPSTREAM_BODY);
  const server = createServer({ keepAliveTimeout: 65_000, noDelay: true }, (req, res) => {
    // Consume the body so uploads are really received; for a GET 'end' fires at once.
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    });
  });
  server.listen(port, '127.0.0.1');
  process.once('SIGTERM', () => {
    server.close();
    server.closeAllConnections();
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) serveUpstream(Number(process.argv[2]));
