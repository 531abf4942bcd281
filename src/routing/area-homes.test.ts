// Latency order's hysteresis with time passed in: two regions at nearly the same distance from a client, one made slow.
// The home moves only after the challenger has led by the margin for the whole window, never while the two alternate
// faster than that, comes back the same way, stays inside a fence, and survives a reload; the router then sends the
// area's clients there and explains the cost term by term.
import { describe, expect, it } from 'vitest';
import { compileConfig } from '../config/compile.ts';
import type { MeridianConfig } from '../config/types.ts';
import type { GeoLocation } from '../geo/database.ts';
import { AREA_COUNT, AreaHomes, areaCentre, areaOf, MOVED } from './area-homes.ts';
import { createGeoRouter, decide } from './geo-router.ts';
import { explainRoute, formatExplanation } from './explain.ts';
import { KM_PER_MS, UNMEASURED, type RegionLatency } from './latency-cost.ts';

const WINDOW_MS = 30_000;
const MARGIN_MS = 10;
/** West and east of the client, west nearer by ~30 km (0.3 ms); this instance lives far north of both. */
const REGIONS = { north: [64, 5], west: [46, 0], east: [46, 10.4] } as const;
/** At the centre of its 2° area, so its own distance order and its area's agree. */
const CLIENT: GeoLocation = Object.freeze({ lat: 47, lon: 5, country: 'CH', continent: 'EU', accuracyKm: 20 });

function config(routing: Record<string, unknown> = {}): MeridianConfig {
  const regions = Object.fromEntries(Object.entries(REGIONS).map(([name, location], i) => [name, { location, zones: { 'az-1': { endpoints: [`http://10.0.${i}.1`] } } }]));
  return compileConfig({ self: { region: 'north', zone: 'az-1' }, regions, routing: { latency: { margin: `${MARGIN_MS}ms`, window: `${WINDOW_MS}ms` }, ...routing } }, {});
}

/** Measurements by region in config order (north, west, east): `slowMs` added to east's RTT over its floor of 20 ms. */
function measured(eastSlowMs: number, eastErrors = 0): RegionLatency[] {
  return [UNMEASURED, { rttMs: 20, floorMs: 20, errorRatio: 0 }, { rttMs: 20 + eastSlowMs, floorMs: 20, errorRatio: eastErrors }];
}

const cell = (homes: AreaHomes, set = 0): number => homes.published.homes[set * AREA_COUNT + areaOf(CLIENT.lat, CLIENT.lon)];
const regionAt = (c: MeridianConfig, held: number): string => c.topology.regions[held & ~MOVED].name;

