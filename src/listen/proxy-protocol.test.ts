// PROXY header reading on real loopback sockets: headers are written byte by byte by hand here, never built with a parser.
import { afterEach, describe, expect, it } from 'vitest';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { until } from '../../test/support/harness.ts';
import { readProxyHeader, type ProxyHeaderOutcome } from './proxy-protocol.ts';

/** What one server-side connection saw of the reader. */
interface Seen {
  readonly startedAt: number;
  calls: number;
  outcome?: ProxyHeaderOutcome;
  pausedAtDone?: boolean;
  /** Listeners on the socket's events when done ran, less those there before the reader: all zero once it cleans up. */
  listenersLeft?: number[];
  elapsedMs?: number;
  /** Bytes the test, acting as the listener, read from the socket after the header. */
  readonly after: Buffer[];
  closed: boolean;
}

interface Reader {
  readonly port: number;
  readonly seen: Seen[];
}

const servers: Server[] = [];
const clients: Socket[] = [];
/** Every connection of the current test, across its servers. */
const everySeen: Seen[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  const seen = everySeen.splice(0);
  // Once every server-side socket has closed, a reader that left a listener behind would have answered twice.
  await until(() => seen.every((s) => s.closed || s.calls === 0), 'server sockets to close');
  for (const s of seen) expect(s.calls).toBe(1);
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

const EVENTS = ['data', 'readable', 'end', 'error', 'close', 'timeout'];

async function startReader(timeoutMs: number): Promise<Reader> {
  const seen: Seen[] = [];
  const server = createServer((socket) => {
    const s: Seen = { startedAt: performance.now(), calls: 0, after: [], closed: false };
    seen.push(s);
    everySeen.push(s);
    const listenersBefore = EVENTS.map((event) => socket.listenerCount(event));
    readProxyHeader(socket, timeoutMs, (outcome) => {
      s.calls++;
      if (s.calls > 1) return;
      s.outcome = outcome;
      s.pausedAtDone = socket.isPaused();
      s.listenersLeft = EVENTS.map((event, i) => socket.listenerCount(event) - listenersBefore[i]);
      s.elapsedMs = performance.now() - s.startedAt;
      // Act as the listener would: take a socket with a header on, close one without.
      socket.on('error', () => {});
      socket.on('close', () => {
        s.closed = true;
      });
      if (outcome.ok) {
        socket.on('data', (chunk: Buffer) => s.after.push(chunk));
        socket.resume();
      } else {
        socket.destroy();
      }
    });
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as AddressInfo).port, seen };
}

async function open(port: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  clients.push(socket);
  socket.setNoDelay(true);
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

/** Waits for the reader's answer on connection `index`; well within the timeouts of servers that must answer early. */
async function outcomeOf(reader: Reader, index: number, deadlineMs = 2_000): Promise<Seen> {
  await until(() => reader.seen[index]?.outcome, `the reader's outcome on connection ${index}`, deadlineMs);
  const seen = reader.seen[index];
  expect(seen.pausedAtDone).toBe(true);
  expect(seen.listenersLeft).toEqual(EVENTS.map(() => 0));
  return seen;
}

/** Writes `bytes` in one write on a fresh connection and returns what the reader said. */
async function exchange(reader: Reader, bytes: Buffer | string): Promise<Seen> {
  const index = reader.seen.length;
  const socket = await open(reader.port);
  socket.write(bytes);
  return outcomeOf(reader, index);
}

/** Writes `bytes` one byte per write, a millisecond or so apart. */
async function trickle(socket: Socket, bytes: Buffer): Promise<void> {
  for (const byte of bytes) {
    socket.write(Buffer.of(byte));
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

function expectHeader(seen: Seen, peer: string | null, rest = ''): void {
  expect(seen.outcome).toEqual({ ok: true, peer, rest: Buffer.from(rest, 'latin1') });
}

function expectRefused(seen: Seen, reason: 'malformed' | 'timeout' | 'closed'): void {
  expect(seen.outcome).toEqual({ ok: false, reason });
}

// v2 by hand: the 12-byte signature, version 2 with the command, family and transport, a big-endian length, the block.
const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const LOCAL = 0x20;
const PROXY = 0x21;
const TCP4 = 0x11;
const TCP6 = 0x21;

function v2(versionCommand: number, familyTransport: number, block: number[], length = block.length): Buffer {
  return Buffer.from([...SIGNATURE, versionCommand, familyTransport, length >> 8, length & 0xff, ...block]);
}

const port = (n: number): number[] => [n >> 8, n & 0xff];
// 203.0.113.7:51234 to 10.0.0.1:443
const V4_BLOCK = [203, 0, 113, 7, 10, 0, 0, 1, ...port(51234), ...port(443)];
// 2001:db8::7 to 2001:db8:1::1, same ports
const V6_SOURCE = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07];
const V6_DESTINATION = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01];
const V6_BLOCK = [...V6_SOURCE, ...V6_DESTINATION, ...port(51234), ...port(443)];
const REQUEST = 'GET /v1/health HTTP/1.1\r\nHost: api.example.com\r\n\r\n';

describe('readProxyHeader with a v1 header', () => {
  it.each([
    ['TCP4', 'PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n', '203.0.113.7'],
    ['TCP6', 'PROXY TCP6 2001:DB8:0:0::7 2001:db8::1 51234 443\r\n', '2001:db8::7'],
    ['TCP6 with an IPv4-mapped address', 'PROXY TCP6 ::ffff:198.51.100.20 ::ffff:10.0.0.1 1 65535\r\n', '198.51.100.20'],
    ['TCP6 with an IPv4-mapped address in hex', 'PROXY TCP6 ::ffff:c633:6414 ::1 0 80\r\n', '198.51.100.20'],
  ])('reports the client of a %s line in canonical form', async (_name, header, peer) => {
    const reader = await startReader(5_000);
    expectHeader(await exchange(reader, header), peer);
  });

  it.each([
    ['alone', 'PROXY UNKNOWN\r\n'],
    ['with addresses after it, which are ignored', 'PROXY UNKNOWN ffff:: ffff:: 1 2\r\n'],
  ])('reports no peer for UNKNOWN %s', async (_name, header) => {
    const reader = await startReader(5_000);
    expectHeader(await exchange(reader, header), null);
  });

  it('hands back exactly the request bytes that followed the header in the same write', async () => {
    const reader = await startReader(5_000);
    const seen = await exchange(reader, 'PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n' + REQUEST);
    expectHeader(seen, '203.0.113.7', REQUEST);
    expect(seen.after).toEqual([]);
  });

  it('accepts the longest line the spec allows, 107 bytes with CRLF', async () => {
    const address = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    const header = `PROXY TCP6 ${address} ${address} 65535 65535\r\n`;
    expect(header.length).toBe(104);
    const reader = await startReader(5_000);
    expectHeader(await exchange(reader, header), address);
    // UNKNOWN may pad to the limit: 105 bytes before CRLF is still a header, 106 is not.
    expectHeader(await exchange(reader, `PROXY UNKNOWN ${'x'.repeat(105 - 14)}\r\n`), null);
    expectRefused(await exchange(reader, `PROXY UNKNOWN ${'x'.repeat(106 - 14)}\r\n`), 'malformed');
  });
});

describe('readProxyHeader with a v2 header', () => {
  it('reports the client of a PROXY command over TCP/IPv4', async () => {
    const reader = await startReader(5_000);
    expectHeader(await exchange(reader, v2(PROXY, TCP4, V4_BLOCK)), '203.0.113.7');
  });

  it('reports the client of a PROXY command over TCP/IPv6 in compressed form', async () => {
    const reader = await startReader(5_000);
    expectHeader(await exchange(reader, v2(PROXY, TCP6, V6_BLOCK)), '2001:db8::7');
  });

  it('reports an IPv4-mapped IPv6 client as IPv4', async () => {
    const reader = await startReader(5_000);
    const mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 20];
    expectHeader(await exchange(reader, v2(PROXY, TCP6, [...mapped, ...V6_DESTINATION, ...port(1), ...port(2)])), '198.51.100.20');
  });

  it('skips TLVs by the header length and hands back the request after them exactly', async () => {
    const reader = await startReader(5_000);
    const tlvs = [
      ...[0x01, 0x00, 0x02, ...Buffer.from('h2')], // ALPN
      ...[0xea, 0x00, 0x0d, 0x01, ...Buffer.from('vpce-0a1b2c')], // AWS: VPC endpoint id
      ...[0x04, 0x00, 0x03, 0, 0, 0], // NOOP padding
    ];
    const seen = await exchange(reader, Buffer.concat([v2(PROXY, TCP4, [...V4_BLOCK, ...tlvs]), Buffer.from(REQUEST)]));
    expectHeader(seen, '203.0.113.7', REQUEST);
  });

  it('reports no peer for a LOCAL command, whatever address block it carries', async () => {
    const reader = await startReader(5_000);
    expectHeader(await exchange(reader, v2(LOCAL, 0x00, [])), null);
    expectHeader(await exchange(reader, Buffer.concat([v2(LOCAL, TCP4, V4_BLOCK), Buffer.from(REQUEST)])), null, REQUEST);
    // LOCAL's block is ignored, so one too short for its family is no fault.
    expectHeader(await exchange(reader, v2(LOCAL, TCP6, [1, 2, 3])), null);
  });

  it('reports no peer for the UNSPEC and UNIX families, and consumes their blocks', async () => {
    const reader = await startReader(5_000);
    expectHeader(await exchange(reader, Buffer.concat([v2(PROXY, 0x00, [9, 9]), Buffer.from(REQUEST)])), null, REQUEST);
    const unix = new Array<number>(216).fill(0x61);
    expectHeader(await exchange(reader, Buffer.concat([v2(PROXY, 0x31, unix), Buffer.from(REQUEST)])), null, REQUEST);
  });
});

describe('readProxyHeader with a header split across writes', () => {
  it.each([
    ['v1', Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n'), '2001:db8::7'],
    ['v2', v2(PROXY, TCP4, [...V4_BLOCK, 0x04, 0x00, 0x01, 0]), '203.0.113.7'],
  ])('reads a %s header that arrives one byte per write, and loses none of the bytes after it', async (_name, header, peer) => {
    const reader = await startReader(5_000);
    const socket = await open(reader.port);
    await trickle(socket, Buffer.concat([header, Buffer.from(REQUEST)]));
    const seen = await outcomeOf(reader, 0);
    expect(seen.outcome).toMatchObject({ ok: true, peer });
    // Whatever of the request was read with the header's last byte is in rest; the remainder waited in the socket.
    const rest = seen.outcome?.ok ? seen.outcome.rest : Buffer.alloc(0);
    const received = (): string => Buffer.concat([rest, ...seen.after]).toString('latin1');
    await until(() => received().length >= REQUEST.length, 'the request after the header');
    expect(received()).toBe(REQUEST);
  });
});

describe('readProxyHeader refuses what is no header', () => {
  it.each([
    ['a plain HTTP request', REQUEST],
    ['the first byte of a plain HTTP request', 'G'],
    ['a TLS ClientHello', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00])],
    ['a near miss of the v1 signature', 'PROXY\r\n'],
    ['a v1 protocol that cannot become TCP4, TCP6 or UNKNOWN', 'PROXY TCP5'],
    ['a near miss of the v2 signature', Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x55])],
  ])('as malformed at once: %s', async (_name, bytes) => {
    const reader = await startReader(10_000);
    const seen = await exchange(reader, bytes);
    expectRefused(seen, 'malformed');
    expect(seen.elapsedMs).toBeLessThan(1_000);
  });

  it('as malformed once a v1 line passes 107 bytes without CRLF, without waiting for more', async () => {
    const reader = await startReader(10_000);
    const seen = await exchange(reader, `PROXY TCP4 203.0.113.7 10.0.0.1 51234 ${'4'.repeat(107 - 38)}`);
    expectRefused(seen, 'malformed');
    expect(seen.elapsedMs).toBeLessThan(1_000);
  });

  it.each([
    ['an IPv4 octet over 255', 'PROXY TCP4 256.0.113.7 10.0.0.1 51234 443\r\n'],
    ['an IPv4 octet with a leading zero', 'PROXY TCP4 203.0.113.07 10.0.0.1 51234 443\r\n'],
    ['a bad destination address', 'PROXY TCP4 203.0.113.7 10.0.0 51234 443\r\n'],
    ['an IPv6 address on a TCP4 line', 'PROXY TCP4 2001:db8::7 10.0.0.1 51234 443\r\n'],
    ['an IPv4 address on a TCP6 line', 'PROXY TCP6 203.0.113.7 2001:db8::1 51234 443\r\n'],
    ['an IPv6 address with a zone', 'PROXY TCP6 fe80::7%eth0 2001:db8::1 51234 443\r\n'],
    ['a source port of 70000', 'PROXY TCP4 203.0.113.7 10.0.0.1 70000 443\r\n'],
    ['a destination port of 65536', 'PROXY TCP4 203.0.113.7 10.0.0.1 51234 65536\r\n'],
    ['a negative port', 'PROXY TCP4 203.0.113.7 10.0.0.1 -1 443\r\n'],
    ['a missing port', 'PROXY TCP4 203.0.113.7 10.0.0.1 51234\r\n'],
    ['two spaces between fields', 'PROXY TCP4  203.0.113.7 10.0.0.1 51234 443\r\n'],
    ['a bare LF', 'PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\n'],
    ['a CR without LF', 'PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\rGET'],
  ])('as malformed: a v1 line with %s', async (_name, header) => {
    const reader = await startReader(10_000);
    expectRefused(await exchange(reader, header), 'malformed');
  });

  it.each([
    ['version 1', v2(0x11, TCP4, V4_BLOCK)],
    ['version 3', v2(0x31, TCP4, V4_BLOCK)],
    ['an unknown command', v2(0x22, TCP4, V4_BLOCK)],
    ['an unknown family', v2(PROXY, 0x41, V4_BLOCK)],
    ['an unknown transport', v2(PROXY, 0x13, V4_BLOCK)],
    ['an IPv4 block shorter than 12 bytes', v2(PROXY, TCP4, V4_BLOCK.slice(0, 8))],
    ['an IPv6 length that only fits IPv4', v2(PROXY, TCP6, V4_BLOCK)],
    ['a UNIX block shorter than 216 bytes', v2(PROXY, 0x31, V6_BLOCK)],
  ])('as malformed: a v2 header with %s', async (_name, header) => {
    const reader = await startReader(10_000);
    const seen = await exchange(reader, header);
    expectRefused(seen, 'malformed');
    expect(seen.elapsedMs).toBeLessThan(1_000);
  });

  it('as malformed at once: a v2 length over 4096, before its bytes arrive', async () => {
    const reader = await startReader(10_000);
    expectHeader(await exchange(reader, v2(PROXY, TCP4, [...V4_BLOCK, ...new Array<number>(4096 - 12).fill(0)])), '203.0.113.7');
    const seen = await exchange(reader, v2(PROXY, TCP4, V4_BLOCK, 4097));
    expectRefused(seen, 'malformed');
    expect(seen.elapsedMs).toBeLessThan(1_000);
  });
});

