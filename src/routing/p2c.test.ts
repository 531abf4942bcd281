// Endpoint choice inside a zone. The conformance cases hold for any picker (hono's common.case idea); the rest pin
// down power-of-two-choices itself, with randomness injected so every case is deterministic.
import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../config/types.ts';
import { pickInZone, type EndpointLoad } from './p2c.ts';

type Picker = (tier: readonly Endpoint[], tried: number, load: EndpointLoad, random: () => number) => number;

/** Endpoint indexes deliberately differ from tier positions, so a picker mixing the two fails. */
function tierOf(indexes: readonly number[]): Endpoint[] {
  return indexes.map((index) => ({ index, key: `r/z/${index}`, origin: `http://10.0.0.${index}`, region: 'r', zone: 'z', tls: false, hostname: `10.0.0.${index}`, port: 80 }));
}

/** In-flight counts and latencies (in ms) by endpoint index; the rest are 0 (latency 0: not measured yet). */
type ByIndex = { readonly [index: number]: number | undefined };

function loadOf(size: number, inflight: ByIndex = {}, latencyMs: ByIndex = {}): EndpointLoad {
  const load = { inflight: new Int32Array(size), latencyUs: new Int32Array(size) };
  for (const [index, value] of Object.entries(inflight)) load.inflight[Number(index)] = value ?? 0;
  for (const [index, value] of Object.entries(latencyMs)) load.latencyUs[Number(index)] = (value ?? 0) * 1000;
  return load;
}

/** mulberry32: a seeded generator, so "random" cases repeat exactly. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** Replays the given draws in order. */
function draws(...values: number[]): () => number {
  let i = 0;
  return () => {
    if (i >= values.length) throw new Error('the picker drew more random numbers than expected');
    return values[i++];
  };
}

const PICKERS: { name: string; pick: Picker }[] = [{ name: 'power of two choices', pick: pickInZone }];

describe.each(PICKERS)('conformance: $name', ({ pick }) => {
  it('never returns a tried position, for every tier size up to 8 and every tried mask', () => {
    const random = seeded(1);
    for (let size = 1; size <= 8; size++) {
      const tier = tierOf(Array.from({ length: size }, (_, i) => (i * 5 + 3) % 11));
      const load = loadOf(11);
      for (let tried = 0; tried < 1 << size; tried++) {
        const all = tried === (1 << size) - 1;
        for (let round = 0; round < 8; round++) {
          const position = pick(tier, tried, load, random);
          if (all) {
            expect(position).toBe(-1);
            break;
          }
          expect(position, `size ${size}, tried ${tried.toString(2)}`).toBeGreaterThanOrEqual(0);
          expect(position).toBeLessThan(size);
          expect(tried & (1 << position), `size ${size}, tried ${tried.toString(2)} → ${position}`).toBe(0);
        }
      }
    }
  });

  it('returns -1 for an empty tier and once every position was tried', () => {
    expect(pick([], 0, loadOf(1), seeded(2))).toBe(-1);
    expect(pick(tierOf([4]), 0b1, loadOf(5), seeded(2))).toBe(-1);
    expect(pick(tierOf([4, 2, 0]), 0b111, loadOf(5), seeded(2))).toBe(-1);
  });

  it('visits every position exactly once when each pick is marked tried', () => {
    const random = seeded(3);
    for (let size = 1; size <= 8; size++) {
      const tier = tierOf(Array.from({ length: size }, (_, i) => i));
      const load = loadOf(size, { 0: 3 }, { 1: 40 });
      let tried = 0;
      const order: number[] = [];
      for (let position = pick(tier, tried, load, random); position !== -1; position = pick(tier, tried, load, random)) {
        order.push(position);
        tried |= 1 << position;
      }
      expect(order.toSorted()).toEqual(Array.from({ length: size }, (_, i) => i));
    }
  });

  it('spreads picks roughly evenly over equally loaded endpoints', () => {
    const tier = tierOf([9, 4, 6, 1, 0]);
    const load = loadOf(10, {}, { 9: 5, 4: 5, 6: 5, 1: 5, 0: 5 });
    const random = seeded(4);
    const counts = [0, 0, 0, 0, 0];
    const picks = 50_000;
    for (let i = 0; i < picks; i++) counts[pick(tier, 0, load, random)]++;
    for (const count of counts) expect(count / picks).toBeGreaterThan(0.18);
    for (const count of counts) expect(count / picks).toBeLessThan(0.22);
  });

  it('spreads picks evenly over what is left untried', () => {
    const tier = tierOf([0, 1, 2, 3]);
    const random = seeded(5);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 30_000; i++) counts[pick(tier, 0b0101, loadOf(4), random)]++;
    expect(counts[0] + counts[2]).toBe(0);
    expect(counts[1] / 30_000).toBeGreaterThan(0.47);
    expect(counts[3] / 30_000).toBeGreaterThan(0.47);
  });
});

