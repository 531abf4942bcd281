// The recorder and its readers in one thread, fed plain records: what a reload does to the tables and the totals, how
// the summary's rates cover the window, and what a worker's recorder needs before it counts.
import { afterEach, describe, expect, test } from 'vitest';
import type { MeridianConfig } from '../config/types.ts';
import { exchangeEnd, exchangeFailover, tunnelClose } from '../proxy/events.ts';
import { startMetrics } from './metrics.ts';
import { TrafficRecorder } from './recorder.ts';
import { summarize } from './summary.ts';
import { TrafficCatalog } from './traffic-tables.ts';
import { TWO_REGIONS, compile, exchange, failover, quietRuntime, tunnelClosed } from '../../test/support/synthetic-records.ts';

const NOW = Math.floor(Date.UTC(2026, 0, 1) / 1000);

const recorders: TrafficRecorder[] = [];
afterEach(() => {
  for (const recorder of recorders.splice(0)) recorder.close();
});

function subscribed(catalog: TrafficCatalog, config: MeridianConfig): TrafficRecorder {
  const recorder = new TrafficRecorder(catalog.describe(config.topology), (topology) => catalog.describe(topology)).subscribe();
  recorders.push(recorder);
  return recorder;
}

/** `name{labels} value` lines of one metric, by their label text. */
async function samples(scrape: Promise<{ body: string }>, name: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const line of (await scrape).body.split('\n')) {
    const match = /^(\w+)(\{.*\})? (\S+)$/.exec(line);
    if (match !== null && match[1] === name) out[match[2] ?? ''] = Number(match[3]);
  }
  return out;
}

describe('across a reload', () => {
  test('a new region makes a wider generation; totals only grow, and a straggler of the old topology counts under its own zone', async () => {
    const before = compile();
    // ap-south comes, eu-west/az-2 goes.
    const after = compile({
      ...TWO_REGIONS,
      regions: {
        'us-east': TWO_REGIONS.regions['us-east'],
        'eu-west': { location: [51.51, -0.13], zones: { 'az-1': { endpoints: ['http://10.1.1.1'] } } },
        'ap-south': { location: [19.08, 72.88], zones: { 'az-1': { endpoints: ['http://10.2.1.1'] } } },
      },
    });
    let serving = before;
    const catalog = new TrafficCatalog();
    subscribed(catalog, before);
    const metrics = startMetrics(quietRuntime(() => serving), catalog);
    const east = (config: MeridianConfig) => config.topology.endpoints[0];
    const euWest2 = before.topology.endpoints.find((e) => e.region === 'eu-west' && e.zone === 'az-2')!;
    for (let i = 0; i < 3; i++) exchangeEnd.publish(exchange(before.topology, east(before), NOW));
    expect(await samples(metrics.scrape(), 'meridian_requests_total')).toEqual({ '{region="us-east",zone="az-1",method="GET",code="2xx"}': 3 });

    serving = after;
    exchangeEnd.publish(exchange(after.topology, east(after), NOW));
    exchangeEnd.publish(exchange(after.topology, after.topology.endpoints.find((e) => e.region === 'ap-south')!, NOW));
    // Began before the reload, ends after it.
    exchangeEnd.publish(exchange(before.topology, euWest2, NOW, { status: 503 }));
    expect(catalog.generations.map((g) => g.generation)).toEqual([1, 2]);
    expect(await samples(metrics.scrape(), 'meridian_requests_total')).toEqual({
      '{region="us-east",zone="az-1",method="GET",code="2xx"}': 4,
      '{region="ap-south",zone="az-1",method="GET",code="2xx"}': 1,
      '{region="eu-west",zone="az-2",method="GET",code="5xx"}': 1,
    });
    expect(await samples(metrics.scrape(), 'meridian_request_duration_seconds_count')).toEqual({
      '{region="us-east",zone="az-1"}': 4,
      '{region="ap-south",zone="az-1"}': 1,
      '{region="eu-west",zone="az-2"}': 1,
    });
    metrics.close();

    // The summary lists the zones serving now, each with its history from both generations.
    const summary = summarize(catalog, after.topology, NOW + 1, 10);
    expect(summary.zones.map(({ region, zone, requests, rps }) => ({ region, zone, requests, rps }))).toEqual([
      { region: 'us-east', zone: 'az-1', requests: 4, rps: 0.4 },
      { region: 'us-east', zone: 'az-2', requests: 0, rps: 0 },
      { region: 'eu-west', zone: 'az-1', requests: 0, rps: 0 },
      { region: 'ap-south', zone: 'az-1', requests: 1, rps: 0.1 },
    ]);
  });

  test('a reload that keeps every zone and region name keeps counting into the same tables', () => {
    const catalog = new TrafficCatalog();
    const first = catalog.describe(compile().topology);
    expect(catalog.describe(compile().topology)).toBe(first);
    expect(catalog.generations).toHaveLength(1);
  });
});

