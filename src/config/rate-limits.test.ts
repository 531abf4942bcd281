import { describe, expect, test } from 'vitest';
import { compileConfig } from './compile.ts';
import { ConfigError } from './errors.ts';

const raw = (rateLimits: Record<string, unknown>): Record<string, unknown> => ({
  self: { region: 'local', zone: 'az-1' },
  regions: { local: { location: [50.11, 8.68], zones: { 'az-1': { endpoints: ['http://127.0.0.1:1'] } } } },
  rateLimits,
});

function problems(rateLimits: Record<string, unknown>): string[] {
  try {
    compileConfig(raw(rateLimits), {});
    return [];
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.path}: ${p.message}`);
    throw err;
  }
}

describe('rateLimits', () => {
  const rule = (name: string) => ({ name, rate: 10, burst: 20 });

  test('rules compile with their matchers; two rules under one name are refused (they would share a metric label)', () => {
    const config = compileConfig(raw({ rules: [{ ...rule('api'), pathPrefix: '/v1/', methods: ['POST'] }] }), {});
    expect(config.rateLimits.rules.map((r) => [r.name, r.match.pathPrefix, [...(r.match.methods ?? [])]])).toEqual([['api', '/v1/', ['POST']]]);
    expect(problems({ rules: [rule('api'), rule('api')] })).toEqual(['rateLimits.rules[1].name: "api" is also the name of rateLimits.rules[0]']);
  });

  test('a table that would not fit in memory is refused at load, naming maxClients, instead of failing the start', () => {
    expect(problems({ maxClients: 10_000_000, rules: Array.from({ length: 32 }, (_, i) => rule(`r${i}`)) })).toEqual([
      expect.stringMatching(/^rateLimits\.maxClients: 10000000 clients × 32 rules need \d+ MiB of shared memory; at most 1024 MiB$/),
    ]);
    expect(problems({ maxClients: 100_000, rules: [rule('api')] })).toEqual([]);
  });
});
