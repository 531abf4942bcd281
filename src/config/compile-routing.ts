// Compiles the geo and routing sections: CIDR sets, fence lookup maps and affinity tables.
import { compileCidrs, parseCidr } from '../geo/cidr.ts';
import { compileMatch } from '../routing/request-match.ts';
import type { ConfigProblem } from './errors.ts';
import type { ParsedConfig } from './schema.ts';
import type { Fence, GeoSettings, ProjectAffinity, RoutingPolicy } from './types.ts';

const CONTINENTS = new Set(['AF', 'AN', 'AS', 'EU', 'NA', 'OC', 'SA']);

/**
 * Client-address headers that Meridian does not set itself but Appwrite can be told to trust (`_APP_TRUSTED_HEADERS`):
 * only a trusted proxy may send them upstream. X-Forwarded-For is not here: Meridian always writes its own.
 */
const CLIENT_ADDRESS_HEADERS = ['x-real-ip', 'forwarded', 'true-client-ip', 'x-client-ip', 'cf-connecting-ip'];

export function compileGeo(geo: ParsedConfig['geo'], problems: ConfigProblem[]): GeoSettings {
  const valid = geo.trustedProxies.filter((entry, i) => {
    if (parseCidr(entry) !== null) return true;
    problems.push({ path: `geo.trustedProxies[${i}]`, message: `not an IP address or CIDR (${JSON.stringify(entry)})` });
    return false;
  });
  const clientIpHeader = geo.clientIpHeader?.toLowerCase();
  // It is dropped from untrusted peers, and Appwrite routes by Host.
  if (clientIpHeader === 'host') problems.push({ path: 'geo.clientIpHeader', message: 'Host names the site, not the client' });
  return {
    databases: geo.databases ?? null,
    trustedProxies: compileCidrs(valid),
    clientIpHeader,
    clientAddressHeaders: new Set(clientIpHeader === undefined ? CLIENT_ADDRESS_HEADERS : [...CLIENT_ADDRESS_HEADERS, clientIpHeader]),
    cacheSize: geo.cacheSize,
  };
}

export function compileRouting(routing: ParsedConfig['routing'], regions: ReadonlySet<string>, problems: ConfigProblem[]): RoutingPolicy {
  const knownRegion = (region: string, path: string): boolean => {
    if (regions.has(region)) return true;
    problems.push({ path, message: `"${region}" is not one of the regions (${[...regions].join(', ')})` });
    return false;
  };

  const fences: Fence[] = [];
  const fenceByCountry = new Map<string, Fence>();
  const fenceByContinent = new Map<string, Fence>();
  routing.fences.forEach((raw, i) => {
    const path = `routing.fences[${i}]`;
    raw.regions.forEach((region, j) => knownRegion(region, `${path}.regions[${j}]`));
    const countries = (raw.match.country ?? []).map((c) => c.toUpperCase());
    const continents = (raw.match.continent ?? []).map((c) => c.toUpperCase());
    countries.forEach((c, j) => {
      if (!/^[A-Z]{2}$/.test(c)) problems.push({ path: `${path}.match.country[${j}]`, message: `not an ISO 3166-1 alpha-2 code ("${c}")` });
    });
    continents.forEach((c, j) => {
      if (!CONTINENTS.has(c)) problems.push({ path: `${path}.match.continent[${j}]`, message: `not a continent code (${[...CONTINENTS].join(' ')})` });
    });
    const fence: Fence = { name: raw.name ?? `fences[${i}]`, mode: raw.mode, regions: raw.regions, countries, continents };
    fences.push(fence);
    for (const c of countries) if (!fenceByCountry.has(c)) fenceByCountry.set(c, fence);
    for (const c of continents) if (!fenceByContinent.has(c)) fenceByContinent.set(c, fence);
  });

  const projects = new Map<string, ProjectAffinity>();
  for (const [id, project] of Object.entries(routing.projects)) {
    const path = `routing.projects.${id}`;
    knownRegion(project.home, `${path}.home`);
    project.regions.forEach((region, j) => knownRegion(region, `${path}.regions[${j}]`));
    // A region listed twice would have its endpoints tried twice.
    projects.set(id, { home: project.home, regions: [...new Set([project.home, ...project.regions])] });
  }

  const hostRegions = new Map<string, string>();
  const hostSuffixRegions: [string, string][] = [];
  routing.hosts.forEach((rule, i) => {
    knownRegion(rule.region, `routing.hosts[${i}].region`);
    const host = rule.host.toLowerCase();
    if (host.startsWith('*.')) hostSuffixRegions.push([host.slice(1), rule.region]);
    else hostRegions.set(host, rule.region);
  });
  hostSuffixRegions.sort((a, b) => b[0].length - a[0].length);

  return {
    localPreferenceKm: routing.localPreferenceKm,
    order: routing.order,
    latency: { errorPenaltyMs: routing.latency.errorPenalty, marginMs: routing.latency.margin, windowMs: routing.latency.window },
    fences,
    fenceByCountry,
    fenceByContinent,
    projects,
    hostRegions,
    hostSuffixRegions,
    uploadPinning: routing.uploadPinning,
    redirects: routing.redirects.map((rule, i) => ({ name: rule.name ?? `redirects[${i}]`, match: compileMatch(rule), status: rule.status })),
  };
}
