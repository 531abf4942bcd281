// The redirect listener: plain HTTP whose only answer is 308 to the same host, path and query over HTTPS, except
// ACME HTTP-01 challenges, which go to the backends so a certificate client behind Meridian keeps working.
import type { IncomingMessage } from 'node:http';
import type { ListenerSettings } from '../config/types.ts';
import type { MeridianResponse } from '../proxy/exchange.ts';
import { closeIfBodyArriving, KINDS, ProxyError, sendError } from '../proxy/errors.ts';
import { isAuthority, settleTarget } from '../proxy/request-target.ts';
import { requestIdOf } from '../proxy/request-facts.ts';

/**
 * An HTTP-01 challenge: GET or HEAD of one base64url token in the challenge folder (RFC 8555 §8.3). Nothing else
 * may pass: `…/acme-challenge/../../v1/account` would reach the API over plain HTTP through any proxy that normalises paths.
 */
const ACME_CHALLENGE = /^\/\.well-known\/acme-challenge\/[A-Za-z0-9_-]+$/;
const NO_HOST = 'A redirect to HTTPS needs the Host header (or an absolute request target) to name the site.';

export function redirectHandler(listener: ListenerSettings, proxy: (req: IncomingMessage, res: MeridianResponse) => void): (req: IncomingMessage, res: MeridianResponse) => void {
  const { httpsPort, acmeChallenge } = listener.redirect;
  const portSuffix = httpsPort === null || httpsPort === 443 ? '' : `:${httpsPort}`;
  return (req, res) => {
    if (acmeChallenge === 'proxy' && (req.method === 'GET' || req.method === 'HEAD') && ACME_CHALLENGE.test(req.url ?? '')) {
      proxy(req, res);
      return;
    }
    const target = settleTarget(req);
    const host = req.headers.host;
    // The Host is the client's own word, but it may only name a host: anything else would make the Location another URL.
    if (target !== 'proxy' || host === undefined || !isAuthority(host)) {
      res.shouldKeepAlive = false;
      sendError(req, res, new ProxyError(KINDS.badRequest, undefined, target === 'proxy' ? NO_HOST : undefined), requestIdOf(req));
      return;
    }
    if (closeIfBodyArriving(req, res)) req.resume();
    res.writeHead(308, { location: `https://${hostname(host)}${portSuffix}${req.url}`, 'content-length': 0, 'cache-control': 'no-store' });
    res.end();
  };
}

/** host[:port] without the port; a bracketed IPv6 literal keeps its brackets. */
function hostname(authority: string): string {
  const colon = authority.lastIndexOf(':');
  return colon === -1 || authority.endsWith(']') ? authority : authority.slice(0, colon);
}
