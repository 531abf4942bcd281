// The geo router's candidate order (DESIGN.md §3) over a four-region topology compiled from a real config:
// distance, local preference, zones, fences, affinity, the misroute signal and memoization.
import { describe, expect, it } from 'vitest';
import { compileConfig } from '../config/compile.ts';
import { ConfigError } from '../config/errors.ts';
import type { MeridianConfig } from '../config/types.ts';
import type { GeoLocation } from '../geo/database.ts';
import { greatCircleKm } from '../geo/distance.ts';
import { createGeoRouter, decide } from './geo-router.ts';
import { AreaHomes } from './area-homes.ts';
import { MISROUTE_REASONS, type RouteDecision, type RouteFacts } from './types.ts';

const LOCATIONS = {
  'us-west': [45.52, -122.68],
  'us-east': [39.04, -77.49],
  'eu-north': [59.33, 18.07],
  'eu-south': [45.46, 9.19],
} as const;
const OCTET = { 'us-west': 1, 'us-east': 2, 'eu-north': 3, 'eu-south': 4 } as const;
type RegionName = keyof typeof LOCATIONS;

/** Four regions with zones az-1 and az-3 each; self is us-east/az-3 so that "local zone first" differs from file order. */
function config(routing: Record<string, unknown> = {}, self = { region: 'us-east', zone: 'az-3' }): MeridianConfig {
  const regions = Object.fromEntries(
    Object.entries(LOCATIONS).map(([name, location]) => {
      const o = OCTET[name as RegionName];
      return [name, { location, zones: { 'az-1': { endpoints: [`http://10.${o}.1.10`] }, 'az-3': { endpoints: [`http://10.${o}.3.10`] } } }];
    }),
  );
  return compileConfig({ self, regions, routing }, {});
}

const at = (lat: number, lon: number, country: string | null, continent: string | null): GeoLocation =>
  Object.freeze({ lat, lon, country, continent, accuracyKm: 20 });
const BERLIN = at(52.52, 13.4, 'DE', 'EU');
const STOCKHOLM = at(59.33, 18.07, 'SE', 'EU');
const MILAN = at(45.46, 9.19, 'IT', 'EU');
const LONDON = at(51.51, -0.13, 'GB', 'EU');
const NEW_YORK = at(40.71, -74.01, 'US', 'NA');
const DENVER = at(39.74, -104.99, 'US', 'NA');
const SALT_LAKE = at(40.76, -111.89, 'US', 'NA');

function facts(location: GeoLocation | null, extra: Partial<RouteFacts> = {}): RouteFacts {
  return { clientIp: '203.0.113.7', host: undefined, location, project: undefined, pinnedRegion: undefined, ...extra };
}

const regionsOf = (d: RouteDecision): string[] => d.regions.map((r) => r.region);
const originsOf = (d: RouteDecision): string[] => d.candidates.map((e) => e.origin);
/** Endpoint origins of regions in order, zones az-1 then az-3, except the local zone first in us-east. */
const originsFor = (...regions: RegionName[]): string[] =>
  regions.flatMap((r) => {
    const o = OCTET[r];
    return r === 'us-east' ? [`http://10.${o}.3.10`, `http://10.${o}.1.10`] : [`http://10.${o}.1.10`, `http://10.${o}.3.10`];
  });

