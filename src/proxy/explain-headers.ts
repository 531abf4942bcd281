// The opt-in explain headers (`headers.explain`): `x-meridian-route` says why the answer came from where it did, and
// `Server-Timing` (W3C Server Timing) splits its time between Meridian and the upstream, for browser devtools.
import type { RouteDecision } from '../routing/types.ts';

export const ROUTE_HEADER = 'x-meridian-route';
export const SERVER_TIMING_HEADER = 'server-timing';

/**
 * `home=<region|none>; tier=<n|none>; reason=<code>; retry=<0|1>`. `tier` is the position in the decision's tiers
 * (zone after zone) of the endpoint that answered, or `none` when Meridian answered without trying one; `reason` is
 * the decision's bounded code (src/routing/types.ts RouteCode); `retry` is 1 when an earlier attempt failed first.
 */
export function routeHeader(decision: RouteDecision, tier: number | null, retried: boolean): string {
  return `home=${decision.home ?? 'none'}; tier=${tier ?? 'none'}; reason=${decision.code}; retry=${retried ? 1 : 0}`;
}

/**
 * `meridian;dur=<ms>, upstream;dur=<ms>` in milliseconds with one decimal. Without an upstream answer (Meridian's own
 * answers) only `meridian` is given, and it is the whole time to the answer.
 */
export function serverTiming(meridianMs: number, upstreamMs: number | null): string {
  const own = `meridian;dur=${meridianMs.toFixed(1)}`;
  return upstreamMs === null ? own : `${own}, upstream;dur=${upstreamMs.toFixed(1)}`;
}
