// The upstream's answer to a forwarded WebSocket handshake, read off the raw socket. Its head is parsed here, bounded
// and strictly, because what follows it is either a tunnel (101) or one HTTP response that we relay and then close.
import { STATUS_CODES } from './node-http.ts';
import { namedByConnection } from './headers.ts';

export interface AnswerHead {
  readonly status: number;
  readonly reason: string;
  /** Lower-case name, value, name, value, … in the order received. */
  readonly headers: readonly string[];
  /** Body bytes that follow the head, or -1 for everything until the upstream closes. */
  readonly bodyLength: number;
}

const HEAD_END = '\r\n\r\n';
const STATUS_LINE = /^HTTP\/1\.[01] ([1-5]\d\d)(?: (.*))?$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Control characters other than HTAB, CR and LF included: never valid in a head line (RFC 9110 §5.5). */
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;
const LENGTH = /^\d{1,15}$/;

/** Connection-scoped response headers. The body's framing stays: it is relayed byte for byte as the upstream framed it. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade']);

/** Offset just past the blank line that ends the head in `buffer`, searching from `from`; -1 while incomplete. */
export function headEnd(buffer: Buffer, from: number): number {
  const at = buffer.indexOf(HEAD_END, from, 'latin1');
  return at === -1 ? -1 : at + HEAD_END.length;
}

/** The head in `text` (without its blank line), or null when it is not a well-formed HTTP/1.x response head. */
export function parseAnswerHead(text: string): AnswerHead | null {
  const lines = text.split('\r\n');
  const status = STATUS_LINE.exec(lines[0]);
  if (status === null || CONTROL.test(lines[0])) return null;
  const headers: string[] = [];
  let length: string | undefined;
  let chunked = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(':');
    // A bare LF, a NUL, obs-fold or a name that is not a token could be read differently by the client.
    if (colon <= 0 || CONTROL.test(line)) return null;
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return null;
    const lower = name.toLowerCase();
    const value = trimWhitespace(line, colon + 1);
    if (lower === 'content-length') {
      if (!LENGTH.test(value) || (length !== undefined && length !== value)) return null;
      length = value;
    } else if (lower === 'transfer-encoding') {
      chunked = true;
    }
    headers.push(lower, value);
  }
  // Both at once is how responses get split differently by two parsers (RFC 9112 §6.3).
  if (chunked && length !== undefined) return null;
  const code = Number(status[1]);
  const empty = code < 200 || code === 204 || code === 304;
  return {
    status: code,
    reason: status[2] ?? '',
    headers,
    bodyLength: empty ? 0 : length !== undefined ? Number(length) : -1,
  };
}

/** The first value of a header, by lower-case name. */
export function headerValue(head: AnswerHead, name: string): string | undefined {
  const headers = head.headers;
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}

/** The head relayed to the client for an answer other than 101: hop-by-hop headers dropped, and the connection closing. */
export function relayedHead(head: AnswerHead, extra: readonly string[] | null): string {
  const named = namedByConnection(headerValue(head, 'connection'));
  let text = `HTTP/1.1 ${head.status} ${head.reason || STATUS_CODES[head.status] || ''}\r\n`;
  const headers = head.headers;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i];
    if (HOP_BY_HOP.has(name) || name.startsWith('proxy-')) continue;
    if (named !== null && named.has(name) && name !== 'content-length' && name !== 'transfer-encoding') continue;
    text += `${name}: ${headers[i + 1]}\r\n`;
  }
  if (extra !== null) for (let i = 0; i < extra.length; i += 2) text += `${extra[i]}: ${extra[i + 1]}\r\n`;
  return `${text}connection: close\r\n\r\n`;
}

function trimWhitespace(line: string, from: number): string {
  let start = from;
  let end = line.length;
  while (start < end && (line[start] === ' ' || line[start] === '\t')) start++;
  while (end > start && (line[end - 1] === ' ' || line[end - 1] === '\t')) end--;
  return line.slice(start, end);
}