describe('distance ordering', () => {
  const plain = config();
  it.each([
    { client: 'Berlin', location: BERLIN, regions: ['eu-north', 'eu-south', 'us-east', 'us-west'], reason: /^nearest allowed region eu-north \(811 km\)$/ },
    { client: 'Milan', location: MILAN, regions: ['eu-south', 'eu-north', 'us-east', 'us-west'], reason: /^nearest allowed region eu-south/ },
    { client: 'London', location: LONDON, regions: ['eu-south', 'eu-north', 'us-east', 'us-west'], reason: /^nearest allowed region eu-south/ },
    { client: 'Salt Lake City', location: SALT_LAKE, regions: ['us-west', 'us-east', 'eu-north', 'eu-south'], reason: /^nearest allowed region us-west/ },
    { client: 'New York', location: NEW_YORK, regions: ['us-east', 'us-west', 'eu-north', 'eu-south'], reason: /^nearest region us-east \(350 km\)$/ },
    // An IPv6 client is placed like any other: only its location matters.
    { client: 'Milan over IPv6', location: MILAN, clientIp: '2a02:d1c0::1', regions: ['eu-south', 'eu-north', 'us-east', 'us-west'], reason: /eu-south/ },
  ])('a client in $client tries $regions', ({ location, clientIp, regions, reason }) => {
    const decision = decide(plain, location, null);
    expect(regionsOf(decision)).toEqual(regions);
    expect(originsOf(decision)).toEqual(originsFor(...(regions as RegionName[])));
    expect(decision.home).toBe(regions[0]);
    expect(decision.reason).toMatch(reason);
    expect(createGeoRouter(plain).route(facts(location, clientIp ? { clientIp } : {}))).toEqual(decision);
  });

  it('reports each region with its distance from the client, every one allowed', () => {
    const decision = decide(plain, BERLIN, null);
    expect(decision.regions.map((r) => [r.region, Math.round(r.distanceKm!), r.allowed])).toEqual([
      ['eu-north', 811, true],
      ['eu-south', 843, true],
      ['us-east', 6727, true],
      ['us-west', 8338, true],
    ]);
    expect(decision.fence).toBeNull();
  });
});

describe('local preference (self us-east)', () => {
  // Denver is 776 km nearer to us-west than to us-east.
  const margin = greatCircleKm(DENVER.lat, DENVER.lon, ...LOCATIONS['us-east']) - greatCircleKm(DENVER.lat, DENVER.lon, ...LOCATIONS['us-west']);

  it.each([
    { localPreferenceKm: 1000, home: 'us-east', reason: /^local preference: us-east is within 1000 km of nearest us-west$/ },
    { localPreferenceKm: margin, home: 'us-east', reason: /^local preference/ },
    { localPreferenceKm: margin - 0.001, home: 'us-west', reason: /^nearest allowed region us-west/ },
    { localPreferenceKm: 0, home: 'us-west', reason: /^nearest allowed region us-west/ },
  ])('localPreferenceKm $localPreferenceKm sends a client in Denver to $home', ({ localPreferenceKm, home, reason }) => {
    const decision = decide(config({ localPreferenceKm }), DENVER, null);
    expect(decision.home).toBe(home);
    expect(decision.reason).toMatch(reason);
    // The other US region comes next, then Europe by distance, whatever the home.
    const other = home === 'us-east' ? 'us-west' : 'us-east';
    expect(regionsOf(decision)).toEqual([home, other, 'eu-north', 'eu-south']);
  });

  it('does not keep a client whose nearest region is more than localPreferenceKm nearer', () => {
    expect(decide(config(), SALT_LAKE, null).home).toBe('us-west');
  });
});

describe('zones', () => {
  it('puts the local zone first in the local region only, then its sibling', () => {
    const decision = decide(config(), NEW_YORK, null);
    expect(decision.candidates.map((e) => `${e.region}/${e.zone}`)).toEqual([
      'us-east/az-3',
      'us-east/az-1',
      'us-west/az-1',
      'us-west/az-3',
      'eu-north/az-1',
      'eu-north/az-3',
      'eu-south/az-1',
      'eu-south/az-3',
    ]);
  });

  it('keeps file order in the local region when the local zone is listed first', () => {
    const decision = decide(config({}, { region: 'eu-north', zone: 'az-1' }), STOCKHOLM, null);
    expect(decision.candidates.slice(0, 2).map((e) => `${e.region}/${e.zone}`)).toEqual(['eu-north/az-1', 'eu-north/az-3']);
  });
});

describe('an unknown location', () => {
  it('stays in the local region, local zone first, then the others by distance from this instance', () => {
    const router = createGeoRouter(config());
    const decision = router.route(facts(null, { clientIp: '10.0.0.1' }));
    expect(decision.home).toBe('us-east');
    expect(decision.reason).toBe('location unknown → local region us-east');
    expect(decision.candidates.slice(0, 2).map((e) => `${e.region}/${e.zone}`)).toEqual(['us-east/az-3', 'us-east/az-1']);
    expect(regionsOf(decision)).toEqual(['us-east', 'us-west', 'eu-north', 'eu-south']);
    expect(decision.regions.every((r) => r.distanceKm === null)).toBe(true);
    expect(decision.misrouteNearest).toBeNull();
  });

  it('is never fenced, since no country is known', () => {
    const decision = decide(config({ fences: [{ match: { continent: 'EU' }, regions: ['eu-north'] }] }), null, null);
    expect(decision.fence).toBeNull();
    expect(regionsOf(decision)).toHaveLength(4);
  });
});

