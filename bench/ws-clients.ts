// Opens COUNT idle WebSockets to ws://HOST:PORT/PATH as raw sockets (a handshake, then nothing), a few hundred in
// flight at a time, and keeps them open. Run as `node bench/ws-clients.ts HOST PORT PATH COUNT`; it prints `open N`
// once every handshake has its 101 (or `failed: …`), then waits for SIGTERM. Raw sockets keep this process small
// and quick, so 10,000 handshakes take a second or two and it never becomes what is measured.
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';

const [host, port, path, countText] = process.argv.slice(2);
const COUNT = Number(countText);
const IN_FLIGHT = 200;
const sockets: Socket[] = [];
let started = 0;
let open = 0;
let failed = false;

function fail(reason: string): void {
  if (failed) return;
  failed = true;
  console.log(`failed: ${reason} (${open} open)`);
}

function openOne(): void {
  if (failed || started >= COUNT) return;
  started++;
  const socket = connect({ host, port: Number(port) });
  sockets.push(socket);
  let answer = '';
  socket.setEncoding('latin1');
  socket.on('error', (error) => fail(error.message));
  socket.on('close', () => {
    if (open === COUNT) fail('a socket closed while the sockets were held');
  });
  socket.write(
    `GET ${path} HTTP/1.1\r\nhost: ${host}:${port}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n` +
      `sec-websocket-key: ${randomBytes(16).toString('base64')}\r\nsec-websocket-version: 13\r\n\r\n`,
  );
  const onData = (chunk: string): void => {
    answer += chunk;
    if (!answer.includes('\r\n\r\n')) return;
    socket.off('data', onData);
    if (!answer.startsWith('HTTP/1.1 101')) return fail(`answer ${answer.slice(0, 40)}`);
    // Held, not read: an idle realtime client sends nothing between pings.
    open++;
    if (open === COUNT) console.log(`open ${open}`);
    else openOne();
  };
  socket.on('data', onData);
}

for (let i = 0; i < IN_FLIGHT; i++) openOne();
process.once('SIGTERM', () => {
  for (const socket of sockets) socket.destroy();
  process.exit(0);
});