describe('the home of a client area', () => {
  const c = config();
  const distanceHome = decide(c, CLIENT, null).home!;

  it('starts where distance puts the area, and the client area is the 2° cell around it', () => {
    const homes = new AreaHomes(c);
    expect(distanceHome).toBe('west');
    expect(regionAt(c, cell(homes))).toBe(distanceHome);
    const centre = areaCentre(areaOf(CLIENT.lat, CLIENT.lon));
    expect(centre).toEqual({ lat: CLIENT.lat, lon: CLIENT.lon });
    expect(areaOf(CLIENT.lat + 0.99, CLIENT.lon - 0.99)).toBe(areaOf(CLIENT.lat, CLIENT.lon));
    expect(areaOf(CLIENT.lat + 1, CLIENT.lon)).not.toBe(areaOf(CLIENT.lat, CLIENT.lon));
  });

  it('moves to the other region only once it has led by the margin for the whole window', () => {
    const homes = new AreaHomes(c);
    const slowed = distanceHome === 'east' ? 'east' : 'west';
    const latency = (slow: number): RegionLatency[] => (slowed === 'east' ? measured(slow) : [measured(0)[0], measured(slow)[2], measured(0)[1]]);
    const other = slowed === 'east' ? 'west' : 'east';
    let now = 1_000_000;
    expect(homes.update(latency(60), now)).toBe(true); // the measured cost moved: published, but the home holds
    expect(regionAt(c, cell(homes))).toBe(slowed);
    expect(homes.pending(0, areaOf(CLIENT.lat, CLIENT.lon))).toMatchObject({ region: other, since: now, leadMs: expect.closeTo(60, 0) });
    for (const step of [1_000, 10_000, 20_000, 29_000]) {
      homes.update(latency(60), now + step);
      expect(regionAt(c, cell(homes)), `${step} ms into the window`).toBe(slowed);
    }
    now += WINDOW_MS;
    expect(homes.update(latency(60), now)).toBe(true);
    expect(regionAt(c, cell(homes))).toBe(other);
    expect(cell(homes) & MOVED).toBe(MOVED);
    expect(homes.pending(0, areaOf(CLIENT.lat, CLIENT.lon))).toBeNull();

    // Going back to the distance home takes the window too, but any lead at all: a passing slowdown must not leave
    // the area on a region that is farther for good.
    homes.update(latency(0), now + 1_000);
    homes.update(latency(0), now + 1_000 + WINDOW_MS - 1_000);
    expect(regionAt(c, cell(homes)), 'within the window').toBe(other);
    homes.update(latency(0), now + 1_000 + WINDOW_MS);
    expect(regionAt(c, cell(homes))).toBe(slowed);
    expect(cell(homes) & MOVED).toBe(0);
  });

  it('never leaves the distance home for a lead under the margin, however long it lasts', () => {
    const homes = new AreaHomes(c);
    // West 8.5 ms slower: east then leads by about 8 ms, under the 10 ms margin.
    const latency = [UNMEASURED, { rttMs: 28.5, floorMs: 20, errorRatio: 0 }, { rttMs: 20, floorMs: 20, errorRatio: 0 }];
    for (let t = 0; t <= WINDOW_MS * 10; t += 1_000) homes.update(latency, t);
    expect(regionAt(c, cell(homes))).toBe('west');
    expect(homes.pending(0, areaOf(CLIENT.lat, CLIENT.lon))).toBeNull();
  });

  it('does not move back and forth when the two alternate faster than the window', () => {
    const homes = new AreaHomes(c);
    const slowIndex = distanceHome === 'east' ? 2 : 1;
    const start = 5_000_000;
    const seen = new Set<number>();
    // Slow for 10 s, fast for 10 s, for ten minutes, checked every second.
    for (let t = 0; t <= 600_000; t += 1_000) {
      const slow = Math.floor(t / 10_000) % 2 === 0 ? 80 : 0;
      const latency = measured(0);
      latency[slowIndex] = { rttMs: 20 + slow, floorMs: 20, errorRatio: 0 };
      homes.update(latency, start + t);
      seen.add(cell(homes));
    }
    expect([...seen].map((h) => regionAt(c, h))).toEqual([distanceHome]);
  });

  it('counts errors as cost: a region failing one request in four sinks', () => {
    const homes = new AreaHomes(c);
    const failing = distanceHome === 'east' ? measured(0, 0.25) : [UNMEASURED, { rttMs: 20, floorMs: 20, errorRatio: 0.25 }, { rttMs: 20, floorMs: 20, errorRatio: 0 }];
    homes.update(failing, 0);
    homes.update(failing, WINDOW_MS);
    expect(regionAt(c, cell(homes))).not.toBe(distanceHome);
  });

  it('never homes a fenced area outside its fence, however slow the fence is', () => {
    const fenced = config({ fences: [{ name: 'ch', match: { country: ['CH'] }, regions: [distanceHome], mode: 'strict' }] });
    const homes = new AreaHomes(fenced);
    const slowIndex = distanceHome === 'east' ? 2 : 1;
    const latency = measured(0);
    latency[slowIndex] = { rttMs: 500, floorMs: 20, errorRatio: 1 };
    homes.update(latency, 0);
    homes.update(latency, WINDOW_MS * 2);
    expect(regionAt(fenced, cell(homes, 1))).toBe(distanceHome);
    expect(regionAt(fenced, cell(homes, 0))).not.toBe(distanceHome);
    const decision = createGeoRouter(fenced, undefined, homes.published).route({ clientIp: '192.0.2.1', host: undefined, location: CLIENT, project: undefined, pinnedRegion: undefined });
    expect(decision.home).toBe(distanceHome);
  });

  it('keeps moved homes across a reload that keeps the regions', () => {
    const homes = new AreaHomes(c);
    const slowIndex = distanceHome === 'east' ? 2 : 1;
    const latency = measured(0);
    latency[slowIndex] = { rttMs: 90, floorMs: 20, errorRatio: 0 };
    homes.update(latency, 0);
    homes.update(latency, WINDOW_MS);
    const moved = regionAt(c, cell(homes));
    expect(moved).not.toBe(distanceHome);
    expect(regionAt(c, cell(new AreaHomes(config({ localPreferenceKm: 900 }), homes)))).toBe(moved);
  });
});

