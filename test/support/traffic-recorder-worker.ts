// One of two threads counting into the same traffic tables at once. `records`: it compiles the config for itself,
// attaches a recorder to the tables it was posted and publishes its records on its own thread's channels, as the data
// plane would (test/metrics-across-threads.test.ts). `ring`: it marches through seconds of a bare per-second ring,
// meeting its twin at every new second's reset (src/observe/second-ring.test.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { exchangeEnd, exchangeFailover } from '../../src/proxy/events.ts';
import { TrafficRecorder } from '../../src/observe/recorder.ts';
import { SecondRing } from '../../src/observe/second-ring.ts';
import type { TrafficTablesDescriptor } from '../../src/observe/traffic-tables.ts';
import { compile, failover, mixed } from './synthetic-records.ts';

export type Scenario =
  /** `records` of the synthetic mix over `seconds` seconds from `firstSecond`, and a failover every `failoverEvery`. */
  | {
      readonly kind: 'records';
      readonly tables: TrafficTablesDescriptor;
      readonly records: number;
      readonly firstSecond: number;
      readonly seconds: number;
      readonly failoverEvery: number;
    }
  /** `perSecond` counts in each of `seconds` seconds from `firstSecond`, into a ring of one counter per slot. */
  | { readonly kind: 'ring'; readonly ring: SharedArrayBuffer; readonly slots: number; readonly firstSecond: number; readonly seconds: number; readonly perSecond: number };

export interface WorkerInput {
  /** Int32: threads arrived at the start line. */
  readonly arrived: SharedArrayBuffer;
  readonly threads: number;
  readonly scenario: Scenario;
}

const { arrived: arrivedBuffer, threads, scenario } = workerData as WorkerInput;

/** Spin rather than wait, so the threads leave within nanoseconds of each other. */
function startLine(): void {
  const arrived = new Int32Array(arrivedBuffer);
  Atomics.add(arrived, 0, 1);
  while (Atomics.load(arrived, 0) < threads);
}

function records(input: Extract<Scenario, { kind: 'records' }>): void {
  // Its own copy of the config: endpoints here are this thread's objects, known to the tables only by index and name.
  const { topology } = compile();
  const recorder = new TrafficRecorder(input.tables).subscribe();
  const from = topology.endpoints[0];
  const to = topology.endpoints.find((endpoint) => endpoint.region !== from.region)!;
  startLine();
  for (let i = 0; i < input.records; i++) {
    exchangeEnd.publish(mixed(topology, i, input.records, input.firstSecond, input.seconds));
    if (i % input.failoverEvery === 0) exchangeFailover.publish(failover(topology, from, to, 'connect_failure'));
  }
  recorder.close();
}

function ring(input: Extract<Scenario, { kind: 'ring' }>): void {
  const ring = new SecondRing(input.ring, input.slots, 1);
  startLine();
  for (let second = input.firstSecond; second < input.firstSecond + input.seconds; second++) {
    for (let k = 0; k < input.perSecond; k++) {
      const start = ring.claim(second);
      if (start >= 0) Atomics.add(ring.counts, start, 1);
    }
  }
}

if (scenario.kind === 'records') records(scenario);
else ring(scenario);
parentPort!.postMessage('done');
