// Turns a routing decision into the explanation `meridian route` and `GET /route` print.
import type { GeoLocation } from '../geo/database.ts';
import type { RegionChoice, RouteDecision } from './types.ts';
import type { PendingHome } from './area-homes.ts';

export interface RouteExplanation {
  readonly ip: string;
  readonly location: { lat: number; lon: number; country: string | null; continent: string | null } | null;
  readonly home: string | null;
  readonly candidates: readonly { region: string; zone: string; endpoint: string }[];
  readonly reason: string;
  /** The bounded reason code, as `x-meridian-route` carries it. */
  readonly code: RouteDecision['code'];
  readonly regions: readonly RegionChoice[];
  readonly fence: { name: string; mode: string; regions: readonly string[] } | null;
  readonly misrouteNearest: string | null;
  /** Latency order: the region that leads this client's area by the margin but has not held it for the window yet. */
  readonly pendingHome?: PendingHome | null;
}

/** `pending` looks up the hysteresis state of the decision's client area, where a live control plane has one. */
export function explainRoute(
  ip: string,
  location: GeoLocation | null,
  decision: RouteDecision,
  pending: (set: number, area: number) => PendingHome | null = () => null,
): RouteExplanation {
  const { fence } = decision;
  return {
    ip,
    location: location && { lat: location.lat, lon: location.lon, country: location.country, continent: location.continent },
    home: decision.home,
    candidates: decision.candidates.map((e) => ({ region: e.region, zone: e.zone, endpoint: e.origin })),
    reason: decision.reason,
    code: decision.code,
    regions: decision.regions,
    fence: fence && { name: fence.name, mode: fence.mode, regions: fence.regions },
    misrouteNearest: decision.misrouteNearest,
    pendingHome: decision.area ? pending(decision.area.set, decision.area.area) : null,
  };
}

export function formatExplanation(x: RouteExplanation): string {
  const where = x.location
    ? `${x.location.country ?? '??'}/${x.location.continent ?? '??'} at ${x.location.lat.toFixed(2)}, ${x.location.lon.toFixed(2)}`
    : 'unknown (private address or not in the database)';
  const lines = [`client   ${x.ip}`, `location ${where}`, `home     ${x.home ?? '(none)'}`, `reason   ${x.reason} (${x.code})`];
  if (x.fence) lines.push(`fence    ${x.fence.name} (${x.fence.mode}): ${x.fence.regions.join(', ')}`);
  if (x.misrouteNearest) lines.push(`misroute GeoDNS should have sent this client to ${x.misrouteNearest}`);
  if (x.pendingHome) {
    const { region, since, leadMs } = x.pendingHome;
    lines.push(`pending  ${region} has cost ${leadMs.toFixed(1)} ms less for ${((Date.now() - since) / 1000).toFixed(0)} s; it becomes home once that lasts the hysteresis window`);
  }
  lines.push('', 'regions in order:');
  const costed = x.regions.some((r) => r.cost !== null);
  if (costed) lines.push(`  ${'region'.padEnd(16)}${'distance'.padStart(9)}  ${'cost ms = distance + slowness + errors + local'.padEnd(48)}  measured`);
  for (const r of x.regions) {
    const km = r.distanceKm === null ? '' : `${Math.round(r.distanceKm)} km`.padStart(9);
    const outside = r.allowed ? '' : '  (outside preferred fence)';
    if (r.cost === null || r.latency === null) {
      lines.push(`  ${r.region.padEnd(16)}${km}${outside}`);
      continue;
    }
    const c = r.cost;
    const f = (ms: number): string => ms.toFixed(1);
    const terms = `${f(c.totalMs).padStart(6)} = ${f(c.distanceMs)} + ${f(c.slownessMs)} + ${f(c.errorMs)} + ${f(c.localMs)}`;
    const l = r.latency;
    const rtt = l.rttMs === null ? 'rtt not measured' : `rtt ${f(l.rttMs)} ms, floor ${f(l.floorMs ?? l.rttMs)} ms`;
    lines.push(`  ${r.region.padEnd(16)}${km.padStart(9)}  ${terms.padEnd(48)}  ${rtt}, errors ${(l.errorRatio * 100).toFixed(1)} %${outside}`);
  }
  lines.push('', 'candidates in order:');
  x.candidates.forEach((c, i) => lines.push(`  ${String(i + 1).padStart(2)}. ${c.region}/${c.zone}  ${c.endpoint}`));
  if (x.candidates.length === 0) lines.push('  (none: the request would get 503)');
  return lines.join('\n');
}
