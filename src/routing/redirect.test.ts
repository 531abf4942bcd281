// Redirect mode's decision over real compiled configs and real router decisions: which requests get a 307/308 to
// their home region's public host, the exact Location, and every case that must be proxied instead.
import { describe, expect, it } from 'vitest';
import { compileConfig } from '../config/compile.ts';
import type { MeridianConfig } from '../config/types.ts';
import type { GeoLocation } from '../geo/database.ts';
import type { HealthSnapshot } from '../health/state.ts';
import { ALL_HEALTHY, decide } from './geo-router.ts';
import { compilePlan, hostnameOf, redirectFor, redirectPlan, type RedirectRequest } from './redirect.ts';
import type { RouteDecision } from './types.ts';

const at = (lat: number, lon: number, country: string, continent: string): GeoLocation => Object.freeze({ lat, lon, country, continent, accuracyKm: 20 });
const BERLIN = at(52.52, 13.4, 'DE', 'EU');
const NEW_YORK = at(40.71, -74.01, 'US', 'NA');
const SINGAPORE = at(1.35, 103.82, 'SG', 'AS');

/** This instance is in Frankfurt; New York and Singapore are far away, Singapore without a public host. */
function config(routing: Record<string, unknown> = {}, publicHosts: Record<string, string | undefined> = {}): MeridianConfig {
  const hosts: Record<string, string | undefined> = { fra: 'fra.example.test', nyc: 'nyc.example.test', ...publicHosts };
  const region = (name: string, location: [number, number], octet: number) => ({
    location,
    ...(hosts[name] === undefined ? {} : { publicHost: hosts[name] }),
    zones: { 'az-1': { endpoints: [`http://10.${octet}.1.10`] }, 'az-2': { endpoints: [`http://10.${octet}.2.10`] } },
  });
  return compileConfig(
    {
      self: { region: 'fra', zone: 'az-1' },
      regions: { fra: region('fra', [50.11, 8.68], 1), nyc: region('nyc', [40.71, -74.0], 2), sgp: region('sgp', [1.29, 103.85], 3) },
      routing: { redirects: [{ pathPrefix: '/v1/storage/', methods: ['GET', 'HEAD'] }], ...routing },
    },
    {},
  );
}

const TARGET = '/v1/storage/buckets/b1/files/f1/download?project=demo&a=%2Fx%20y&a=2&empty=&=odd;k=v';

function request(extra: Partial<RedirectRequest> = {}): RedirectRequest {
  return { host: 'api.example.test', forwardedHost: 'api.example.test', target: TARGET, method: 'GET', secure: true, websocket: false, uploadChunk: false, ...extra };
}

/** Health with the named regions' endpoints all down. */
function down(c: MeridianConfig, ...regions: string[]): HealthSnapshot {
  return { version: 1, usable: c.topology.endpoints.map((e) => !regions.includes(e.region)), rttMs: [] };
}

