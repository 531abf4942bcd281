// Peer: node-http-proxy on a node:http server, with a keep-alive agent to the upstream.
// Run as `node bench/peers/http-proxy.ts PORT UPSTREAM_URL`.
import { Agent, createServer } from 'node:http';
import httpProxy from 'http-proxy';

const [port, target] = [Number(process.argv[2]), process.argv[3]];
const proxy = httpProxy.createProxyServer({ target, agent: new Agent({ keepAlive: true }) });
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502);
  res.end();
});
const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => proxy.web(req, res));
server.listen(port, '127.0.0.1');
process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  proxy.close();
});
