// Keeps browsers from being used against the admin plane, token or not: a DNS-rebinding page may not read it (Host
// check) and a page on another site may not change it (Origin and Sec-Fetch-Site check).
import type { Context, MiddlewareHandler } from 'hono';
import type { AllowedHost } from '../config/types.ts';
import { OPEN_PATHS } from './auth.ts';
import { ADMIN_ERRORS, adminError } from './errors.ts';
import type { AdminBindings } from './server.ts';

/** A host and port as a URL parser gives them: lower case, IP literals canonical, IPv6 in brackets. */
export interface Authority {
  readonly name: string;
  readonly port: number;
}

/** The connection a request came on. */
export interface Listener {
  /** The address the client reached: the bound one, or under a wildcard bind the interface the connection arrived on. */
  readonly localAddress: string;
  readonly localPort: number;
  /** What the server is bound to: `0.0.0.0`, `::`, or one address. */
  readonly boundAddress: string;
}

/** These change nothing here, so a cross-site one does no harm (and the same-origin policy keeps its answer from the page). */
const READ_ONLY_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);
/** `none` is a navigation the user started (typed address, bookmark), not something a page did. */
const OWN_FETCH_SITES: ReadonlySet<string> = new Set(['same-origin', 'none']);
const WILDCARDS: ReadonlySet<string> = new Set(['0.0.0.0', '::']);
/** Only a name or IP literal and a port: userinfo, paths and percent-escapes never reach the URL parser. */
const HOST_HEADER = /^(?:\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::\d{1,5})?$/i;
const IPV4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/** A `Host` header, its port 80 when absent (the admin plane speaks plain HTTP); null when it is not one. */
export function parseHost(value: string): Authority | null {
  if (!HOST_HEADER.test(value)) return null;
  try {
    const url = new URL(`http://${value}`);
    return { name: url.hostname, port: url.port === '' ? 80 : Number(url.port) };
  } catch {
    return null;
  }
}

/** An `Origin` header, exactly as browsers serialize it; `null` (sandboxed frames, `file:`) and anything else give null. */
export function parseOrigin(value: string): Authority | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return null;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== value) return null;
  return { name: url.hostname, port: url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80 };
}

/** A socket address in the form `parseHost` gives: IPv4-mapped IPv6 as IPv4 (dual-stack `::`), IPv6 canonical in brackets. */
export function addressName(address: string): string {
  const mapped = IPV4_MAPPED.exec(address);
  if (mapped !== null) return mapped[1];
  return address.includes(':') ? new URL(`http://[${address}]`).hostname : address;
}

function isLoopback(name: string): boolean {
  return name === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(name);
}

/**
 * Whether `authority` names this admin listener. Its own address at its own port always does. `localhost` and the
 * loopback literals do when it listens on loopback or a wildcard: no page can point those names elsewhere, and a
 * container port mapping or SSH tunnel delivers them to a wildcard listener on another interface. Beyond that only
 * `admin.allowedHosts` names it. The port matters because another port on the same host (the data plane's, say)
 * is another origin, whose pages must not count as ours.
 */
export function namesListener(authority: Authority, listener: Listener | undefined, allowedHosts: readonly AllowedHost[]): boolean {
  for (const rule of allowedHosts) {
    const named = rule.subdomains ? authority.name.endsWith(`.${rule.name}`) : authority.name === rule.name;
    if (named && (rule.port === undefined || rule.port === authority.port)) return true;
  }
  if (listener === undefined || authority.port !== listener.localPort) return false;
  if (authority.name === addressName(listener.localAddress)) return true;
  const bound = addressName(listener.boundAddress);
  const loopbackNames = isLoopback(bound) || WILDCARDS.has(listener.boundAddress);
  return loopbackNames && (authority.name === 'localhost' || isLoopback(authority.name));
}

/** The connection, from @hono/node-server's bindings and `listenAdmin`'s; undefined outside a real server. */
function listenerOf(c: Context): Listener | undefined {
  const env = c.env as Partial<AdminBindings> | undefined;
  const socket = env?.incoming?.socket;
  if (socket?.localAddress === undefined || socket.localPort === undefined || env?.listener === undefined) return undefined;
  return { localAddress: socket.localAddress, localPort: socket.localPort, boundAddress: env.listener.address };
}

/**
 * Every route but `/healthz` and `/readyz` (GeoDNS checkers send whatever Host they were configured with, and
 * those two reveal nothing) answers only to a Host that names this listener, else 421. A request that may change
 * state is refused with 403 when the browser says it comes from another site: `Sec-Fetch-Site` other than
 * `same-origin` or `none`, or an `Origin` that does not name this listener. Clients that send neither header
 * (curl, Prometheus, scripts) are not browsers and pass. A request without `Host` passes too: browsers always
 * send one, and HTTP/1.0 probes may not. `allowedHosts()` is read per request, so a reload applies at once.
 */
export function originGuard(allowedHosts: () => readonly AllowedHost[]): MiddlewareHandler {
  return async (c, next) => {
    if (OPEN_PATHS.has(c.req.path)) return next();
    const allowed = allowedHosts();
    const listener = listenerOf(c);
    const host = c.req.header('host');
    if (host !== undefined) {
      const authority = parseHost(host);
      if (authority === null || !namesListener(authority, listener, allowed)) {
        const own = listener === undefined ? 'its own address' : `its own address, as in ${addressName(listener.localAddress)}:${listener.localPort}`;
        const message = `Host ${JSON.stringify(host)} does not name this admin listener, so the request is refused as possible DNS rebinding; use ${own}, or add the name to admin.allowedHosts`;
        return adminError(c, 421, ADMIN_ERRORS.misdirected, message);
      }
    }
    if (READ_ONLY_METHODS.has(c.req.method)) return next();
    const site = c.req.header('sec-fetch-site');
    if (site !== undefined && !OWN_FETCH_SITES.has(site)) {
      return crossSite(c, `the browser sent Sec-Fetch-Site: ${JSON.stringify(site)}`);
    }
    const origin = c.req.header('origin');
    if (origin !== undefined) {
      const authority = parseOrigin(origin);
      if (authority === null || !namesListener(authority, listener, allowed)) {
        return crossSite(c, `Origin ${JSON.stringify(origin)} is not this admin listener (a name of yours belongs in admin.allowedHosts)`);
      }
    }
    return next();
  };
}

function crossSite(c: Context, why: string): Response {
  return adminError(c, 403, ADMIN_ERRORS.crossSite, `a request from another site may not change the admin plane: ${why}; send it from the admin page itself, or without browser headers`);
}
