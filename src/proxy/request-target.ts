// The request-target forms of RFC 9112 §3.2, settled before routing: origin-form is proxied as sent, absolute-form is
// rewritten to origin-form with its authority as Host, `OPTIONS *` is answered by Meridian, and the rest is refused.
import type { IncomingMessage } from 'node:http';

/** What the server does with a request, by its target. */
export type TargetVerdict = 'proxy' | 'asterisk' | 'invalid';

/** `http://` or `https://`, any case: the only absolute forms an HTTP proxy in front of Appwrite serves. */
const ABSOLUTE = /^https?:\/\//i;
/**
 * host[:port], where host is a registered name, an IPv4 address or a bracketed IPv6 literal (RFC 3986 §3.2.2).
 * User info (`user@host`) is refused: RFC 9110 §4.2.4 deprecates it, and it hides the real host from a reader.
 */
const AUTHORITY = /^(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

/**
 * Settles the target of `req`, rewriting `req.url` and `req.headers.host` for absolute-form so that everything
 * downstream (host rules, forwarded headers, the upstream request) sees one consistent origin-form request.
 * Origin-form costs one character test: it is every request an HTTP client sends to a server.
 */
export function settleTarget(req: IncomingMessage): TargetVerdict {
  const url = req.url ?? '';
  if (url.charCodeAt(0) === 0x2f /* / */) return 'proxy';
  if (url === '*') return req.method === 'OPTIONS' ? 'asterisk' : 'invalid';
  const scheme = ABSOLUTE.exec(url);
  if (scheme === null || url.includes('#')) return 'invalid';
  const start = scheme[0].length;
  let end = start;
  while (end < url.length && url[end] !== '/' && url[end] !== '?') end++;
  const authority = url.slice(start, end);
  if (!AUTHORITY.test(authority)) return 'invalid';
  // RFC 9112 §3.2.2: the target's authority replaces any Host the client sent.
  req.headers.host = authority;
  const rest = url.slice(end);
  req.url = rest === '' ? '/' : rest.charCodeAt(0) === 0x3f /* ? */ ? `/${rest}` : rest;
  return 'proxy';
}

/** Whether `authority` is a plain host[:port] (no user info), the only form Meridian sends back in a Location. */
export function isAuthority(authority: string): boolean {
  return AUTHORITY.test(authority);
}

/** The answer to `OPTIONS *`: a question about this server, which Meridian answers itself rather than guess an upstream. */
export const ASTERISK_ALLOW = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS';
