// Header rewriting in both directions: hop-by-hop removal, forwarding headers, routing headers.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/**
 * Headers that describe one connection, never the message (RFC 9110 §7.6.1), plus `expect`:
 * the 100-continue handshake is answered by our own server and undici refuses to send it.
 * `host` is handled separately: it is kept, and undici must see it once.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
]);

/**
 * Headers we always set ourselves on the way up, so a client cannot forge them. They are skipped before the names
 * `Connection` lists are looked at and added after the walk, so `Connection: X-Forwarded-For` cannot remove them.
 */
const OWN_UPSTREAM = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-request-id']);

export interface ForwardingFacts {
  readonly clientIp: string;
  readonly peerIp: string;
  /** Set by the client-ip phase: only a trusted proxy may pass client-address headers on. */
  readonly trustedPeer: boolean;
  /** Compiled once per config (`geo.clientAddressHeaders`): the names a peer that is not trusted may not send upstream. */
  readonly clientAddressHeaders: ReadonlySet<string>;
  readonly requestId: string;
  readonly proto: string;
  readonly forwardedHost: string | undefined;
  readonly appendForwardedFor: boolean;
}

/**
 * Extra connection-scoped names listed in `Connection` (e.g. `Connection: close, x-foo`).
 * The common values `keep-alive` and `close` name nothing else, so they cost no allocation.
 */
export function namedByConnection(connection: string | string[] | undefined): Set<string> | null {
  if (connection === undefined) return null;
  const value = Array.isArray(connection) ? connection.join(',') : connection;
  const lower = value.toLowerCase();
  if (lower === 'keep-alive' || lower === 'close' || lower === 'upgrade') return null;
  const names = new Set<string>();
  for (const token of lower.split(',')) {
    const name = token.trim();
    if (name !== '' && name !== 'close' && name !== 'keep-alive') names.add(name);
  }
  return names.size > 0 ? names : null;
}

/**
 * The flat `[name, value, …]` list undici sends upstream. It walks node's parsed header object, whose names are
 * already lower-case (the request path needs that object anyway), rather than lower-casing every raw name again.
 * Appwrite can be told to trust any client-address header (`_APP_TRUSTED_HEADERS`), so those reach it only from
 * a trusted proxy, as sent; from anyone else they are dropped, since X-Forwarded-For already says who the client is.
 */
export function upstreamRequestHeaders(headers: IncomingHttpHeaders, facts: ForwardingFacts, keepUpgrade: boolean): string[] {
  const named = namedByConnection(headers.connection);
  const withheld = facts.trustedPeer ? null : facts.clientAddressHeaders;
  const out: string[] = [];
  for (const name in headers) {
    // HTTP/2 pseudo-headers (`:path`, `:authority`…) describe this hop; Host already carries the authority.
    if (OWN_UPSTREAM.has(name) || name.charCodeAt(0) === 0x3a /* : */) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (HOP_BY_HOP.has(name)) {
      // A WebSocket handshake needs both, even when Connection also names Upgrade (`keep-alive, Upgrade` from Firefox).
      // Connection is rewritten rather than passed on: whatever else the client listed was for this hop only, and
      // the next hop would drop Host or our X-Forwarded-* if the list named them.
      if (keepUpgrade && name === 'upgrade') out.push(name, String(value));
      else if (keepUpgrade && name === 'connection') out.push(name, 'upgrade');
      continue;
    }
    // Appwrite routes by Host, so no Connection list may take it away (undici would send the endpoint's own).
    if (named !== null && named.has(name) && name !== 'host') continue;
    if (withheld !== null && withheld.has(name)) continue;
    if (name.startsWith('proxy-')) continue;
    if (typeof value === 'string') out.push(name, value);
    else for (const item of value) out.push(name, item);
  }
  const incoming = headers['x-forwarded-for'];
  const forwardedFor = facts.appendForwardedFor && incoming !== undefined && incoming !== '' ? `${incoming}, ${facts.peerIp}` : facts.clientIp;
  out.push('x-forwarded-for', forwardedFor, 'x-forwarded-proto', facts.proto, 'x-request-id', facts.requestId);
  if (facts.forwardedHost !== undefined) out.push('x-forwarded-host', facts.forwardedHost);
  return out;
}

/**
 * Reused across responses: `writeHead` copies it synchronously, so one array serves every request. It is overwritten in
 * place and cut to length at the end, only when the length changed: `length = 0` first would drop its backing store, and
 * the pushes that followed allocated a new one for every response (about 200 bytes a request in node bench/alloc-profile.ts).
 */
const responseHeaderList: string[] = [];

/** The downstream header list for an upstream response, hop-by-hop headers removed. */
export function downstreamResponseHeaders(headers: IncomingHttpHeaders | OutgoingHttpHeaders, extra: readonly string[] | null): string[] {
  const named = namedByConnection(headers.connection as string | undefined);
  const out = responseHeaderList;
  let n = 0;
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || (named !== null && named.has(name)) || name.startsWith('proxy-')) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) {
      for (const item of value) {
        out[n++] = name;
        out[n++] = item;
      }
    } else {
      out[n++] = name;
      out[n++] = String(value);
    }
  }
  if (extra !== null) for (const item of extra) out[n++] = item;
  // Storing `length` is a call into the runtime (about 0.3 µs a response in the profile), and responses from one upstream
  // mostly carry the same number of headers.
  if (out.length !== n) out.length = n;
  return out;
}
