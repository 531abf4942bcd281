// One of two threads hammering the same shared tables (src/proxy/shared-tables.test.ts): it builds its own views
// from the buffers it was posted, waits until its twin is ready, runs the scenario and posts back what it saw.
import { parentPort, workerData } from 'node:worker_threads';
import { openEndpointTables, type SharedTables } from '../../src/proxy/shared-tables.ts';
import { Traffic } from '../../src/proxy/plane.ts';

export type Scenario =
  /** Take up to `hold` slots on endpoint 0 under `limit`, give them back; `rounds` times. */
  | { readonly kind: 'circuit'; readonly limit: number; readonly hold: number; readonly rounds: number }
  /** `perThread` failures on each endpoint in turn, both threads on the same endpoint at once. */
  | { readonly kind: 'failures'; readonly threshold: number; readonly perThread: number }
  /** Admit up to `hold` retries under the budget, end them; `rounds` times. */
  | { readonly kind: 'retries'; readonly percent: number; readonly minimum: number; readonly hold: number; readonly rounds: number };

export interface WorkerInput {
  readonly tables: SharedTables;
  /** Int32 slots shared by both threads and the test: see the constants below. */
  readonly control: SharedArrayBuffer;
  /** Failures scenario: reports of "threshold reached", by endpoint. */
  readonly reports: SharedArrayBuffer;
  readonly scenario: Scenario;
}

export interface WorkerResult {
  /** Most holders of a slot (or retry) seen at once, counting both threads. */
  readonly maxHolders: number;
  readonly admitted: number;
  readonly refused: number;
}

/** Control slots: threads arrived at barriers so far, and holders of a slot right now. */
export const ARRIVED = 0;
export const HOLDERS = 1;
export const CONTROL_SLOTS = 2;
const THREADS = 2;

const { tables, control: controlBuffer, reports: reportsBuffer, scenario } = workerData as WorkerInput;
const control = new Int32Array(controlBuffer);
const reports = new Int32Array(reportsBuffer);

/** The `round`th meeting of both threads: spin, so both leave within nanoseconds of each other. */
function barrier(round: number): void {
  Atomics.add(control, ARRIVED, 1);
  while (Atomics.load(control, ARRIVED) < THREADS * (round + 1));
}

/** Counts holders independently of the counter under test, so an overshoot shows whatever that counter says. */
function hammer(rounds: number, hold: number, take: () => boolean, give: () => void): WorkerResult {
  let maxHolders = 0;
  let admitted = 0;
  let refused = 0;
  for (let round = 0; round < rounds; round++) {
    let held = 0;
    for (let k = 0; k < hold; k++) {
      if (!take()) {
        refused++;
        continue;
      }
      held++;
      admitted++;
      maxHolders = Math.max(maxHolders, Atomics.add(control, HOLDERS, 1) + 1);
    }
    for (; held > 0; held--) {
      Atomics.sub(control, HOLDERS, 1);
      give();
    }
  }
  return { maxHolders, admitted, refused };
}

function run(): WorkerResult {
  switch (scenario.kind) {
    case 'circuit': {
      const { load } = openEndpointTables(tables, 1, () => {});
      const { limit } = scenario;
      barrier(0);
      return hammer(scenario.rounds, scenario.hold, () => load.tryAcquire(0, limit), () => load.release(0));
    }
    case 'retries': {
      const traffic = new Traffic(tables.traffic);
      const { percent, minimum } = scenario;
      barrier(0);
      return hammer(scenario.rounds, scenario.hold, () => traffic.admitRetry(percent, minimum), () => traffic.retryEnded());
    }
    case 'failures': {
      const { outcomes } = openEndpointTables(tables, scenario.threshold, (index) => Atomics.add(reports, index, 1));
      for (let index = 0; index < tables.endpointCount; index++) {
        barrier(index);
        for (let k = 0; k < scenario.perThread; k++) outcomes.failure(index, 0);
      }
      return { maxHolders: 0, admitted: 0, refused: 0 };
    }
  }
}

parentPort!.postMessage(run());