describe('fences', () => {
  const eu = { name: 'eu-residency', match: { continent: 'EU' }, regions: ['eu-north', 'eu-south'], mode: 'strict' };

  it('keeps a strict fence: an EU client never gets a US candidate', () => {
    const router = createGeoRouter(config({ fences: [eu] }));
    for (const location of [BERLIN, STOCKHOLM, MILAN, LONDON]) {
      const decision = router.route(facts(location));
      expect(decision.candidates.map((e) => e.region).every((r) => r.startsWith('eu-'))).toBe(true);
      expect(decision.candidates).toHaveLength(4);
      expect(decision.fence?.name).toBe('eu-residency');
      expect(decision.reason).toMatch(/; fence eu-residency \(strict\) allows eu-north, eu-south$/);
    }
    // Clients outside the fence see the whole world.
    expect(regionsOf(router.route(facts(NEW_YORK)))).toEqual(['us-east', 'us-west', 'eu-north', 'eu-south']);
  });

  it('lets a country rule beat a continent rule, wherever it is in the file', () => {
    const uk = { name: 'uk', match: { country: 'gb' }, regions: ['eu-north'], mode: 'strict' };
    const router = createGeoRouter(config({ fences: [eu, uk] }));
    const london = router.route(facts(LONDON));
    expect(london.fence?.name).toBe('uk');
    // eu-south is nearer to London, but outside the UK fence.
    expect(regionsOf(london)).toEqual(['eu-north']);
    expect(london.reason).toMatch(/fence uk \(strict\)/);
    expect(router.route(facts(BERLIN)).fence?.name).toBe('eu-residency');
  });

  it('spills a preferred fence to the other regions after the allowed ones, marked not allowed', () => {
    const decision = decide(config({ fences: [{ ...eu, mode: 'preferred' }] }), BERLIN, null);
    expect(decision.regions.map((r) => [r.region, r.allowed])).toEqual([
      ['eu-north', true],
      ['eu-south', true],
      ['us-east', false],
      ['us-west', false],
    ]);
    expect(originsOf(decision)).toEqual(originsFor('eu-north', 'eu-south', 'us-east', 'us-west'));
    expect(decision.reason).toMatch(/fence eu-residency \(preferred\)/);
  });

  it('moves the home out of the local region when the fence excludes it, and says why', () => {
    // Self is us-east: an EU client fenced to eu-south alone goes there even from Stockholm.
    const decision = decide(config({ fences: [{ match: { country: 'SE' }, regions: ['eu-south'] }] }), STOCKHOLM, null);
    expect(decision.home).toBe('eu-south');
    expect(decision.reason).toBe('nearest allowed region eu-south (1652 km); fence fences[0] (strict) allows eu-south');
  });

  it.each([
    { what: 'an unknown region', fence: { match: { continent: 'EU' }, regions: ['eu-north', 'eu-west'] }, path: 'routing.fences[0].regions[1]' },
    { what: 'a bad continent', fence: { match: { continent: 'XX' }, regions: ['eu-north'] }, path: 'routing.fences[0].match.continent[0]' },
    { what: 'a bad country', fence: { match: { country: 'DEU' }, regions: ['eu-north'] }, path: 'routing.fences[0].match.country[0]' },
    { what: 'no match', fence: { match: {}, regions: ['eu-north'] }, path: 'routing.fences[0].match' },
  ])('is rejected at load when it names $what', ({ fence, path }) => {
    let error: unknown;
    try {
      config({ fences: [fence] });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.map((p) => p.path)).toEqual([path]);
    expect((error as ConfigError).message).toContain(path);
  });
});

