// The admin plane's optional bearer token: header for every client, a cookie for the dashboard in a browser.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';
import { ADMIN_ERRORS, adminError } from './errors.ts';

/** Liveness and readiness stay open: GeoDNS and orchestrators probe them without credentials. */
export const OPEN_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz']);
export const ADMIN_COOKIE = 'meridian_admin';

const BEARER = /^Bearer +(\S+) *$/i;

/** Equal-length digests first, so neither the comparison's time nor its early exit tells the token's length. */
export function tokenMatches(given: string, token: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b);
}

/**
 * What the cookie holds: derived from the token, never the token itself. Cookies are scoped by host, not port, so a
 * browser may send this one to the data plane on the same host, and from there upstream; it must not carry the
 * credential that `POST /reload` takes.
 */
export function cookieValue(token: string): string {
  return createHmac('sha256', token).update('meridian admin dashboard cookie').digest('base64url');
}

/**
 * When `token()` gives a token, every route but the open ones needs `Authorization: Bearer <token>`. A browser may
 * instead open `/?token=<token>` once: that sets an HttpOnly SameSite=Strict cookie (see `cookieValue`) and redirects to the bare page,
 * so the token leaves the address bar and history. The cookie is honoured for GET and HEAD only, so `POST /reload`
 * always needs the header. The token is read per request, so a reload that changes it takes effect at once.
 */
export function requireToken(token: () => string | undefined): MiddlewareHandler {
  return async (c, next) => {
    const expected = token();
    if (expected === undefined || OPEN_PATHS.has(c.req.path)) return next();
    const header = c.req.header('authorization');
    if (header !== undefined) {
      const match = BEARER.exec(header);
      if (match !== null && tokenMatches(match[1], expected)) return next();
      return unauthorized(c, 'the bearer token is not valid');
    }
    const readOnly = c.req.method === 'GET' || c.req.method === 'HEAD';
    const cookie = readOnly ? getCookie(c, ADMIN_COOKIE) : undefined;
    if (cookie !== undefined && tokenMatches(cookie, cookieValue(expected))) return next();
    const query = c.req.path === '/' && readOnly ? c.req.query('token') : undefined;
    if (query !== undefined && tokenMatches(query, expected)) {
      setCookie(c, ADMIN_COOKIE, cookieValue(expected), { httpOnly: true, sameSite: 'Strict', path: '/' });
      c.header('cache-control', 'no-store');
      return c.redirect('./', 303);
    }
    return unauthorized(c, 'this admin endpoint needs a token: send Authorization: Bearer <token>, or open /?token=<token> once in a browser');
  };
}

function unauthorized(c: Parameters<MiddlewareHandler>[0], message: string): Response {
  c.header('www-authenticate', 'Bearer realm="meridian-admin"');
  return adminError(c, 401, ADMIN_ERRORS.unauthorized, message);
}
