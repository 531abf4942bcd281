// The process-wide counters hold across threads: two real worker threads hammer the same shared tables with the
// primitives the data plane uses, and the circuit limit, the once-only threshold report and the retry budget survive.
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { createSharedTables, openEndpointTables, type SharedTables } from './shared-tables.ts';
import { Traffic } from './plane.ts';
import { EndpointLoadTable } from './load.ts';
import type { Scenario, WorkerInput, WorkerResult } from '../../test/support/shared-tables-worker.ts';

const WORKER = new URL('../../test/support/shared-tables-worker.ts', import.meta.url);
/** The workers' own Int32 slots: barrier arrivals and holders right now. */
const CONTROL_BYTES = 2 * Int32Array.BYTES_PER_ELEMENT;

/** Both threads on the same tables; each builds its views from the buffers it is posted, as a worker will. */
async function twoThreads(tables: SharedTables, scenario: Scenario): Promise<{ results: WorkerResult[]; reports: Int32Array }> {
  const reports = new Int32Array(new SharedArrayBuffer(tables.endpointCount * Int32Array.BYTES_PER_ELEMENT));
  const input: WorkerInput = { tables, control: new SharedArrayBuffer(CONTROL_BYTES), reports: reports.buffer, scenario };
  const results = await Promise.all(
    [0, 1].map(async () => {
      const worker = new Worker(WORKER, { workerData: input });
      // Listening for the exit first: a thread that ends right after posting delivers its message and exit together.
      const exited = once(worker, 'exit');
      // `once` rejects on the worker's 'error' event, so a thread that throws fails the test instead of hanging it.
      const [result] = (await once(worker, 'message')) as [WorkerResult];
      await exited;
      return result;
    }),
  );
  return { results, reports };
}

/** How many elements hold each value. */
function tally(values: Int32Array): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}

describe('across two threads', () => {
  it('in-flight counts end at zero and never pass the circuit limit', async () => {
    const tables = createSharedTables(1);
    // Each thread wants three slots at a time, four are allowed: the threads fight over the last ones every round.
    const { results } = await twoThreads(tables, { kind: 'circuit', limit: 4, hold: 3, rounds: 1_000_000 });
    expect(new Int32Array(tables.load.inflight)[0]).toBe(0);
    expect(Math.max(...results.map((r) => r.maxHolders))).toBeLessThanOrEqual(4);
    // The limit was reached, or the test proved nothing.
    expect(results.reduce((sum, r) => sum + r.refused, 0)).toBeGreaterThan(0);
  });

  it('a run of failures reported from both threads reaches the decider exactly once', async () => {
    const endpoints = 2_000;
    const tables = createSharedTables(endpoints);
    const { reports } = await twoThreads(tables, { kind: 'failures', threshold: 200, perThread: 100 });
    expect(tally(reports), 'endpoints by reports received').toEqual({ 1: endpoints });
    expect(tally(new Int32Array(tables.failures)), 'endpoints by failures counted').toEqual({ 200: endpoints });
  });

  it('retries admitted at once never exceed the budget', async () => {
    const tables = createSharedTables(1);
    const traffic = new Traffic(tables.traffic);
    // 30 exchanges in flight at 10 %: the budget is max(2, 3) = 3 retrying at once; each thread wants two.
    for (let i = 0; i < 30; i++) traffic.exchangeStarted();
    const { results } = await twoThreads(tables, { kind: 'retries', percent: 10, minimum: 2, hold: 2, rounds: 1_000_000 });
    expect(traffic.retrying).toBe(0);
    expect(Math.max(...results.map((r) => r.maxHolders))).toBeLessThanOrEqual(3);
    expect(results.reduce((sum, r) => sum + r.refused, 0)).toBeGreaterThan(0);
  });
});