describe('project affinity', () => {
  // File order (us-east, eu-south) is neither the order from a client in Stockholm nor from this instance.
  const projects = { shop: { home: 'us-west', regions: ['us-east', 'eu-south', 'us-west'] } };

  it.each([
    { client: 'Stockholm', location: STOCKHOLM, regions: ['us-west', 'eu-south', 'us-east'], km: [7818, 1652, 6647] },
    { client: 'New York', location: NEW_YORK, regions: ['us-west', 'us-east', 'eu-south'], km: [3926, 350, 6465] },
  ])('sends $client to the home region, then only the regions sharing its data, nearest first', ({ location, regions, km }) => {
    const router = createGeoRouter(config({ projects }));
    const decision = router.route(facts(location, { project: 'shop' }));
    expect(decision.home).toBe('us-west');
    expect(regionsOf(decision)).toEqual(regions);
    expect(originsOf(decision)).toEqual(originsFor(...(regions as RegionName[])));
    expect(decision.regions.map((r) => Math.round(r.distanceKm!))).toEqual(km);
    expect(decision.reason).toBe('project affinity (shop) → us-west');
    // A request without the project, or with one that has no affinity, routes by geography.
    expect(router.route(facts(location)).home).toBe(location === STOCKHOLM ? 'eu-north' : 'us-east');
    expect(router.route(facts(location, { project: 'blog' })).home).toBe(location === STOCKHOLM ? 'eu-north' : 'us-east');
  });

  it('tries a region listed twice only once', () => {
    const shop = { home: 'eu-south', regions: ['eu-north', 'eu-south', 'eu-north'] };
    const decision = createGeoRouter(config({ projects: { shop } })).route(facts(BERLIN, { project: 'shop' }));
    expect(originsOf(decision)).toEqual(originsFor('eu-south', 'eu-north'));
  });

  it('is narrowed by a strict fence, and gets no candidate when nothing is left', () => {
    const fences = [{ name: 'eu', match: { continent: 'EU' }, regions: ['eu-north', 'eu-south'] }];
    const router = createGeoRouter(config({ fences, projects: { ...projects, us: { home: 'us-west' } } }));
    // Of shop's regions only eu-south is in the fence: it becomes the home.
    expect(regionsOf(router.route(facts(BERLIN, { project: 'shop' })))).toEqual(['eu-south']);
    const none = router.route(facts(BERLIN, { project: 'us' }));
    expect(none.candidates).toEqual([]);
    expect(none.home).toBeNull();
    expect(none.reason).toBe('project affinity (us) has no region allowed here; fence eu (strict) allows eu-north, eu-south');
  });

  it('is not a GeoDNS misroute by itself', () => {
    const router = createGeoRouter(config({ projects }));
    expect(router.route(facts(NEW_YORK, { project: 'shop' })).misrouteNearest).toBeNull();
    expect(router.route(facts(STOCKHOLM, { project: 'shop' })).misrouteNearest).toBe('eu-north');
  });

  it('is rejected at load when it names an unknown region', () => {
    expect(() => config({ projects: { shop: { home: 'eu-west', regions: ['mars'] } } })).toThrow(
      /routing\.projects\.shop\.home: "eu-west" is not one of the regions[\s\S]*routing\.projects\.shop\.regions\[0\]/,
    );
  });
});

describe('host rules', () => {
  const hosts = [
    { host: 'api.example.eu', region: 'eu-north' },
    { host: '*.functions.example.com', region: 'us-west' },
    { host: 'special.functions.example.com', region: 'eu-south' },
  ];
  const router = createGeoRouter(config({ hosts }));

  it.each([
    { host: 'api.example.eu', home: 'eu-north' },
    { host: 'API.Example.EU:8443', home: 'eu-north' },
    { host: 'hello.functions.example.com', home: 'us-west' },
    { host: 'a.b.functions.example.com:8080', home: 'us-west' },
    { host: 'special.functions.example.com:443', home: 'eu-south' },
    // The bare suffix is not a subdomain of itself; these fall back to geography (New York → us-east).
    { host: 'functions.example.com', home: 'us-east' },
    { host: 'xfunctions.example.com', home: 'us-east' },
    { host: '[2001:db8::1]:8080', home: 'us-east' },
  ])('Host $host → $home', ({ host, home }) => {
    const decision = router.route(facts(NEW_YORK, { host }));
    expect(decision.home).toBe(home);
    if (home !== 'us-east') {
      expect(regionsOf(decision)).toEqual([home]);
      expect(decision.reason).toBe(`host affinity (${home}) → ${home}`);
    }
  });
});

