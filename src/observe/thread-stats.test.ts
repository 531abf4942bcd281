// Per-thread stats rows: each data-plane thread writes its own row of one shared buffer, and scrapes add the rows up.
import { describe, expect, it } from 'vitest';
import { STAT, STAT_ROW, ThreadStats } from './thread-stats.ts';

describe('ThreadStats', () => {
  it('keeps each thread’s row apart and sums the rows into totals', () => {
    const stats = new ThreadStats(3);
    expect(stats.threads).toBe(3);
    stats.row(1)[STAT.requests] = 5;
    stats.row(1)[STAT.connections] = 2;
    expect(stats.get(0, STAT.requests)).toBe(0);
    expect(stats.get(0, STAT.connections)).toBe(0);
    expect(stats.get(1, STAT.requests)).toBe(5);
    stats.row(0)[STAT.requests] = 7;
    stats.row(2)[STAT.requests] = 1;
    expect(stats.total(STAT.requests)).toBe(13);
    expect(stats.total(STAT.connections)).toBe(2);
    expect(stats.total(STAT.websockets)).toBe(0);
  });

  it('adds geo lookups by outcome over every row', () => {
    const stats = new ThreadStats(2);
    const [a, b] = [stats.row(0), stats.row(1)];
    a[STAT.geoHit] = 3;
    b[STAT.geoHit] = 4;
    a[STAT.geoMiss] = 1;
    b[STAT.geoPrivate] = 2;
    b[STAT.geoError] = 5;
    expect(stats.geoLookups()).toEqual({ hit: 7, miss: 1, private: 2, error: 5 });
  });

  it('resets only the gauges of the row a dead thread leaves, so counters carry on into its replacement', () => {
    const stats = new ThreadStats(2);
    for (const thread of [0, 1]) {
      const row = stats.row(thread);
      for (let stat = 0; stat < STAT_ROW; stat++) row[stat] = 10 * thread + stat + 1;
    }
    stats.resetGauges(1);
    const gauges: number[] = [STAT.connections, STAT.websockets, STAT.geoCached];
    expect(Array.from(stats.row(1))).toEqual(Array.from({ length: STAT_ROW }, (_, stat) => (gauges.includes(stat) ? 0 : 10 + stat + 1)));
    expect([STAT.connections, STAT.websockets, STAT.geoCached].map((stat) => stats.get(1, stat))).toEqual([0, 0, 0]);
    // The other thread's row, gauges included, is untouched.
    expect(Array.from(stats.row(0))).toEqual(Array.from({ length: STAT_ROW }, (_, stat) => stat + 1));
  });

  it('refuses a row for a slot it does not have', () => {
    const stats = new ThreadStats(2);
    for (const slot of [-1, 2, 0.5, Number.NaN]) expect(() => stats.row(slot)).toThrow(RangeError);
  });

  it('lets a worker build a view over the same buffer that sees and makes the same counts', () => {
    const stats = new ThreadStats(2);
    const worker = new ThreadStats(stats.buffer);
    expect(worker.threads).toBe(2);
    worker.row(1)[STAT.requests] = 9;
    expect(stats.get(1, STAT.requests)).toBe(9);
    stats.row(0)[STAT.geoHit] = 4;
    expect(worker.geoLookups().hit).toBe(4);
    expect(worker.total(STAT.requests)).toBe(stats.total(STAT.requests));
  });

  it('refuses a buffer that is not whole rows', () => {
    expect(() => new ThreadStats(new SharedArrayBuffer(0))).toThrow(RangeError);
    expect(() => new ThreadStats(new SharedArrayBuffer((STAT_ROW + 1) * Float64Array.BYTES_PER_ELEMENT))).toThrow(RangeError);
  });
});
