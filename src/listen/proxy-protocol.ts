// Reads the PROXY protocol header (v1 text or v2 binary) that a trusted load balancer puts before a connection's
// bytes: exactly the header is consumed, the client address it names is reported, and the socket is left paused.
import type { Socket } from 'node:net';
import { canonicalIp } from '../geo/cidr.ts';

/** Set by the listener on a socket that arrived with a PROXY header: the client address it carried (canonical: IPv4-mapped IPv6 becomes IPv4). */
export const PROXIED_PEER: unique symbol = Symbol('meridian.proxiedPeer');

export type ProxyHeaderOutcome =
  /**
   * peer null: a LOCAL command (the balancer's own health check) or an UNKNOWN / UNSPEC address, so the socket's own
   * address stands. rest: bytes that came after the header in the same reads (possibly empty), for the caller to re-inject.
   */
  | { readonly ok: true; readonly peer: string | null; readonly rest: Buffer }
  | { readonly ok: false; readonly reason: 'malformed' | 'timeout' | 'closed' };

const MALFORMED: ProxyHeaderOutcome = Object.freeze({ ok: false, reason: 'malformed' });
const TIMEOUT: ProxyHeaderOutcome = Object.freeze({ ok: false, reason: 'timeout' });
const CLOSED: ProxyHeaderOutcome = Object.freeze({ ok: false, reason: 'closed' });

const CR = 0x0d;
const LF = 0x0a;
const SPACE = 0x20;

const V1_SIGNATURE = Buffer.from('PROXY ', 'latin1');
/** The spec's longest v1 line, CRLF included: a reader that waits longer is waiting on something that is not v1. */
const V1_MAX_LINE = 107;
const V1_PROTOCOLS = ['TCP4', 'TCP6', 'UNKNOWN'];

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED = 16;
/** Address block plus TLVs. The spec allows 64 KiB, but balancers send a few hundred bytes at most; more is refused. */
const V2_MAX_LENGTH = 4096;
const V2_LOCAL = 0;
const V2_PROXY = 1;
const V2_TCP4 = 0x11;
const V2_TCP6 = 0x21;
/** Smallest address block for each family (UNSPEC, INET, INET6, UNIX) under the PROXY command. */
const V2_FAMILY_LENGTH = [0, 12, 36, 216];

/** A complete header: the peer it names and how many bytes it took. */
interface Header {
  readonly peer: string | null;
  readonly length: number;
}

/** What the bytes so far say: a complete header, or 'more' (a header could still follow), or 'malformed'. */
type Verdict = Header | 'more' | 'malformed';

/** Per-socket state, kept on the socket itself so the shared listeners below need no closure per connection. */
interface Reading {
  buffered: Buffer | null;
  readonly timer: NodeJS.Timeout;
  readonly done: (outcome: ProxyHeaderOutcome) => void;
}

const READING = Symbol('meridian.proxyHeaderReading');
type ReadingSocket = Socket & { [READING]?: Reading };

/**
 * Consumes one PROXY header from `socket` and calls `done` exactly once: with the header's peer and the bytes after it,
 * or with why there is none. By then this reader's listeners and timer are gone and the socket is paused; it is never
 * destroyed here, since the caller counts and closes refused connections.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number, done: (outcome: ProxyHeaderOutcome) => void): void {
  const reading = socket as ReadingSocket;
  if (reading.destroyed) {
    reading.pause();
    process.nextTick(done, CLOSED);
    return;
  }
  const timer = setTimeout(onTimeout, timeoutMs, reading);
  timer.unref();
  reading[READING] = { buffered: null, timer, done };
  reading.on('data', onData);
  reading.on('end', onGone);
  reading.on('error', onGone);
  reading.on('close', onGone);
}

function onData(this: ReadingSocket, chunk: Buffer): void {
  const state = this[READING];
  if (state === undefined) return;
  const bytes = state.buffered === null ? chunk : Buffer.concat([state.buffered, chunk]);
  const verdict = examine(bytes);
  if (verdict === 'more') {
    state.buffered = bytes;
  } else if (verdict === 'malformed') {
    finish(this, MALFORMED);
  } else {
    finish(this, { ok: true, peer: verdict.peer, rest: bytes.subarray(verdict.length) });
  }
}

function onGone(this: ReadingSocket): void {
  finish(this, CLOSED);
}

function onTimeout(socket: ReadingSocket): void {
  finish(socket, TIMEOUT);
}

function finish(socket: ReadingSocket, outcome: ProxyHeaderOutcome): void {
  const state = socket[READING];
  if (state === undefined) return;
  delete socket[READING];
  // Paused before the data listener goes, so bytes that arrive meanwhile wait in the stream for the caller.
  socket.pause();
  socket.off('data', onData);
  socket.off('end', onGone);
  socket.off('error', onGone);
  socket.off('close', onGone);
  clearTimeout(state.timer);
  state.done(outcome);
}

/** Judges the bytes received so far; decides as soon as they cannot begin either version. */
function examine(bytes: Buffer): Verdict {
  if (bytes.length === 0) return 'more';
  if (bytes[0] === V1_SIGNATURE[0]) return startsLike(bytes, V1_SIGNATURE) ? examineV1(bytes) : 'malformed';
  if (bytes[0] === V2_SIGNATURE[0]) return startsLike(bytes, V2_SIGNATURE) ? examineV2(bytes) : 'malformed';
  return 'malformed';
}