describe('upload pinning', () => {
  it('sends a pinned chunk to its region only, ahead of project and host rules', () => {
    const router = createGeoRouter(config({ projects: { shop: { home: 'us-west' } }, hosts: [{ host: 'api.example.eu', region: 'eu-north' }] }));
    const decision = router.route(facts(NEW_YORK, { pinnedRegion: 'eu-south', project: 'shop', host: 'api.example.eu' }));
    expect(originsOf(decision)).toEqual(originsFor('eu-south'));
    expect(decision.reason).toBe('upload affinity (eu-south) → eu-south');
  });

  it('still reaches a region outside a preferred fence that took the first chunk', () => {
    // Both EU regions failed when the upload began, so it spilled to us-east; its later chunks must follow.
    const fences = [{ name: 'eu', match: { continent: 'EU' }, regions: ['eu-north', 'eu-south'], mode: 'preferred' }];
    const decision = createGeoRouter(config({ fences })).route(facts(BERLIN, { pinnedRegion: 'us-east' }));
    expect(originsOf(decision)).toEqual(originsFor('us-east'));
    expect(decision.regions).toMatchObject([{ region: 'us-east', distanceKm: expect.closeTo(6727, 0), allowed: false }]);
  });

  it('never leaves a strict fence, even for a pin', () => {
    const fences = [{ name: 'eu', match: { continent: 'EU' }, regions: ['eu-north', 'eu-south'] }];
    expect(createGeoRouter(config({ fences })).route(facts(BERLIN, { pinnedRegion: 'us-east' })).candidates).toEqual([]);
  });
});

describe('the misroute signal (self us-east)', () => {
  const router = createGeoRouter(config());
  it.each([
    { client: 'Stockholm', location: STOCKHOLM, nearest: 'eu-north' },
    { client: 'Salt Lake City', location: SALT_LAKE, nearest: 'us-west' },
    { client: 'New York', location: NEW_YORK, nearest: null },
    // us-west is nearer, but within localPreferenceKm: GeoDNS did well enough.
    { client: 'Denver', location: DENVER, nearest: null },
    { client: 'an unknown place', location: null, nearest: null },
  ])('a client in $client → $nearest', ({ location, nearest }) => {
    expect(router.route(facts(location)).misrouteNearest).toBe(nearest);
  });

  it('names the nearest region inside the fence when the fence excludes this one', () => {
    const fenced = createGeoRouter(config({ fences: [{ match: { country: 'SE' }, regions: ['eu-south'] }] }));
    expect(fenced.route(facts(STOCKHOLM)).misrouteNearest).toBe('eu-south');
  });
});

