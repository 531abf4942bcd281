// Redirect mode: whether a request is answered 307/308 with a Location on its home region's `publicHost` instead of
// being proxied there from this region, and where to. Pure: the decision, the request and the config say it all.
import type { MeridianConfig, RedirectRule } from '../config/types.ts';
import { matchesRequest } from './request-match.ts';
import type { RouteDecision } from './types.ts';

/** What a redirect needs to know about one region: its counter slot and its `Location` prefixes. */
export interface RedirectTarget {
  /** Position in `topology.regions`, the slot `Traffic.redirected` counts in. */
  readonly index: number;
  /** `http://publicHost` and `https://publicHost`, or the one scheme the `publicHost` itself names. */
  readonly http: string;
  readonly https: string;
  /** The public host's name without port, lower case: a request already addressed to it is never sent there again. */
  readonly hostname: string;
}

/** A config's redirect rules, compiled once per config load. */
export interface RedirectPlan {
  readonly rules: readonly RedirectRule[];
  /** This instance's region: a client whose home it is is served here. */
  readonly self: string;
  /** By region name; only regions with a `publicHost` have one. */
  readonly targets: ReadonlyMap<string, RedirectTarget>;
  /** Some rule names a host, so the request's Host must be put in the matcher's form. */
  readonly needsHostname: boolean;
}

/** The request as redirect mode reads it. */
export interface RedirectRequest {
  /** The Host header as the routing phase sees it (any case, any port). */
  readonly host: string | undefined;
  /** The host the client asked for as a trusted proxy in front tells it (X-Forwarded-Host), else the Host. */
  readonly forwardedHost: string | undefined;
  /** The request target as received, origin-form: path and query, byte for byte. */
  readonly target: string;
  readonly method: string;
  /** The client reached Meridian over TLS, or a trusted proxy in front said it used https. */
  readonly secure: boolean;
  /** A WebSocket upgrade: a client does not follow a redirect from its handshake, so it never gets one. */
  readonly websocket: boolean;
  /** A chunk of a chunked upload (`Content-Range`): its region is where the upload's chunks live. */
  readonly uploadChunk: boolean;
}

export interface Redirect {
  readonly status: 307 | 308;
  readonly location: string;
  readonly region: string;
  /** The region's slot in the redirect counters. */
  readonly regionIndex: number;
  /** The rule that matched, for logs. */
  readonly rule: string;
}

// A config snapshot is frozen and lives as one object per load: its plan is compiled on first use and kept with it.
const plans = new WeakMap<MeridianConfig, RedirectPlan>();

export function redirectPlan(config: MeridianConfig): RedirectPlan {
  let plan = plans.get(config);
  if (plan === undefined) {
    plan = compilePlan(config);
    plans.set(config, plan);
  }
  return plan;
}

const SCHEME = /^(https?):\/\//i;

export function compilePlan(config: MeridianConfig): RedirectPlan {
  const targets = new Map<string, RedirectTarget>();
  config.topology.regions.forEach((region, index) => {
    const publicHost = region.publicHost?.trim();
    if (publicHost === undefined || publicHost === '') return;
    const named = SCHEME.exec(publicHost);
    // A trailing slash would double the request target's own leading one.
    const host = (named === null ? publicHost : publicHost.slice(named[0].length)).replace(/\/+$/, '');
    const hostname = hostnameOf(host)!;
    if (named !== null) {
      // A `publicHost` written as a URL keeps its scheme: the region says how it is reached.
      const prefix = `${named[1].toLowerCase()}://${host}`;
      targets.set(region.name, Object.freeze({ index, http: prefix, https: prefix, hostname }));
    } else {
      targets.set(region.name, Object.freeze({ index, http: `http://${host}`, https: `https://${host}`, hostname }));
    }
  });
  const rules = config.routing.redirects;
  return Object.freeze({
    rules,
    self: config.topology.self.region,
    targets,
    needsHostname: rules.some((r) => r.match.host !== null || r.match.hostSuffix !== null),
  });
}

/**
 * The redirect for a request, or null to proxy it. Every condition must hold:
 * - the home region is another one than this instance's, and has a `publicHost`;
 * - the home region is where the request would go first: its endpoints lead the candidates. Not when health already
 *   sent it elsewhere (the home is down: the client would only be sent to a region that cannot serve it) and not in
 *   panic (nothing is known to be healthy, so nothing is worth the client's round trip);
 * - no fence could be crossed: the home is inside the client's fence. The router only ever picks a home inside it
 *   (a preferred fence's spill comes after the home, and then the home does not lead), so this holds today. It is
 *   checked anyway because a redirect hands the client a URL it uses without asking us again: were a router change
 *   ever to pick a home outside the fence, proxying would still stop at the fence's 503, a redirect would not;
 * - not a WebSocket upgrade, not an upload chunk;
 * - the client did not already ask for the home region's public host: DNS that sends that name here (a failover
 *   record while the region's own edge is out) would otherwise bounce the client between the name and this instance;
 * - a rule matches, the first in file order deciding the status.
 */
export function redirectFor(plan: RedirectPlan, decision: RouteDecision, request: RedirectRequest): Redirect | null {
  const home = decision.home;
  if (home === null || home === plan.self) return null;
  const target = plan.targets.get(home);
  if (target === undefined) return null;
  if (decision.panic) return null;
  const first = decision.tiers[0];
  if (first === undefined || first[0].region !== home) return null;
  const fence = decision.fence;
  if (fence !== null && !fence.regions.includes(home)) return null;
  if (request.websocket || request.uploadChunk) return null;
  const hostname = plan.needsHostname ? hostnameOf(request.host) : undefined;
  for (const rule of plan.rules) {
    if (!matchesRequest(rule.match, hostname, request.target, request.method)) continue;
    if ((hostname ?? hostnameOf(request.host)) === target.hostname) return null;
    if (request.forwardedHost !== request.host && hostnameOf(request.forwardedHost) === target.hostname) return null;
    const prefix = request.secure ? target.https : target.http;
    return { status: rule.status, location: prefix + request.target, region: home, regionIndex: target.index, rule: rule.name };
  }
  return null;
}

/** The Host without its port, lower case: the form rules are compiled to. */
export function hostnameOf(host: string | undefined): string | undefined {
  if (host === undefined) return undefined;
  const colon = host.lastIndexOf(':');
  return (colon > host.lastIndexOf(']') ? host.slice(0, colon) : host).toLowerCase();
}