/** Whether the bytes so far agree with `signature` for as far as both go. */
function startsLike(bytes: Buffer, signature: Buffer): boolean {
  const end = Math.min(bytes.length, signature.length);
  for (let i = 0; i < end; i++) if (bytes[i] !== signature[i]) return false;
  return true;
}

function examineV1(bytes: Buffer): Verdict {
  if (bytes.length <= V1_SIGNATURE.length) return 'more';
  if (!protocolMayFollow(bytes)) return 'malformed';
  // A CR past this index would put the line's LF beyond the 107-byte limit.
  const lastCr = V1_MAX_LINE - 2;
  const scanEnd = Math.min(bytes.length, lastCr + 1);
  for (let i = V1_SIGNATURE.length; i < scanEnd; i++) {
    const c = bytes[i];
    if (c === CR) {
      if (i + 1 === bytes.length) return 'more';
      if (bytes[i + 1] !== LF) return 'malformed';
      return parseV1Line(bytes.toString('latin1', V1_SIGNATURE.length, i), i + 2);
    }
    // The line is printable ASCII; anything else (an HTTP body, binary) shows early that this is no header.
    if (c < SPACE || c > 0x7e) return 'malformed';
  }
  return bytes.length > lastCr ? 'malformed' : 'more';
}

/** Whether the word after `PROXY ` (as far as it has arrived) can still become TCP4, TCP6 or UNKNOWN. */
function protocolMayFollow(bytes: Buffer): boolean {
  const start = V1_SIGNATURE.length;
  let end = start;
  while (end < bytes.length && end - start < 8 && bytes[end] !== SPACE && bytes[end] !== CR) end++;
  const complete = end < bytes.length;
  const word = bytes.toString('latin1', start, end);
  return V1_PROTOCOLS.some((p) => (complete ? p === word : p.startsWith(word)));
}

/** `TCP4 src dst sport dport`, `TCP6 ...`, or `UNKNOWN` followed by anything (which the spec says to ignore). */
function parseV1Line(line: string, length: number): Verdict {
  const fields = line.split(' ');
  if (fields[0] === 'UNKNOWN') return { peer: null, length };
  if (fields.length !== 5) return 'malformed';
  const [protocol, source, destination, sourcePort, destinationPort] = fields;
  const six = protocol === 'TCP6';
  if (!six && protocol !== 'TCP4') return 'malformed';
  const peer = v1Address(source, six);
  if (peer === null || v1Address(destination, six) === null) return 'malformed';
  if (!isPort(sourcePort) || !isPort(destinationPort)) return 'malformed';
  return { peer, length };
}

/** The canonical form of a v1 address of the named family, or null; a zone (`%eth0`) has no place in a header. */
function v1Address(text: string, six: boolean): string | null {
  if (six !== text.includes(':') || text.includes('%')) return null;
  return canonicalIp(text);
}

function isPort(text: string): boolean {
  return /^[0-9]{1,5}$/.test(text) && Number(text) <= 65535;
}

function examineV2(bytes: Buffer): Verdict {
  if (bytes.length > 12) {
    const versionCommand = bytes[12];
    if (versionCommand >> 4 !== 2 || (versionCommand & 0x0f) > V2_PROXY) return 'malformed';
  }
  if (bytes.length > 13) {
    // Family UNSPEC, INET, INET6 or UNIX; transport UNSPEC, STREAM or DGRAM.
    const familyTransport = bytes[13];
    if (familyTransport >> 4 > 3 || (familyTransport & 0x0f) > 2) return 'malformed';
  }
  if (bytes.length < V2_FIXED) return 'more';
  const command = bytes[12] & 0x0f;
  const familyTransport = bytes[13];
  const length = bytes.readUInt16BE(14);
  if (length > V2_MAX_LENGTH) return 'malformed';
  // LOCAL's address block is to be ignored whatever it holds; PROXY's must fit its family.
  if (command === V2_PROXY && length < V2_FAMILY_LENGTH[familyTransport >> 4]) return 'malformed';
  const total = V2_FIXED + length;
  if (bytes.length < total) return 'more';
  if (command === V2_LOCAL) return { peer: null, length: total };
  // Only TCP over IPv4 or IPv6 names a client we can use; UNIX, UNSPEC and datagram addresses leave the socket's own.
  if (familyTransport === V2_TCP4) return { peer: v2Ipv4(bytes, V2_FIXED), length: total };
  if (familyTransport === V2_TCP6) return { peer: v2Ipv6(bytes, V2_FIXED), length: total };
  return { peer: null, length: total };
}

function v2Ipv4(bytes: Buffer, at: number): string {
  return `${bytes[at]}.${bytes[at + 1]}.${bytes[at + 2]}.${bytes[at + 3]}`;
}

function v2Ipv6(bytes: Buffer, at: number): string | null {
  let text = bytes.readUInt16BE(at).toString(16);
  for (let i = 2; i < 16; i += 2) text += ':' + bytes.readUInt16BE(at + i).toString(16);
  // Eight full groups always parse; canonicalIp compresses them and turns a mapped address into IPv4.
  return canonicalIp(text);
}