describe('the misroute cost (self us-east)', () => {
  /** Per serving region: the reason (or null) and the extra km, as the cost table has them for that region's az-1 endpoint. */
  function costs(decision: RouteDecision, cfg: MeridianConfig): Record<string, { reason: string | null; km: number }> {
    const out: Record<string, { reason: string | null; km: number }> = {};
    for (const endpoint of cfg.topology.endpoints.filter((e) => e.zone === 'az-1')) {
      const cost = decision.misrouteCost;
      const r = cost == null ? -1 : cost.reasons[endpoint.index];
      out[endpoint.region] = { reason: r === -1 ? null : MISROUTE_REASONS[r], km: cost == null ? 0 : Math.round(cost.extraKm[endpoint.index]) };
    }
    return out;
  }
  const km = (location: GeoLocation, region: RegionName): number => greatCircleKm(location.lat, location.lon, LOCATIONS[region][0], LOCATIONS[region][1]);
  const plain = config();

  it('is nothing for a client near this region served here, nor for an unknown location', () => {
    expect(costs(createGeoRouter(plain).route(facts(NEW_YORK)), plain)['us-east'].reason).toBeNull();
    expect(createGeoRouter(plain).route(facts(null)).misrouteCost).toBeNull();
  });

  it('is geodns for a Stockholm client reaching us-east, measured to this region even when eu-north serves', () => {
    const c = costs(createGeoRouter(plain).route(facts(STOCKHOLM)), plain);
    expect(c['eu-north']).toEqual({ reason: 'geodns', km: Math.round(km(STOCKHOLM, 'us-east')) });
    // Served from farther than us-east: not the home region, so a failover, measured to where it went.
    expect(c['eu-south'].reason).toBe('failover');
    expect(c['us-west']).toEqual({ reason: 'failover', km: Math.round(km(STOCKHOLM, 'us-west')) });
  });

  it('is failover when a New York client is served outside its home us-east', () => {
    const c = costs(createGeoRouter(plain).route(facts(NEW_YORK)), plain);
    expect(c['us-east'].reason).toBeNull();
    expect(c['us-west']).toEqual({ reason: 'failover', km: Math.round(km(NEW_YORK, 'us-west') - km(NEW_YORK, 'us-east')) });
  });

  it('is fence when the fence excludes the nearest region, and affinity when a project chose the home', () => {
    const fenced = config({ fences: [{ match: { country: 'SE' }, regions: ['eu-south'] }] });
    expect(costs(createGeoRouter(fenced).route(facts(STOCKHOLM)), fenced)['eu-south'].reason).toBe('fence');
    const projects = config({ projects: { shop: { home: 'eu-south' } } });
    const c = costs(createGeoRouter(projects).route(facts(NEW_YORK, { project: 'shop' })), projects);
    expect(c['eu-south']).toEqual({ reason: 'affinity', km: Math.round(km(NEW_YORK, 'eu-south') - km(NEW_YORK, 'us-east')) });
    expect(c['us-east'].reason).toBeNull();
  });

  it('stays within localPreferenceKm: a Denver client served here is no misroute', () => {
    expect(costs(createGeoRouter(plain).route(facts(DENVER)), plain)['us-east'].reason).toBeNull();
  });
});

describe('memoization', () => {
  it('returns the identical frozen decision for the same location object', () => {
    const router = createGeoRouter(config());
    const first = router.route(facts(BERLIN));
    expect(router.route(facts(BERLIN, { clientIp: '198.51.100.9' }))).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    expect(Object.isFrozen(first.candidates)).toBe(true);
    // An equal but distinct location object is decided afresh, to the same answer.
    const copy = router.route(facts({ ...BERLIN }));
    expect(copy).not.toBe(first);
    expect(copy).toEqual(first);
    expect(router.route(facts(null))).toBe(router.route(facts(null)));
  });

  it('memoizes affinity decisions per key and location, never mixing fences', () => {
    const fences = [{ name: 'eu', match: { continent: 'EU' }, regions: ['eu-north', 'eu-south'] }];
    const router = createGeoRouter(config({ fences, projects: { shop: { home: 'us-west', regions: ['eu-north'] } } }));
    const eu = router.route(facts(BERLIN, { project: 'shop' }));
    expect(router.route(facts(BERLIN, { project: 'shop' }))).toBe(eu);
    expect(regionsOf(eu)).toEqual(['eu-north']);
    expect(regionsOf(router.route(facts(NEW_YORK, { project: 'shop' })))).toEqual(['us-west', 'eu-north']);
    expect(router.route(facts(BERLIN, { pinnedRegion: 'eu-south' }))).toBe(router.route(facts(BERLIN, { pinnedRegion: 'eu-south' })));
  });
});