describe('the summary', () => {
  test('rates cover the whole seconds of the window, split by the region that served each country; the second being filled is left out', () => {
    const config = compile();
    const catalog = new TrafficCatalog();
    subscribed(catalog, config);
    const [east, , , west] = config.topology.endpoints;
    for (let i = 0; i < 6; i++) exchangeEnd.publish(exchange(config.topology, west, NOW - 2, { country: 'SE' }));
    exchangeEnd.publish(exchange(config.topology, east, NOW - 1, { country: 'SE', durationMs: 900 }));
    exchangeEnd.publish(exchange(config.topology, null, NOW - 1, { country: 'SE', status: 400 }));
    exchangeEnd.publish(exchange(config.topology, east, NOW - 1, { country: 'GB', status: 502 }));
    exchangeEnd.publish(exchange(config.topology, east, NOW, { country: 'GB' }));
    const summary = summarize(catalog, config.topology, NOW, 2);
    expect(summary.countries).toEqual([
      { country: 'SE', requests: 8, rps: 4, servedBy: { 'eu-west': 3, 'us-east': 0.5, none: 0.5 } },
      { country: 'GB', requests: 2, rps: 0.5, servedBy: { 'us-east': 0.5 } },
    ]);
    const usEast = summary.zones.find((z) => z.region === 'us-east' && z.zone === 'az-1')!;
    expect(usEast).toMatchObject({ requests: 3, errors: 1, rps: 1, errorRatio: 0.5 });
    // The middle of its quarter-octave bucket.
    expect(Math.abs(usEast.p99Ms! / 900 - 1)).toBeLessThan(0.1);
    expect(summary.zones.at(-1)).toMatchObject({ region: 'none', zone: 'none', requests: 1, errors: 0 });
    // A whole window later the rates are gone and the totals stay.
    const later = summarize(catalog, config.topology, NOW + 11, 10);
    expect(later.countries.map(({ country, requests, rps }) => ({ country, requests, rps }))).toEqual([
      { country: 'SE', requests: 8, rps: 0 },
      { country: 'GB', requests: 2, rps: 0 },
    ]);
    expect(later.zones.find((z) => z.zone === 'az-1' && z.region === 'us-east')).toMatchObject({ requests: 3, rps: 0, p50Ms: null });
  });

  test('failovers newest first, the last twenty; misroutes of requests, where the exporter adds tunnels', async () => {
    const config = compile();
    const catalog = new TrafficCatalog();
    subscribed(catalog, config);
    const [east, , , west] = config.topology.endpoints;
    for (let i = 0; i < 25; i++) exchangeFailover.publish(failover(config.topology, i % 2 === 0 ? east : west, i % 2 === 0 ? west : east, i < 24 ? 'reset' : 'upstream_5xx'));
    exchangeEnd.publish(exchange(config.topology, east, NOW, { misrouteNearest: 'eu-west' }));
    tunnelClose.publish(tunnelClosed(config.topology, 'eu-west'));
    const summary = summarize(catalog, config.topology, NOW, 10);
    expect(summary.failovers).toHaveLength(20);
    expect(summary.failovers[0]).toEqual({
      at: expect.any(Number),
      from: { region: 'us-east', zone: 'az-1', endpoint: 'http://10.0.1.1' },
      to: { region: 'eu-west', zone: 'az-1', endpoint: 'http://10.1.1.1' },
      reason: 'upstream_5xx',
    });
    expect(summary.failovers[1]).toMatchObject({ from: { region: 'eu-west' }, to: { region: 'us-east' }, reason: 'reset' });
    expect(summary.misroutes).toEqual({ 'eu-west': 1 });
    const metrics = startMetrics(quietRuntime(() => config), catalog);
    expect(await samples(metrics.scrape(), 'meridian_misroutes_total')).toEqual({ '{nearest_region="eu-west"}': 2 });
    expect(await samples(metrics.scrape(), 'meridian_failovers_total')).toEqual({ '{from_region="us-east",to_region="eu-west"}': 13, '{from_region="eu-west",to_region="us-east"}': 12 });
    expect(await samples(metrics.scrape(), 'meridian_retries_total')).toEqual({ '{reason="connect_failure"}': 0, '{reason="reset"}': 24, '{reason="upstream_5xx"}': 1 });
    metrics.close();
  });
});

describe('a recorder on another thread', () => {
  test('counts through a structured clone of the descriptor into the same memory', () => {
    const config = compile();
    const catalog = new TrafficCatalog();
    const recorder = new TrafficRecorder(structuredClone(catalog.describe(config.topology))).subscribe();
    recorders.push(recorder);
    exchangeEnd.publish(exchange(config.topology, config.topology.endpoints[0], NOW));
    expect(summarize(catalog, config.topology, NOW, 10).zones[0]).toMatchObject({ region: 'us-east', zone: 'az-1', requests: 1 });
  });

  test('without the catalog, a topology its tables lack is refused until the wider tables are attached', () => {
    const catalog = new TrafficCatalog();
    const recorder = new TrafficRecorder(catalog.describe(compile().topology));
    const wider = compile({ ...TWO_REGIONS, regions: { ...TWO_REGIONS.regions, 'ap-south': { location: [19.08, 72.88], zones: { 'az-1': { endpoints: ['http://10.2.1.1'] } } } } });
    const record = exchange(wider.topology, wider.topology.endpoints.at(-1)!, NOW);
    expect(() => recorder.countExchange(record)).toThrow(/generation 1 lack zones or regions/);
    recorder.attach(catalog.describe(wider.topology));
    recorder.countExchange(record);
    expect(summarize(catalog, wider.topology, NOW, 10).zones.find((z) => z.region === 'ap-south')).toMatchObject({ requests: 1 });
    expect(() => recorder.attach(catalog.generations[0].descriptor)).toThrow(/does not extend/);
  });
});