describe('a request whose home is another region with a public host', () => {
  const c = config();
  const plan = compilePlan(c);

  it('is redirected there with 307, path and query exactly as received', () => {
    const redirect = redirectFor(plan, decide(c, NEW_YORK, null), request());
    expect(redirect).toEqual({ status: 307, location: `https://nyc.example.test${TARGET}`, region: 'nyc', regionIndex: 1, rule: 'redirects[0]' });
  });

  it('keeps the scheme the client used: http when neither TLS nor a trusted proxy said https', () => {
    expect(redirectFor(plan, decide(c, NEW_YORK, null), request({ secure: false }))?.location).toBe(`http://nyc.example.test${TARGET}`);
  });

  it('gets the status of the first rule that matches, in file order', () => {
    const two = config({
      redirects: [
        { name: 'downloads', pathPrefix: '/v1/storage/', methods: ['GET'], status: 308 },
        { name: 'everything', status: 307 },
      ],
    });
    const decision = decide(two, NEW_YORK, null);
    expect(redirectFor(compilePlan(two), decision, request())).toMatchObject({ status: 308, rule: 'downloads' });
    expect(redirectFor(compilePlan(two), decision, request({ method: 'POST' }))).toMatchObject({ status: 307, rule: 'everything' });
  });

  it('is proxied when no rule matches its method or path', () => {
    const decision = decide(c, NEW_YORK, null);
    expect(redirectFor(plan, decision, request({ method: 'POST' }))).toBeNull();
    expect(redirectFor(plan, decision, request({ target: '/v1/databases/main/collections' }))).toBeNull();
    // A prefix is a prefix of the target as sent, not of a normalized path.
    expect(redirectFor(plan, decision, request({ target: '/v1//storage/x' }))).toBeNull();
  });

  it('matches host rules on the Host without its port, in any case, exact or by suffix', () => {
    const hosts = config({ redirects: [{ host: 'cdn.example.test' }, { host: '*.files.example.test', status: 308 }] });
    const decision = decide(hosts, NEW_YORK, null);
    const p = compilePlan(hosts);
    expect(redirectFor(p, decision, request({ host: 'CDN.Example.Test:8443' }))?.status).toBe(307);
    expect(redirectFor(p, decision, request({ host: 'eu.files.example.test' }))?.status).toBe(308);
    expect(redirectFor(p, decision, request({ host: 'api.example.test' }))).toBeNull();
    expect(redirectFor(p, decision, request({ host: undefined, forwardedHost: undefined }))).toBeNull();
  });

  it('is proxied when the client already asked for that public host, so DNS sending the name here cannot loop it', () => {
    const decision = decide(c, NEW_YORK, null);
    expect(redirectFor(plan, decision, request({ host: 'NYC.example.test:443', forwardedHost: 'NYC.example.test:443' }))).toBeNull();
    // Behind a trusted proxy that rewrote Host, the name the client used is the forwarded one.
    expect(redirectFor(plan, decision, request({ host: 'internal-lb', forwardedHost: 'nyc.example.test' }))).toBeNull();
    expect(redirectFor(plan, decision, request({ host: 'internal-lb', forwardedHost: 'api.example.test' }))?.region).toBe('nyc');
  });

  it('is never redirected as a WebSocket upgrade or an upload chunk', () => {
    const decision = decide(c, NEW_YORK, null);
    expect(redirectFor(plan, decision, request({ websocket: true }))).toBeNull();
    expect(redirectFor(plan, decision, request({ uploadChunk: true }))).toBeNull();
  });
});

describe('a request that stays proxied', () => {
  const c = config();
  const plan = compilePlan(c);

  it('when its home is this instance’s region', () => {
    expect(decide(c, BERLIN, null).home).toBe('fra');
    expect(redirectFor(plan, decide(c, BERLIN, null), request())).toBeNull();
  });

  it('when its location is unknown (the home is then this region)', () => {
    expect(redirectFor(plan, decide(c, null, null), request())).toBeNull();
  });

  it('when its home region has no public host', () => {
    const decision = decide(c, SINGAPORE, null);
    expect(decision.home).toBe('sgp');
    expect(redirectFor(plan, decision, request())).toBeNull();
  });

  it('when its home region is down and the first candidate is elsewhere (failover)', () => {
    const decision = decide(c, NEW_YORK, null, down(c, 'nyc'));
    expect(decision.home).toBe('nyc');
    expect(decision.tiers[0][0].region).toBe('fra');
    expect(redirectFor(plan, decision, request())).toBeNull();
    // One zone of the home region down still leaves it first: redirected.
    const oneZone: HealthSnapshot = { version: 1, usable: c.topology.endpoints.map((e) => !(e.region === 'nyc' && e.zone === 'az-1')), rttMs: [] };
    expect(redirectFor(plan, decide(c, NEW_YORK, null, oneZone), request())?.region).toBe('nyc');
  });

  it('in panic, when nothing is healthy', () => {
    const decision = decide(c, NEW_YORK, null, down(c, 'fra', 'nyc', 'sgp'));
    expect(decision.panic).toBe(true);
    expect(decision.tiers[0][0].region).toBe('nyc');
    expect(redirectFor(plan, decision, request())).toBeNull();
  });

  it('with no candidate at all', () => {
    const strict = config({ fences: [{ name: 'us-only', match: { country: ['US'] }, regions: ['nyc'], mode: 'strict' }] });
    const decision = decide(strict, NEW_YORK, null, down(strict, 'nyc'));
    expect(decision.tiers).toEqual([]);
    expect(redirectFor(compilePlan(strict), decision, request())).toBeNull();
  });

  it('when the upload is pinned to this region, whatever the client’s nearest region', () => {
    const decision = decide(c, NEW_YORK, { kind: 'upload', key: 'fra', regions: ['fra'] });
    expect(decision.home).toBe('fra');
    expect(redirectFor(plan, decision, request())).toBeNull();
  });
});