describe('route codes (self us-east)', () => {
  /** Health with every endpoint of the named regions down. */
  const down = (c: MeridianConfig, ...regions: string[]) => ({ version: 1, usable: c.topology.endpoints.map((e) => !regions.includes(e.region)), rttMs: [] });
  const plain = config();

  it.each([
    { what: 'the nearest region', code: 'nearest', decision: () => decide(plain, BERLIN, null) },
    { what: 'this region, nearest too', code: 'nearest', decision: () => decide(plain, NEW_YORK, null) },
    { what: 'this region kept within localPreferenceKm', code: 'local-preference', decision: () => decide(plain, DENVER, null) },
    { what: 'no location', code: 'unknown-location', decision: () => decide(plain, null, null) },
    { what: 'a fence that moved the home', code: 'fence', decision: () => decide(config({ fences: [{ match: { country: 'SE' }, regions: ['eu-south'] }] }), STOCKHOLM, null) },
    {
      what: 'a fence that did not',
      code: 'nearest',
      decision: () => decide(config({ fences: [{ match: { continent: 'EU' }, regions: ['eu-north', 'eu-south'] }] }), BERLIN, null),
    },
    { what: 'a project', code: 'affinity-project', decision: () => createGeoRouter(config({ projects: { shop: { home: 'us-west' } } })).route(facts(BERLIN, { project: 'shop' })) },
    { what: 'a host rule', code: 'affinity-host', decision: () => createGeoRouter(config({ hosts: [{ host: 'a.example', region: 'us-west' }] })).route(facts(BERLIN, { host: 'a.example' })) },
    { what: 'an upload pin', code: 'upload-pin', decision: () => createGeoRouter(plain).route(facts(BERLIN, { pinnedRegion: 'us-west' })) },
    { what: 'the home region down', code: 'failover', decision: () => decide(plain, BERLIN, null, down(plain, 'eu-north')) },
    { what: 'everything down', code: 'panic', decision: () => decide(plain, BERLIN, null, down(plain, 'eu-north', 'eu-south', 'us-east', 'us-west')) },
    {
      what: 'a strict fence with its regions down',
      code: 'none',
      decision: () => {
        const c = config({ fences: [{ match: { continent: 'EU' }, regions: ['eu-north'], mode: 'strict' }] });
        return decide(c, BERLIN, null, down(c, 'eu-north'));
      },
    },
    {
      what: 'an affinity with no region the fence allows',
      code: 'none',
      decision: () => decide(config({ fences: [{ match: { continent: 'EU' }, regions: ['eu-north'] }] }), BERLIN, { kind: 'project', key: 'shop', regions: ['us-west'] }),
    },
  ])('$code for $what', ({ code, decision }) => {
    expect(decision().code).toBe(code);
  });

  it('keeps the home region’s code when only one of its zones is down', () => {
    const oneZone = { version: 1, usable: plain.topology.endpoints.map((e) => !(e.region === 'eu-north' && e.zone === 'az-1')), rttMs: [] };
    expect(decide(plain, BERLIN, null, oneZone).code).toBe('nearest');
  });
});

describe('the memo across health snapshots', () => {
  const plain = config();
  /** eu-north's zones: az-1 at `az1` ms, az-3 at `az3` ms; every other endpoint at 50 ms; all usable unless named. */
  const health = (version: number, az1: number, az3: number, down: string[] = []) => ({
    version,
    usable: plain.topology.endpoints.map((e) => !down.includes(e.origin)),
    rttMs: plain.topology.endpoints.map((e) => (e.region !== 'eu-north' ? 50 : e.zone === 'az-1' ? az1 : az3)),
  });
  const first = createGeoRouter(plain, health(1, 20, 30));
  const decision = first.route(facts(STOCKHOLM));
  expect(decision.home).toBe('eu-north');

  it('is handed on when an RTT moved without reordering any zone: the same decision object, no fresh decision', () => {
    const next = createGeoRouter(plain, health(2, 22, 35), null, first);
    expect(next.route(facts(STOCKHOLM))).toBe(decision);
  });

  it('starts over when the zone order changed', () => {
    const next = createGeoRouter(plain, health(2, 40, 30), null, first);
    const again = next.route(facts(STOCKHOLM));
    expect(again).not.toBe(decision);
    expect(originsOf(again).slice(0, 2)).toEqual(['http://10.3.3.10', 'http://10.3.1.10']);
  });

  it('starts over when an endpoint went down, or the config or the latency homes changed', () => {
    const down = createGeoRouter(plain, health(2, 22, 35, ['http://10.3.1.10']), null, first);
    expect(originsOf(down.route(facts(STOCKHOLM)))).not.toContain('http://10.3.1.10');
    const otherConfig = config({ localPreferenceKm: 900 });
    expect(createGeoRouter(otherConfig, health(2, 22, 35), null, first).route(facts(STOCKHOLM))).not.toBe(decision);
    const homes = new AreaHomes(plain).published;
    expect(createGeoRouter(plain, health(2, 22, 35), homes, first).route(facts(STOCKHOLM))).not.toBe(decision);
  });
});
