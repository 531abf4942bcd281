// Passive outlier detection: consecutive failures from live traffic eject an endpoint for a growing time, and a cap
// keeps most of the fleet in service however badly it behaves.
import { describe, expect, it } from 'vitest';
import { HealthState } from './state.ts';
import { ConsecutiveFailures, OutlierDetector, type OutlierPolicy } from './outlier.ts';

const SECOND = 1_000;
const POLICY: OutlierPolicy = { consecutiveFailures: 5, baseEjection: 30 * SECOND, maxEjection: 100 * SECOND, maxEjectedPercent: 50 };

function detector(endpoints: number, policy: Partial<OutlierPolicy> = {}): { state: HealthState; outlier: OutlierDetector } {
  const state = new HealthState(endpoints, { rise: 2, fall: 3 });
  return { state, outlier: new OutlierDetector(state, endpoints, { ...POLICY, ...policy }) };
}

function fail(outlier: OutlierDetector, index: number, times: number, now = 0): void {
  for (let i = 0; i < times; i++) outlier.failure(index, now);
}

describe('consecutive failures', () => {
  it('eject an endpoint on the fifth in a row, and not before', () => {
    const { state, outlier } = detector(4);
    fail(outlier, 0, 4, 1_000);
    expect(state.isEjected(0)).toBe(false);
    outlier.failure(0, 1_000);
    expect(state.isEjected(0)).toBe(true);
    expect(state.ejectedUntil[0]).toBe(1_000 + 30 * SECOND);
    expect(state.snapshot.usable).toEqual([false, true, true, true]);
  });

  it('start over after a success', () => {
    const { state, outlier } = detector(4);
    fail(outlier, 0, 4);
    outlier.success(0);
    fail(outlier, 0, 4);
    expect(state.isEjected(0)).toBe(false);
    outlier.failure(0, 0);
    expect(state.isEjected(0)).toBe(true);
  });

  it('are counted per endpoint', () => {
    const { state, outlier } = detector(4);
    for (let i = 0; i < 4; i++) {
      outlier.failure(0, 0);
      outlier.failure(1, 0);
    }
    expect(state.ejectedCount()).toBe(0);
    outlier.failure(1, 0);
    expect([state.isEjected(0), state.isEjected(1)]).toEqual([false, true]);
  });

  it('honour a configured threshold', () => {
    const { state, outlier } = detector(4, { consecutiveFailures: 2 });
    fail(outlier, 3, 2);
    expect(state.isEjected(3)).toBe(true);
  });

  it('do not extend an ejection that is already running', () => {
    const { state, outlier } = detector(4);
    fail(outlier, 0, 5, 0);
    fail(outlier, 0, 20, 10 * SECOND);
    expect(state.ejectedUntil[0]).toBe(30 * SECOND);
    expect(state.timesEjected[0]).toBe(1);
  });
});

describe('ejection time', () => {
  it('grows by the base time with each ejection, up to the maximum', () => {
    const { state, outlier } = detector(4);
    const durations: number[] = [];
    let now = 0;
    for (let round = 0; round < 5; round++) {
      fail(outlier, 0, 5, now);
      durations.push(state.ejectedUntil[0] - now);
      // Back through the active checks: the first passing probe at the ejection time.
      now = state.ejectedUntil[0];
      state.probe(0, true, null, now, 'status 200');
      expect(state.isEjected(0)).toBe(false);
    }
    expect(durations).toEqual([30, 60, 90, 100, 100].map((s) => s * SECOND));
  });
});

describe('max ejected percent', () => {
  it('caps how many endpoints are out at once, and lets the next one go once another returns', () => {
    const { state, outlier } = detector(10, { maxEjectedPercent: 20 });
    for (const index of [0, 1, 2]) fail(outlier, index, 5);
    expect([0, 1, 2].map((i) => state.isEjected(i))).toEqual([true, true, false]);
    expect(state.ejectedCount()).toBe(2);
    // Endpoint 2 keeps failing while the cap holds; once a slot frees up, its next failure ejects it.
    state.probe(0, true, null, 30 * SECOND, 'status 200');
    outlier.failure(2, 30 * SECOND);
    expect(state.isEjected(2)).toBe(true);
    expect(state.ejectedCount()).toBe(2);
  });

  it.each([
    { endpoints: 1, percent: 50 },
    { endpoints: 3, percent: 10 },
    { endpoints: 4, percent: 0 },
  ])('always lets at least one of $endpoints endpoints be ejected at $percent %', ({ endpoints, percent }) => {
    const { state, outlier } = detector(endpoints, { maxEjectedPercent: percent });
    for (let i = 0; i < endpoints; i++) fail(outlier, i, 5);
    expect(state.ejectedCount()).toBe(1);
    expect(state.isEjected(0)).toBe(true);
  });

  it('rounds the share down: half of five endpoints is two', () => {
    const { state, outlier } = detector(5, { maxEjectedPercent: 50 });
    for (let i = 0; i < 5; i++) fail(outlier, i, 5);
    expect(state.ejectedCount()).toBe(2);
  });
});

describe('counting apart from deciding', () => {
  it('reports a run once, when it reaches the threshold, and again only after it starts over', () => {
    const reports: number[] = [];
    const failures = new ConsecutiveFailures(2, 3, (index) => reports.push(index));
    for (let i = 0; i < 10; i++) failures.failure(1, 0);
    expect(reports).toEqual([1]);
    failures.success(1);
    for (let i = 0; i < 3; i++) failures.failure(1, 0);
    expect(reports).toEqual([1, 1]);
  });

  it('ejects from counters a data-plane thread keeps, reported as a worker would', () => {
    const state = new HealthState(4, { rise: 2, fall: 3 });
    const buffer = ConsecutiveFailures.allocate(4);
    const outlier = new OutlierDetector(state, buffer, POLICY);
    // The worker's sink over the same memory; its report stands for the message to the control plane.
    const worker = new ConsecutiveFailures(buffer, POLICY.consecutiveFailures, (index, now) => outlier.thresholdReached(index, now));
    for (let i = 0; i < 4; i++) worker.failure(2, 7);
    expect(state.isEjected(2)).toBe(false);
    worker.failure(2, 7);
    expect(state.ejectedUntil[2]).toBe(7 + 30 * SECOND);
    // The decider starts the count afresh, as the in-thread detector always did.
    expect(new Int32Array(buffer)[2]).toBe(0);
  });

  it('lets a run refused while ejected eject again with the first failure after it returns', () => {
    const { state, outlier } = detector(4);
    fail(outlier, 0, 5, 0);
    // Requests sent before the ejection keep failing: a second run, refused because it is already out.
    fail(outlier, 0, 7, SECOND);
    state.probe(0, true, null, 30 * SECOND, 'status 200');
    expect(state.isEjected(0)).toBe(false);
    outlier.failure(0, 30 * SECOND);
    expect(state.ejectedUntil[0]).toBe(30 * SECOND + 60 * SECOND);
  });

  it('does not bring back a refused run that ended in a success meanwhile', () => {
    const { state, outlier } = detector(10, { maxEjectedPercent: 10 });
    fail(outlier, 0, 5);
    fail(outlier, 1, 5);
    outlier.success(1);
    state.probe(0, true, null, 30 * SECOND, 'status 200');
    fail(outlier, 1, 4, 30 * SECOND);
    expect(state.isEjected(1)).toBe(false);
    outlier.failure(1, 30 * SECOND);
    expect(state.isEjected(1)).toBe(true);
  });
});
