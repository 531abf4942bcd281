// Turns a routing decision into the explanation `meridian route` and `GET /route` print.
import type { GeoLocation } from '../geo/database.ts';
import type { RegionChoice, RouteDecision } from './types.ts';

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
}

export function explainRoute(ip: string, location: GeoLocation | null, decision: RouteDecision): RouteExplanation {
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
  };
}

export function formatExplanation(x: RouteExplanation): string {
  const where = x.location
    ? `${x.location.country ?? '??'}/${x.location.continent ?? '??'} at ${x.location.lat.toFixed(2)}, ${x.location.lon.toFixed(2)}`
    : 'unknown (private address or not in the database)';
  const lines = [`client   ${x.ip}`, `location ${where}`, `home     ${x.home ?? '(none)'}`, `reason   ${x.reason} (${x.code})`];
  if (x.fence) lines.push(`fence    ${x.fence.name} (${x.fence.mode}): ${x.fence.regions.join(', ')}`);
  if (x.misrouteNearest) lines.push(`misroute GeoDNS should have sent this client to ${x.misrouteNearest}`);
  lines.push('', 'regions in order:');
  for (const r of x.regions) {
    const km = r.distanceKm === null ? '' : `${Math.round(r.distanceKm)} km`.padStart(9);
    lines.push(`  ${r.region.padEnd(16)}${km}${r.allowed ? '' : '  (outside preferred fence)'}`);
  }
  lines.push('', 'candidates in order:');
  x.candidates.forEach((c, i) => lines.push(`  ${String(i + 1).padStart(2)}. ${c.region}/${c.zone}  ${c.endpoint}`));
  if (x.candidates.length === 0) lines.push('  (none: the request would get 503)');
  return lines.join('\n');
}
