// The per-endpoint health state machine with an injected clock: rise/fall thresholds, flapping, RTT smoothing,
// frozen snapshots, the changes listeners hear, and how an ejected endpoint comes back.
import { describe, expect, it } from 'vitest';
import { HealthState, type HealthChange, type HealthSnapshot } from './state.ts';

const DEFAULTS = { rise: 2, fall: 3 };

/** A state with a recorder of every change and the snapshot that came with it. */
function recorded(endpoints = 1, thresholds = DEFAULTS): { state: HealthState; changes: HealthChange[]; snapshots: HealthSnapshot[] } {
  const state = new HealthState(endpoints, thresholds);
  const changes: HealthChange[] = [];
  const snapshots: HealthSnapshot[] = [];
  state.onChange((change, snapshot) => {
    changes.push(change);
    snapshots.push(snapshot);
  });
  return { state, changes, snapshots };
}

/**
 * Runs `probes` ('P' pass, 'F' fail) one second apart and returns the state after each as 'u' (up) or 'd' (down).
 * No RTT is given, so only up, down and ejection change anything.
 */
function run(state: HealthState, probes: string, index = 0, start = 0): string {
  let seen = '';
  [...probes].forEach((p, i) => {
    state.probe(index, p === 'P', null, start + i * 1_000, p === 'P' ? 'status 200' : 'ECONNREFUSED');
    seen += state.up[index] ? 'u' : 'd';
  });
  return seen;
}

describe('rise and fall', () => {
  it.each([
    { story: 'starts up, as traffic flows at boot', thresholds: DEFAULTS, probes: 'P', states: 'u' },
    { story: 'falls on the third consecutive failure (default fall 3)', thresholds: DEFAULTS, probes: 'FFF', states: 'uud' },
    { story: 'rises on the second consecutive pass (default rise 2)', thresholds: DEFAULTS, probes: 'FFFPP', states: 'uuddu' },
    { story: 'a pass between failures resets the failure streak', thresholds: DEFAULTS, probes: 'FFPFFPFF', states: 'uuuuuuuu' },
    { story: 'a failure between passes resets the pass streak', thresholds: DEFAULTS, probes: 'FFFPFPFP', states: 'uudddddd' },
    { story: 'flapping from up never takes it down', thresholds: DEFAULTS, probes: 'PF'.repeat(10), states: 'u'.repeat(20) },
    { story: 'flapping from down never brings it up', thresholds: DEFAULTS, probes: 'FFF' + 'PF'.repeat(10), states: 'uud' + 'd'.repeat(20) },
    { story: 'rise 1 / fall 1 follows every probe', thresholds: { rise: 1, fall: 1 }, probes: 'FPFP', states: 'dudu' },
    { story: 'rise 3 needs three passes in a row', thresholds: { rise: 3, fall: 2 }, probes: 'FFPPFPPP', states: 'uddddddu' },
  ])('$story', ({ thresholds, probes, states }) => {
    const { state } = recorded(1, thresholds);
    expect(run(state, probes)).toBe(states);
  });

  it('tells listeners about every transition, with the reason, and nothing about probes that change nothing', () => {
    const { state, changes } = recorded();
    run(state, 'FFFFPPP');
    expect(changes).toEqual([
      { kind: 'down', index: 0, reason: '3 failing checks: ECONNREFUSED' },
      { kind: 'up', index: 0, reason: '2 passing checks' },
    ]);
  });

  it('keeps endpoints apart: one falling does not move another', () => {
    const { state } = recorded(2);
    run(state, 'FFF', 0);
    run(state, 'PPP', 1);
    expect(state.up).toEqual([false, true]);
    expect(state.snapshot.usable).toEqual([false, true]);
  });

  it('records the last probe with its time and detail', () => {
    const { state } = recorded();
    state.probe(0, false, null, 42_000, 'no answer within 2000 ms');
    expect(state.lastProbe[0]).toEqual({ at: 42_000, ok: false, detail: 'no answer within 2000 ms' });
  });
});

describe('RTT', () => {
  it('smooths probe round-trips with an EWMA (alpha 0.3) and ignores failed probes', () => {
    const state = new HealthState(1, DEFAULTS);
    expect(state.rttMs[0]).toBeNull();
    state.probe(0, true, 10, 0, 'status 200');
    expect(state.rttMs[0]).toBe(10);
    state.probe(0, true, 20, 1, 'status 200');
    expect(state.rttMs[0]).toBeCloseTo(13, 10);
    state.probe(0, false, null, 2, 'timeout');
    expect(state.rttMs[0]).toBeCloseTo(13, 10);
    state.probe(0, true, 20, 3, 'status 200');
    expect(state.rttMs[0]).toBeCloseTo(15.1, 10);
  });

  it('publishes the first RTT and real shifts to routing, but not probe jitter', () => {
    const { state, changes } = recorded();
    state.probe(0, true, 10, 0, 'status 200');
    expect(state.snapshot.rttMs[0]).toBe(10);
    expect(changes).toEqual([{ kind: 'rtt', index: 0, rttMs: 10 }]);
    // 10 → 10.6: within 20 % of what routing sees, so no new snapshot.
    state.probe(0, true, 12, 1, 'status 200');
    expect(changes).toHaveLength(1);
    expect(state.snapshot.rttMs[0]).toBe(10);
    // A zone that got far slower: routing must learn it to reorder zones.
    for (let i = 0; i < 5; i++) state.probe(0, true, 100, 2 + i, 'status 200');
    expect(changes.length).toBeGreaterThan(1);
    expect(state.snapshot.rttMs[0]).toBeGreaterThan(30);
  });
});

