// Peer: a node:http2 secure server that answers every request itself with the upstreams' 200-byte body; the ceiling
// for a node process serving HTTP/2 over TLS, with no proxying behind it. HTTP/1.1 is allowed so a readiness probe
// can use node:https. Run as `node bench/peers/h2-direct.ts PORT CERT_FILE KEY_FILE`.
import { readFileSync } from 'node:fs';
import { createSecureServer } from 'node:http2';
import { UPSTREAM_BODY } from '../upstream.ts';

const [port, certFile, keyFile] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
const body = Buffer.from(UPSTREAM_BODY);
const server = createSecureServer({ cert: readFileSync(certFile), key: readFileSync(keyFile), minVersion: 'TLSv1.2', allowHTTP1: true }, (req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
});
server.listen(port, '127.0.0.1');
// Open sessions would hold server.close() until they end; nothing here needs a graceful stop.
process.once('SIGTERM', () => process.exit(0));
