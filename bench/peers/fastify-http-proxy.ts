// Peer: fastify with @fastify/http-proxy (undici underneath via @fastify/reply-from), default options.
// Run as `node bench/peers/fastify-http-proxy.ts PORT UPSTREAM_URL`.
import Fastify from 'fastify';
import httpProxy from '@fastify/http-proxy';

const [port, upstream] = [Number(process.argv[2]), process.argv[3]];
// The body limit is raised only so the 1 MiB upload scenario is accepted; bodies still stream through.
const app = Fastify({ logger: false, keepAliveTimeout: 65_000, bodyLimit: 8 * 1024 * 1024 });
await app.register(httpProxy, { upstream });
await app.listen({ port, host: '127.0.0.1' });
process.once('SIGTERM', () => void app.close());
