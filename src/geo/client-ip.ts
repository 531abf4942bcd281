// The client-ip phase: who the downstream client is, from the socket peer and, only behind trusted proxies,
// X-Forwarded-For. Everything left of the trusted hops is untrusted input, so parsing is lenient but never throws.
import { canonicalIp } from './cidr.ts';
import type { CidrSet } from './cidr.ts';

function isSpace(c: number): boolean {
  return c === 32 || c === 9;
}

function isPort(s: string, colon: number, end: number): boolean {
  if (colon + 1 === end || end - colon > 6) return false;
  for (let i = colon + 1; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** Canonical address of a forwarded entry in s[start, end): trims blanks, `1.2.3.4:80`, `[2001:db8::1]:443`, IPv4-mapped. */
function normalizeEntry(s: string, start: number, end: number): string | null {
  while (start < end && isSpace(s.charCodeAt(start))) start++;
  while (end > start && isSpace(s.charCodeAt(end - 1))) end--;
  if (s.charCodeAt(start) === 91) {
    const close = s.indexOf(']', start);
    if (close === -1 || close >= end || (close + 1 < end && (s.charCodeAt(close + 1) !== 58 || !isPort(s, close + 1, end)))) {
      return null;
    }
    return canonicalIp(s, start + 1, close);
  }
  const colon = s.indexOf(':', start);
  // Exactly one colon can only be IPv4 with a port; IPv6 always has two or more.
  if (colon !== -1 && colon < end) {
    const second = s.indexOf(':', colon + 1);
    if (second === -1 || second >= end) return isPort(s, colon, end) ? canonicalIp(s, start, colon) : null;
  }
  return canonicalIp(s, start, end);
}

/** The canonical form of an address as proxies write it (blanks, port, brackets, IPv4-mapped), or null if it is none. */
export function normalizeIp(s: string): string | null {
  return normalizeEntry(s, 0, s.length);
}

/**
 * The client address: the socket peer, unless the peer is a trusted proxy. Then `singleHeaderValue` (such as
 * CF-Connecting-IP) when it is a valid address, else X-Forwarded-For walked right to left past the trusted hops:
 * the first untrusted hop is the client. A malformed entry stops the walk at the trusted hop that appended it; when every
 * hop is trusted, the leftmost one wins. Empty only when the peer is unknown (a socket that already closed).
 */
export function resolveClientIp(
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
  trusted: CidrSet,
  singleHeaderValue?: string,
): string {
  const client = peer === undefined ? null : canonicalIp(peer);
  if (client === null) return '';
  if (!trusted.has(client)) return client;
  if (singleHeaderValue !== undefined) {
    const single = normalizeIp(singleHeaderValue);
    if (single !== null) return single;
  }
  if (forwardedFor === undefined) return client;
  const header = typeof forwardedFor === 'string' ? forwardedFor : forwardedFor.join(',');
  let last = client;
  for (let end = header.length; end !== -1; ) {
    const comma = end === 0 ? -1 : header.lastIndexOf(',', end - 1);
    const hop = normalizeEntry(header, comma + 1, end);
    if (hop === null) return last;
    if (!trusted.has(hop)) return hop;
    last = hop;
    end = comma;
  }
  return last;
}
