// The client's side of a WebSocket opening handshake (RFC 6455 §4.1), checked before anything reaches an upstream,
// and the Sec-WebSocket-Accept that the upstream's 101 must carry for it (§4.2.2).
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { hasDuplicateHost } from './request-facts.ts';

const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Exactly 16 bytes in base64: 22 characters, then the padding. */
const KEY = /^[A-Za-z0-9+/]{22}==$/;

/** A comma-separated list holding the `upgrade` token. */
const UPGRADE_TOKEN = /(?:^|,)[ \t]*upgrade[ \t]*(?:,|$)/i;

/** Sent with every handshake refusal: RFC 6455 §4.2.2 asks for it when the version is the problem. */
export const SUPPORTED_VERSION_HEADER = 'sec-websocket-version: 13\r\n';

/**
 * Why this upgrade request may not be forwarded, or null when it is a WebSocket handshake. Anything else would be
 * spliced to an upstream as raw bytes, past every HTTP rule we enforce: other protocols (h2c), and a request with a
 * body, whose bytes the upstream would read as the start of the next request.
 */
export function handshakeProblem(req: IncomingMessage): string | null {
  const headers = req.headers;
  if (headers.upgrade?.toLowerCase() !== 'websocket') return 'Only WebSocket upgrades are proxied.';
  if (req.method !== 'GET') return 'A WebSocket handshake must be a GET request.';
  if (req.httpVersionMajor !== 1 || req.httpVersionMinor !== 1) return 'A WebSocket handshake must be HTTP/1.1.';
  if (headers.connection === undefined || !UPGRADE_TOKEN.test(headers.connection)) return 'A WebSocket handshake must send Connection: Upgrade.';
  // RFC 9112 §3.2, and Appwrite routes by Host.
  if (headers.host === undefined || hasDuplicateHost(req)) return 'A WebSocket handshake must send exactly one Host.';
  const key = headers['sec-websocket-key'];
  if (key === undefined || !KEY.test(key)) return 'Sec-WebSocket-Key must be 16 bytes in base64.';
  if (headers['sec-websocket-version'] !== '13') return 'Only Sec-WebSocket-Version 13 is supported.';
  const length = headers['content-length'];
  if ((length !== undefined && length !== '0') || headers['transfer-encoding'] !== undefined) return 'A WebSocket handshake cannot carry a body.';
  return null;
}

/** The Sec-WebSocket-Accept that proves an upstream read this request's key. */
export function acceptFor(key: string): string {
  return createHash('sha1').update(key + ACCEPT_GUID).digest('base64');
}