describe('readProxyHeader gives up on a stalled or vanished client', () => {
  it('times out when half a header arrives and nothing more', async () => {
    const reader = await startReader(150);
    const socket = await open(reader.port);
    socket.write(v2(PROXY, TCP4, V4_BLOCK).subarray(0, 20));
    const seen = await outcomeOf(reader, 0);
    expectRefused(seen, 'timeout');
    expect(seen.elapsedMs).toBeGreaterThanOrEqual(140);
  });

  it('times out on a connection that sends nothing', async () => {
    const reader = await startReader(150);
    await open(reader.port);
    expectRefused(await outcomeOf(reader, 0), 'timeout');
  });

  it.each([
    ['ends its side', (socket: Socket) => socket.end()],
    ['is destroyed', (socket: Socket) => socket.destroy()],
    ['resets the connection', (socket: Socket) => socket.resetAndDestroy()],
  ])('reports closed when the client %s mid-header', async (_name, leave) => {
    const reader = await startReader(10_000);
    const socket = await open(reader.port);
    socket.write('PROXY TCP4 203.0.1');
    await until(() => reader.seen.length === 1, 'the connection');
    leave(socket);
    const seen = await outcomeOf(reader, 0);
    expectRefused(seen, 'closed');
    expect(seen.elapsedMs).toBeLessThan(5_000);
  });

  it('answers once: neither its timer nor the client leaving afterwards calls done again', async () => {
    const reader = await startReader(100);
    const socket = await open(reader.port);
    socket.write('PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n');
    const seen = await outcomeOf(reader, 0);
    expectHeader(seen, '203.0.113.7');
    socket.end(REQUEST);
    await until(() => seen.closed, 'the server side to close');
    // Outlive the reader's timeout before counting.
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(seen.calls).toBe(1);
    expect(Buffer.concat(seen.after).toString('latin1')).toBe(REQUEST);
  });
});
