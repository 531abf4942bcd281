// Peer: the least a node:http + undici proxy can do: one Pool, `pool.dispatch`, the upstream's head written as
// it came and its body piped with backpressure. No header rewriting, routing or retries: the floor per core.
// Run as `node bench/peers/minimal-dispatch.ts PORT UPSTREAM_URL`.
import { createServer } from 'node:http';
import { Pool } from 'undici';

const [port, upstream] = [Number(process.argv[2]), process.argv[3]];
const pool = new Pool(upstream, { connect: { noDelay: true } });
const server = createServer({ keepAliveTimeout: 65_000, noDelay: true }, (req, res) => {
  const body = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined ? req : null;
  let ctl: { resume(): void } | null = null;
  res.on('drain', () => ctl?.resume());
  pool.dispatch({ path: req.url!, method: req.method!, headers: req.headers as Record<string, string>, body }, {
    onRequestStart: (c) => void (ctl = c),
    onResponseStart: (_c, status, headers) => void res.writeHead(status, headers),
    onResponseData: (c, chunk) => void (res.write(chunk) || c.pause()),
    onResponseEnd: () => void res.end(),
    onResponseError: () => void (res.headersSent ? res.destroy() : res.writeHead(502).end()),
  });
});
server.listen(port, '127.0.0.1');
// Nothing to drain in a benchmark; exiting at once also lets --cpu-prof write its profile.
process.once('SIGTERM', () => process.exit(0));