describe('power of two choices', () => {
  // Draws 0.0 then 0.0 sample positions 0 and 1 of an untried tier of four; 0.99 then 0.99 sample 3 and 2.
  it.each([
    { story: 'fewer in flight wins at equal latency', inflight: { 10: 4, 11: 1 }, latency: { 10: 5, 11: 5 }, draw: [0, 0], winner: 1 },
    { story: 'lower latency wins at equal in-flight', inflight: { 10: 2, 11: 2 }, latency: { 10: 5, 11: 9 }, draw: [0, 0], winner: 0 },
    { story: '(in-flight + 1) × latency decides: 3 × 10 ms beats 1 × 40 ms', inflight: { 10: 0, 11: 2 }, latency: { 10: 40, 11: 10 }, draw: [0, 0], winner: 1 },
    { story: '… and 1 × 25 ms beats 3 × 10 ms', inflight: { 10: 0, 11: 2 }, latency: { 10: 25, 11: 10 }, draw: [0, 0], winner: 0 },
    { story: 'an unmeasured endpoint counts as 1 ms', inflight: { 10: 1, 11: 0 }, latency: { 10: 0, 11: 3 }, draw: [0, 0], winner: 0 },
    { story: 'a tie keeps the first sample', inflight: { 10: 1, 11: 1 }, latency: { 10: 7, 11: 7 }, draw: [0, 0], winner: 0 },
    { story: 'the best endpoint loses when it is not sampled', inflight: { 10: 9, 12: 9, 13: 5 }, latency: { 11: 1 }, draw: [0.99, 0.99], winner: 3 },
  ])('$story', ({ inflight, latency, draw, winner }) => {
    const tier = tierOf([10, 11, 12, 13]);
    expect(pickInZone(tier, 0, loadOf(14, inflight, latency), draws(...draw))).toBe(winner);
  });

  it('samples two distinct untried endpoints', () => {
    // Three untried (positions 1, 2, 3): the first draw takes rank 1 (position 2), the second draw's rank 1 steps over it
    // to rank 2 (position 3), and the less loaded of the two wins.
    const tier = tierOf([0, 1, 2, 3]);
    const load = loadOf(4, { 1: 0, 2: 5, 3: 1 });
    expect(pickInZone(tier, 0b0001, load, draws(0.5, 0.5))).toBe(3);
  });

  it('takes the last untried endpoint without drawing a second sample', () => {
    const tier = tierOf([0, 1, 2]);
    expect(pickInZone(tier, 0b101, loadOf(3, { 1: 100 }), draws(0.7))).toBe(1);
  });

  it('never picks the slowest of equally busy endpoints: it loses every comparison', () => {
    const tier = tierOf([0, 1, 2, 3]);
    const load = loadOf(4, {}, { 0: 50, 1: 5, 2: 5, 3: 5 });
    const random = seeded(6);
    let slow = 0;
    for (let i = 0; i < 20_000; i++) if (pickInZone(tier, 0, load, random) === 0) slow++;
    // It only wins when it is not sampled against a faster one: never, with two distinct samples.
    expect(slow).toBe(0);
  });
});
