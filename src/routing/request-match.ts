// The request side of rate-limit and redirect rules: host (exact or `*.suffix`), path prefix and methods, compiled
// once per config so that matching a request is a few string comparisons.

export interface RequestMatch {
  /** An exact host, lower case, without port; null matches any. */
  readonly host: string | null;
  /** `.suffix` of a `*.suffix` rule; null when the rule names an exact host or none. */
  readonly hostSuffix: string | null;
  readonly pathPrefix: string | null;
  readonly methods: ReadonlySet<string> | null;
}

export interface RequestMatchInput {
  readonly host?: string;
  readonly pathPrefix?: string;
  readonly methods?: readonly string[];
}

export function compileMatch(input: RequestMatchInput): RequestMatch {
  const host = input.host?.toLowerCase() ?? null;
  const wildcard = host !== null && host.startsWith('*.');
  return Object.freeze({
    host: wildcard ? null : host,
    hostSuffix: wildcard ? host!.slice(1) : null,
    pathPrefix: input.pathPrefix ?? null,
    methods: input.methods === undefined ? null : new Set(input.methods),
  });
}

/**
 * Whether a request matches. `hostname` is the Host without its port, lower case (as the routing phase uses it);
 * `path` is the request target as received (origin-form).
 */
export function matchesRequest(match: RequestMatch, hostname: string | undefined, path: string, method: string): boolean {
  if (match.methods !== null && !match.methods.has(method)) return false;
  if (match.pathPrefix !== null && !path.startsWith(match.pathPrefix)) return false;
  if (match.host !== null && hostname !== match.host) return false;
  if (match.hostSuffix !== null && (hostname === undefined || !hostname.endsWith(match.hostSuffix))) return false;
  return true;
}