describe('shared tables', () => {
  it('a new endpoint list gets fresh endpoint counters and keeps the process traffic counters', () => {
    const first = createSharedTables(3);
    const { load } = openEndpointTables(first, 5, () => {});
    expect(load.tryAcquire(1, 10)).toBe(true);
    const next = createSharedTables(2, first.traffic);
    expect(next.traffic).toBe(first.traffic);
    expect(openEndpointTables(next, 5, () => {}).load.inflight[1]).toBe(0);
  });

  it('structured cloning shares the memory instead of copying it', () => {
    const tables = createSharedTables(2);
    const copy = structuredClone(tables);
    openEndpointTables(copy, 5, () => {}).load.tryAcquire(1, 10);
    expect(new Int32Array(tables.load.inflight)[1]).toBe(1);
  });

  it('refuses buffers sized for another endpoint list', () => {
    const tables = createSharedTables(2);
    expect(() => openEndpointTables({ ...tables, endpointCount: 3 }, 5, () => {})).toThrow(/not sized for 3 endpoints/);
  });
});

describe('endpoint load', () => {
  it('takes a slot only under the limit, and gives it back', () => {
    const { load } = openEndpointTables(createSharedTables(1), 5, () => {});
    expect([load.tryAcquire(0, 2), load.tryAcquire(0, 2), load.tryAcquire(0, 2)]).toEqual([true, true, false]);
    load.release(0);
    expect(load.tryAcquire(0, 2)).toBe(true);
    expect(load.inflight[0]).toBe(2);
  });

  it('smooths latency in whole microseconds, starting from the first sample', () => {
    const { load } = openEndpointTables(createSharedTables(1), 5, () => {});
    load.observeLatency(0, 10);
    expect(load.latencyUs[0]).toBe(10_000);
    load.observeLatency(0, 20);
    expect(load.latencyUs[0]).toBe(12_000);
    // Below a microsecond still counts as measured: 0 would read as "no sample yet".
    const fresh = openEndpointTables(createSharedTables(1), 5, () => {}).load;
    fresh.observeLatency(0, 0.0001);
    expect(fresh.latencyUs[0]).toBe(1);
  });
});

describe('a thread that died', () => {
  it('gives back the circuit slots it held, and only its own', () => {
    const tables = createSharedTables(3, Traffic.allocate(2), 2);
    const first = openEndpointTables(tables, 5, () => {}, 0).load;
    const second = openEndpointTables(tables, 5, () => {}, 1).load;
    first.tryAcquire(2, 10);
    second.tryAcquire(2, 10);
    second.tryAcquire(2, 10);
    second.tryAcquire(0, 10);
    second.release(0);
    expect(Array.from(first.inflight)).toEqual([0, 0, 3]);
    // The control plane's view forgets thread 1 after it exited: thread 0's slot stays taken.
    new EndpointLoadTable(tables.load).forget(1);
    expect(Array.from(first.inflight)).toEqual([0, 0, 1]);
    first.release(2);
    expect(Array.from(first.inflight)).toEqual([0, 0, 0]);
  });

  it('takes its open exchanges, retries and held chunk bytes out of the shared counts, and only its own', () => {
    const buffer = Traffic.allocate(2);
    const mine = new Traffic(buffer, undefined, 0);
    const dying = new Traffic(buffer, undefined, 1);
    mine.exchangeStarted();
    for (let i = 0; i < 4; i++) dying.exchangeStarted();
    expect(dying.admitRetry(0, 2)).toBe(true);
    expect(dying.admitRetry(0, 2)).toBe(true);
    // Two retrying: the minimum is spent for the whole process.
    expect(mine.admitRetry(0, 2)).toBe(false);
    // It also held upload chunk bytes: the process's chunk memory gets them back.
    expect([mine.tryHold(600, 1_000), dying.tryHold(300, 1_000), dying.tryHold(200, 1_000)]).toEqual([true, true, false]);
    new Traffic(buffer).forget(1);
    expect([mine.inflight, mine.retrying, mine.heldBytes]).toEqual([1, 0, 600]);
    expect(mine.admitRetry(0, 2)).toBe(true);
  });

  it('refuses a thread without a row', () => {
    expect(() => new Traffic(Traffic.allocate(2), undefined, 2)).toThrow(/no row for thread 2/);
    expect(() => openEndpointTables(createSharedTables(1, Traffic.allocate(), 1), 5, () => {}, 1)).toThrow(/no row for thread 1/);
  });
});
