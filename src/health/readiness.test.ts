// Readiness for GeoDNS under each policy: what counts as "this AZ can still serve locally", and draining.
import { describe, expect, it } from 'vitest';
import { compileConfig } from '../config/compile.ts';
import type { MeridianConfig } from '../config/types.ts';
import { ALL_HEALTHY } from '../routing/geo-router.ts';
import { readiness } from './readiness.ts';
import { HealthState, type HealthSnapshot } from './state.ts';

type Policy = MeridianConfig['readiness']['policy'];

/** us-east/az-1 (two endpoints, this instance's zone), us-east/az-2 (one) and eu-north/az-1 (one). */
function config(policy?: Policy): MeridianConfig {
  return compileConfig(
    {
      self: { region: 'us-east', zone: 'az-1' },
      regions: {
        'us-east': { location: [39.04, -77.49], zones: { 'az-1': { endpoints: ['http://10.1.1.1', 'http://10.1.1.2'] }, 'az-2': { endpoints: ['http://10.1.2.1'] } } },
        'eu-north': { location: [59.33, 18.07], zones: { 'az-1': { endpoints: ['http://10.3.1.1'] } } },
      },
      ...(policy === undefined ? {} : { readiness: { policy } }),
    },
    {},
  );
}

type Where = 'zone' | 'sibling' | 'remote';
const WHERE: Record<Where, (c: MeridianConfig['topology']['endpoints'][number]) => boolean> = {
  zone: (e) => e.region === 'us-east' && e.zone === 'az-1',
  sibling: (e) => e.region === 'us-east' && e.zone === 'az-2',
  remote: (e) => e.region === 'eu-north',
};

/** A snapshot from the real state machine, with the endpoints in `down` taken down by failing probes. */
function healthWith(cfg: MeridianConfig, down: readonly Where[], downFirstOfZone = false): HealthSnapshot {
  const state = new HealthState(cfg.topology.endpoints.length, { rise: 2, fall: 1 });
  const local = cfg.topology.endpoints.filter(WHERE.zone);
  for (const endpoint of cfg.topology.endpoints) {
    const isDown = down.some((where) => WHERE[where](endpoint)) || (downFirstOfZone && endpoint === local[0]);
    if (isDown) state.probe(endpoint.index, false, null, 0, 'ECONNREFUSED');
  }
  return state.snapshot;
}

describe('readiness', () => {
  it('defaults to the local-region policy', () => {
    expect(config().readiness.policy).toBe('local-region');
  });

  it.each([
    { story: 'everything healthy', down: [] as Where[], zone: true, region: true, any: true },
    { story: 'the local zone down', down: ['zone'] as Where[], zone: false, region: true, any: true },
    { story: 'the sibling zone down', down: ['sibling'] as Where[], zone: true, region: true, any: true },
    { story: 'the local region down', down: ['zone', 'sibling'] as Where[], zone: false, region: false, any: true },
    { story: 'everything down', down: ['zone', 'sibling', 'remote'] as Where[], zone: false, region: false, any: false },
  ])('with $story: local-zone $zone, local-region $region, any-region $any', ({ down, zone, region, any }) => {
    const verdicts = (['local-zone', 'local-region', 'any-region'] as const).map((policy) => {
      const cfg = config(policy);
      return readiness(cfg, healthWith(cfg, down), false).ok;
    });
    expect(verdicts).toEqual([zone, region, any]);
  });

  it.each([
    { policy: 'local-zone' as const, ok: '1 of 2 endpoints healthy in us-east/az-1', gone: 'no healthy endpoint in us-east/az-1 (policy local-zone)' },
    { policy: 'local-region' as const, ok: '2 of 3 endpoints healthy in us-east', gone: 'no healthy endpoint in us-east (policy local-region)' },
    { policy: 'any-region' as const, ok: '3 of 4 endpoints healthy in any region', gone: 'no healthy endpoint in any region (policy any-region)' },
  ])('$policy says what it counted and why it failed', ({ policy, ok, gone }) => {
    const cfg = config(policy);
    expect(readiness(cfg, healthWith(cfg, [], true), false)).toEqual({ ok: true, reason: ok });
    expect(readiness(cfg, healthWith(cfg, ['zone', 'sibling', 'remote']), false)).toEqual({ ok: false, reason: gone });
  });

  it('counts an ejected endpoint as unhealthy', () => {
    const cfg = config('local-zone');
    const state = new HealthState(cfg.topology.endpoints.length, { rise: 2, fall: 3 });
    for (const endpoint of cfg.topology.endpoints.filter(WHERE.zone)) state.eject(endpoint.index, 30_000);
    expect(readiness(cfg, state.snapshot, false).ok).toBe(false);
  });

  it('takes every endpoint as healthy before anything is known', () => {
    expect(readiness(config('local-zone'), ALL_HEALTHY, false)).toEqual({ ok: true, reason: '2 of 2 endpoints healthy in us-east/az-1' });
  });

  it.each(['local-zone', 'local-region', 'any-region'] as const)('is not ready while draining, however healthy (%s)', (policy) => {
    const cfg = config(policy);
    expect(readiness(cfg, healthWith(cfg, []), true)).toEqual({ ok: false, reason: 'draining: shutting down' });
  });
});
