// The client-ip phase and the request facts that HTTP exchanges and WebSocket tunnels both derive the same way.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { resolveClientIp } from '../geo/client-ip.ts';
import type { DataPlane } from './plane.ts';
import { PROXIED_PEER } from '../listen/proxy-protocol.ts';

/** An incoming `X-Request-Id` is kept when it is a sane token; anything else is replaced. */
const MAX_REQUEST_ID_LENGTH = 200;

/** What the client-ip phase reads and fills in. */
export interface ClientFacts {
  readonly req: IncomingMessage;
  readonly peerIp: string;
  trustedPeer: boolean;
  clientIp: string;
  proto: string;
  forwardedHost: string | undefined;
}

/**
 * The socket peer in canonical form: IPv4-mapped IPv6 (`::ffff:1.2.3.4`) becomes plain IPv4. On a listener that takes
 * the PROXY protocol, the peer is the client its header named (the listener checked that the load balancer may).
 */
export function peerAddress(socket: Socket): string {
  const address = (socket as Socket & { [PROXIED_PEER]?: string | null })[PROXIED_PEER] ?? socket.remoteAddress ?? '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export function requestIdOf(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id'];
  return typeof incoming === 'string' && incoming.length > 0 && incoming.length <= MAX_REQUEST_ID_LENGTH ? incoming : nextRequestId();
}

/**
 * A generated id is shaped like a version-4 UUID: the first 24 characters of a random one per thread (drawn again every
 * 2^48 ids), then a 48-bit counter in hex. Unique within the thread, and across threads and instances as far as their
 * 74 random bits go; a fresh UUID per request would format 16 random bytes where this formats one number.
 * The counter's top 40 bits are formatted once per 256 ids into `idStem` (with the random part), and the low byte comes
 * from a table, so an id costs one concatenation instead of a number formatted, padded and joined.
 */
const HEX_BYTE = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
let idPrefix = '';
let idStem = '';
let idCounter = 2 ** 48;

export function nextRequestId(): string {
  if (idCounter >= 2 ** 48) {
    idPrefix = randomUUID().slice(0, 24);
    idCounter = 0;
  }
  const low = idCounter % 256;
  if (low === 0) idStem = idPrefix + (idCounter / 256).toString(16).padStart(10, '0');
  idCounter++;
  return idStem + HEX_BYTE[low];
}

/**
 * RFC 9112 §3.2: a request with more than one Host is malformed. Node keeps only the first in `req.headers`, and a
 * proxy in front that read the other would disagree with us about the site, so the raw list is checked: names of
 * length 4, compared without allocating.
 */
export function hasDuplicateHost(req: IncomingMessage): boolean {
  const raw = req.rawHeaders;
  let seen = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    // `| 32` folds ASCII case: for these four letters only the upper- and lower-case byte match.
    if (
      name.length === 4 &&
      (name.charCodeAt(0) | 32) === 104 &&
      (name.charCodeAt(1) | 32) === 111 &&
      (name.charCodeAt(2) | 32) === 115 &&
      (name.charCodeAt(3) | 32) === 116
    ) {
      if (seen) return true;
      seen = true;
    }
  }
  return false;
}

/**
 * client-ip phase. Only a trusted peer may speak for the client (X-Forwarded-For, the single client IP header)
 * and for the original scheme and host; anyone else gets its own socket address, and its client-address headers
 * are dropped on the way up (`trustedPeer` stays false).
 */
export function identifyClient(facts: ClientFacts, plane: DataPlane): void {
  const { trustedProxies, clientIpHeader } = plane.config.geo;
  if (!trustedProxies.has(facts.peerIp)) return;
  facts.trustedPeer = true;
  const headers = facts.req.headers;
  const single = clientIpHeader === undefined ? undefined : headers[clientIpHeader];
  facts.clientIp = resolveClientIp(facts.peerIp, headers['x-forwarded-for'], trustedProxies, typeof single === 'string' ? single : undefined);
  if (headers['x-forwarded-proto'] === 'https') facts.proto = 'https';
  const forwardedHost = headers['x-forwarded-host'];
  if (typeof forwardedHost === 'string' && forwardedHost !== '') facts.forwardedHost = forwardedHost;
}

/** `X-Appwrite-Project`, else the `project` query parameter (realtime and downloads), looked up only if projects have affinity. */
export function projectOf(req: IncomingMessage, plane: DataPlane): string | undefined {
  const header = req.headers['x-appwrite-project'];
  if (typeof header === 'string') return header;
  if (plane.config.routing.projects.size === 0) return undefined;
  const url = req.url ?? '';
  const query = url.indexOf('?');
  return query === -1 ? undefined : (new URLSearchParams(url.slice(query + 1)).get('project') ?? undefined);
}