describe('fences', () => {
  it('a strict fence keeping a New York client in Frankfurt: its home is Frankfurt, never a redirect to New York', () => {
    const c = config({ fences: [{ name: 'eu-processing', match: { country: ['US'] }, regions: ['fra'], mode: 'strict' }] });
    const decision = decide(c, NEW_YORK, null);
    expect(decision.home).toBe('fra');
    expect(redirectFor(compilePlan(c), decision, request())).toBeNull();
  });

  it('a strict fence that allows the home region: the redirect stays inside it', () => {
    const c = config({ fences: [{ name: 'atlantic', match: { country: ['US'] }, regions: ['fra', 'nyc'], mode: 'strict' }] });
    expect(redirectFor(compilePlan(c), decide(c, NEW_YORK, null), request())?.region).toBe('nyc');
  });

  it('a decision whose home lies outside its fence is never redirected (the guard the router makes redundant today)', () => {
    const c = config({ fences: [{ name: 'eu-processing', match: { country: ['US'] }, regions: ['fra'], mode: 'strict' }] });
    const real = decide(c, NEW_YORK, null);
    const nyc = c.topology.endpoints.filter((e) => e.region === 'nyc');
    const forged: RouteDecision = { ...real, home: 'nyc', tiers: [nyc], candidates: nyc };
    expect(redirectFor(compilePlan(c), forged, request())).toBeNull();
    // The same decision without the fence would be redirected: the fence alone stops it.
    expect(redirectFor(compilePlan(c), { ...forged, fence: null }, request())?.region).toBe('nyc');
  });

  it('a preferred fence spilling to another region while its own are down: proxied, not redirected', () => {
    const c = config({ fences: [{ name: 'us-first', match: { country: ['US'] }, regions: ['nyc'], mode: 'preferred' }] });
    const decision = decide(c, NEW_YORK, null, down(c, 'nyc'));
    expect(decision.tiers[0][0].region).toBe('fra');
    expect(redirectFor(compilePlan(c), decision, request())).toBeNull();
  });
});

describe('the plan', () => {
  it('is compiled once per config snapshot', () => {
    const c = config();
    expect(redirectPlan(c)).toBe(redirectPlan(c));
    expect(redirectPlan(config())).not.toBe(redirectPlan(c));
  });

  it('holds each public host as Location prefixes: a trailing slash dropped, a written scheme kept', () => {
    const c = config({}, { fra: undefined, nyc: 'nyc.example.test:8443/', sgp: 'HTTPS://sgp.example.test' });
    const { targets } = compilePlan(c);
    expect(targets.get('fra')).toBeUndefined();
    expect(targets.get('nyc')).toEqual({ index: 1, http: 'http://nyc.example.test:8443', https: 'https://nyc.example.test:8443', hostname: 'nyc.example.test' });
    expect(targets.get('sgp')).toEqual({ index: 2, http: 'https://sgp.example.test', https: 'https://sgp.example.test', hostname: 'sgp.example.test' });
    expect(redirectFor(compilePlan(c), decide(c, SINGAPORE, null, ALL_HEALTHY), request({ secure: false }))?.location).toBe(`https://sgp.example.test${TARGET}`);
  });

  it('reads the Host only when some rule names one', () => {
    expect(compilePlan(config()).needsHostname).toBe(false);
    expect(compilePlan(config({ redirects: [{ host: '*.example.test' }] })).needsHostname).toBe(true);
  });

  it('puts a Host in the matcher’s form: no port, lower case, IPv6 literals kept whole', () => {
    expect(hostnameOf('API.Example.test:443')).toBe('api.example.test');
    expect(hostnameOf('[2001:DB8::1]:8080')).toBe('[2001:db8::1]');
    expect(hostnameOf('[2001:db8::1]')).toBe('[2001:db8::1]');
    expect(hostnameOf(undefined)).toBeUndefined();
  });
});
