// Malformed downstream requests: answered here with a JSON error, never forwarded upstream.
import type { Duplex } from 'node:stream';
import { KINDS, type ProxyErrorKind } from './errors.ts';
import { MERIDIAN_VERSION } from '../version.ts';
import { CURRENT_EXCHANGE, type ExchangeSocket } from './exchange.ts';

const REASONS: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' };

function kindFor(code: string | undefined): ProxyErrorKind {
  if (code === 'HPE_HEADER_OVERFLOW') return KINDS.headersTooLarge;
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return KINDS.requestTimeout;
  return KINDS.badRequest;
}

/** Pre-rendered at load: these are answers to garbage, so they must cost nothing to produce. */
const RESPONSES = new Map<ProxyErrorKind, string>();
for (const kind of [KINDS.badRequest, KINDS.requestTimeout, KINDS.headersTooLarge]) {
  const body = JSON.stringify({ message: kind.message, code: kind.status, type: kind.type, version: MERIDIAN_VERSION });
  RESPONSES.set(
    kind,
    `HTTP/1.1 ${kind.status} ${REASONS[kind.status]}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `cache-control: no-store\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** Sockets already being answered: the dead parser reports the same error again for every later packet. */
const rejecting = new WeakSet<Duplex>();

/** `clientError` listener: the parser rejected the request (bad line, CL/TE conflict, huge headers). */
export function rejectMalformed(err: Error & { code?: string }, socket: Duplex): void {
  if (rejecting.has(socket)) return;
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  rejecting.add(socket);
  const response = RESPONSES.get(kindFor(err.code));
  const owed = (socket as ExchangeSocket)[CURRENT_EXCHANGE];
  if (owed == null || !owed.req.complete) {
    // Nothing in flight, or the bad bytes are this request's own body: the 400 answers it, unless an answer already began.
    if (owed?.res.headersSent) socket.destroy();
    else socket.end(response);
    return;
  }
  // A pipelined request behind one still being answered: a 400 written now would be read as the answer to the earlier one.
  owed.res.once('close', () => {
    // Not writable means node is already closing the connection after that response (or it was cut).
    if (socket.writable) socket.end(response);
  });
}