describe('latency order in the router', () => {
  const c = config();
  const route = (homes: AreaHomes | null) =>
    createGeoRouter(c, undefined, homes?.published ?? null).route({ clientIp: '192.0.2.1', host: undefined, location: CLIENT, project: undefined, pinnedRegion: undefined });

  it('sends the area to its moved home, says why, and explains every term', () => {
    const unmoved = route(null);
    const homes = new AreaHomes(c);
    const slowIndex = unmoved.home === 'east' ? 2 : 1;
    const latency = measured(0);
    latency[slowIndex] = { rttMs: 75, floorMs: 20, errorRatio: 0.1 };
    homes.update(latency, 0);
    expect(route(homes).home, 'within the window').toBe(unmoved.home);
    homes.update(latency, WINDOW_MS);
    const decision = route(homes);
    expect(decision.home).not.toBe(unmoved.home);
    expect(decision.code).toBe('latency');
    expect(decision.candidates[0].region).toBe(decision.home);
    expect(decision.reason).toMatch(new RegExp(`^latency: ${decision.home} costs [\\d.]+ ms, ${unmoved.home} \\(nearer\\) [\\d.]+ ms`));
    const slow = decision.regions.find((r) => r.region === unmoved.home)!;
    expect(slow.cost).toEqual({ distanceMs: slow.distanceKm! / KM_PER_MS, slownessMs: 55, errorMs: 20, localMs: 0, totalMs: slow.distanceKm! / KM_PER_MS + 75 });
    const local = decision.regions.find((r) => r.region === 'north')!;
    expect(local.cost!.localMs).toBe(-10);
    const text = formatExplanation(explainRoute('192.0.2.1', CLIENT, decision));
    expect(text).toContain('cost ms = distance + slowness + errors + local');
    expect(text).toMatch(new RegExp(`${unmoved.home} .* = [\\d.]+ \\+ 55\\.0 \\+ 20\\.0 \\+ 0\\.0 .*rtt 75\\.0 ms, floor 20\\.0 ms, errors 10\\.0 %`));
  });

  it('leaves distance order alone: no cost, no area, the measured terms ignored', () => {
    const d = config({ order: 'distance' });
    const homes = new AreaHomes(d);
    const latency = measured(0);
    latency[1] = latency[2] = { rttMs: 900, floorMs: 20, errorRatio: 1 };
    homes.update(latency, 0);
    homes.update(latency, WINDOW_MS);
    const decision = createGeoRouter(d, undefined, homes.published).route({ clientIp: '192.0.2.1', host: undefined, location: CLIENT, project: undefined, pinnedRegion: undefined });
    expect(decision.home).toBe(decide(d, CLIENT, null).home);
    expect(decision.regions.every((r) => r.cost === null)).toBe(true);
    expect(decision.area).toBeNull();
  });
});
