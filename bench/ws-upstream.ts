// A `ws` WebSocket server that accepts every upgrade and then only holds the socket: the upstream of bench/memory.ts's
// idle-WebSocket measurement, and its baseline when clients connect to it directly. Run as `node bench/ws-upstream.ts
// PORT`; it prints `listening` once ready.
import { WebSocketServer } from 'ws';

const server = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[2]) });
// A peer that goes away must not crash the run; the measurement counts open sockets, not errors.
server.on('connection', (socket) => socket.on('error', () => {}));
server.on('listening', () => console.log('listening'));
process.once('SIGTERM', () => {
  for (const client of server.clients) client.terminate();
  server.close();
});
