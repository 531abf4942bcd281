// Peer: node-http-proxy behind a node:https server (TLS terminated in node), with a keep-alive agent to the upstream.
// Run as `node bench/peers/http-proxy-https.ts PORT UPSTREAM_URL CERT_FILE KEY_FILE`.
import { readFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { createServer } from 'node:https';
import httpProxy from 'http-proxy';

const [port, target, certFile, keyFile] = [Number(process.argv[2]), process.argv[3], process.argv[4], process.argv[5]];
const proxy = httpProxy.createProxyServer({ target, agent: new Agent({ keepAlive: true }) });
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502);
  res.end();
});
// The same protocol floor as Meridian's listener; node's default ciphers otherwise (clients negotiate TLS 1.3 here).
const tls = { cert: readFileSync(certFile), key: readFileSync(keyFile), minVersion: 'TLSv1.2' } as const;
const server = createServer({ ...tls, keepAliveTimeout: 65_000 }, (req, res) => proxy.web(req, res));
server.listen(port, '127.0.0.1');
process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  proxy.close();
});