describe('snapshots', () => {
  it('are frozen and replaced whole, with a version that grows with every change', () => {
    const { state, snapshots } = recorded(2);
    const first = state.snapshot;
    expect(first.version).toBe(0);
    expect(first.usable).toEqual([true, true]);
    expect(Object.isFrozen(first)).toBe(true);
    expect(Object.isFrozen(first.usable)).toBe(true);
    expect(Object.isFrozen(first.rttMs)).toBe(true);
    expect(() => (first.usable as boolean[]).push(false)).toThrow(TypeError);

    run(state, 'FFF', 1);
    const second = state.snapshot;
    expect(second).not.toBe(first);
    expect(second.version).toBe(1);
    expect(second.usable).toEqual([true, false]);
    // Whoever holds the old snapshot keeps seeing the world it was built for.
    expect(first.usable).toEqual([true, true]);
    expect(snapshots).toEqual([second]);

    state.eject(0, 5_000);
    expect(state.snapshot.version).toBe(2);
    expect(state.snapshot.usable).toEqual([false, false]);
  });

  it('are not replaced when a probe changes nothing routing reads', () => {
    const { state } = recorded();
    state.probe(0, true, 5, 0, 'status 200');
    const before = state.snapshot;
    run(state, 'FFPF', 0, 1_000);
    state.probe(0, true, 5.5, 9_000, 'status 200');
    expect(state.snapshot).toBe(before);
  });
});

describe('ejection', () => {
  it('makes an up endpoint unusable until the first passing probe at or after its ejection time', () => {
    const { state, changes } = recorded();
    state.eject(0, 30_000);
    expect(state.isEjected(0)).toBe(true);
    expect(state.ejectedCount()).toBe(1);
    expect(state.snapshot.usable).toEqual([false]);
    expect(state.up[0]).toBe(true);

    // Passing probes before the ejection time do not bring it back.
    state.probe(0, true, null, 10_000, 'status 200');
    state.probe(0, true, null, 29_999, 'status 200');
    expect(state.isEjected(0)).toBe(true);
    // Nor does a failing one after it.
    state.probe(0, false, null, 30_000, 'status 502');
    expect(state.isEjected(0)).toBe(true);
    state.probe(0, true, null, 31_000, 'status 200');
    expect(state.isEjected(0)).toBe(false);
    expect(state.snapshot.usable).toEqual([true]);
    expect(changes).toEqual([{ kind: 'ejected', index: 0, until: 30_000, times: 1 }, { kind: 'returned', index: 0 }]);
  });

  it('counts the times an endpoint was ejected', () => {
    const { state, changes } = recorded();
    state.eject(0, 1_000);
    state.probe(0, true, null, 1_000, 'status 200');
    state.eject(0, 5_000);
    expect(state.timesEjected[0]).toBe(2);
    expect(changes.at(-1)).toEqual({ kind: 'ejected', index: 0, until: 5_000, times: 2 });
  });

  it('returns with the rise of an endpoint the active checks took down, before its ejection time', () => {
    // A killed endpoint is ejected by traffic within milliseconds and taken down by probes soon after; once probes
    // see it recover, holding it out for the rest of a 30 s ejection would keep traffic away for nothing.
    const { state, changes } = recorded();
    state.eject(0, 30_000);
    run(state, 'FFF', 0, 100);
    expect(state.up[0]).toBe(false);
    run(state, 'PP', 0, 5_000);
    expect(state.up[0]).toBe(true);
    expect(state.isEjected(0)).toBe(false);
    expect(state.snapshot.usable).toEqual([true]);
    expect(changes.map((c) => c.kind)).toEqual(['ejected', 'down', 'returned', 'up']);
  });

  it('a down endpoint whose ejection time passed returns from ejection but stays down until it rises', () => {
    const { state } = recorded();
    state.eject(0, 1_000);
    run(state, 'FFF', 0, 100);
    run(state, 'P', 0, 2_000);
    expect(state.isEjected(0)).toBe(false);
    expect(state.up[0]).toBe(false);
    expect(state.snapshot.usable).toEqual([false]);
  });
});

describe('report', () => {
  it('is a frozen copy of every endpoint at call time, which later changes leave alone', () => {
    const state = new HealthState(2, DEFAULTS);
    state.probe(1, true, 12, 1_000, 'HTTP 200');
    state.eject(1, 31_000);
    const before = state.report();
    expect(before[0]).toEqual({ up: true, usable: true, ejectedUntil: 0, timesEjected: 0, lastProbe: null, rttMs: null });
    expect(before[1]).toEqual({ up: true, usable: false, ejectedUntil: 31_000, timesEjected: 1, lastProbe: { at: 1_000, ok: true, detail: 'HTTP 200' }, rttMs: 12 });
    expect(Object.isFrozen(before) && Object.isFrozen(before[1])).toBe(true);
    state.probe(1, true, 30, 40_000, 'HTTP 200');
    expect(before[1].usable).toBe(false);
    expect(state.report()[1]).toMatchObject({ usable: true, ejectedUntil: 0 });
  });
});
