// The process-wide counters as one plain bundle of SharedArrayBuffers: allocated by the control plane per endpoint
// list, posted to every data-plane thread as it is, and turned there into views over the same memory.
import { ConsecutiveFailures, type ThresholdReached } from '../health/outlier.ts';
import { EndpointLoadTable, type EndpointLoadBuffers } from './load.ts';
import { Traffic } from './plane.ts';

/** Only buffers and numbers, so `postMessage` shares it rather than copying it. */
export interface SharedTables {
  readonly endpointCount: number;
  /** In flight and latency per endpoint: circuit breaking and endpoint choice. */
  readonly load: EndpointLoadBuffers;
  /** Consecutive failures per endpoint: passive outlier detection. */
  readonly failures: SharedArrayBuffer;
  /** Exchanges in flight and retrying in the process: the retry budget. The same buffer for every endpoint list. */
  readonly traffic: SharedArrayBuffer;
}

/**
 * Tables for a new endpoint list. Endpoint numbers mean something else in each list, so its counters start at zero;
 * the process's traffic counters carry over.
 */
export function createSharedTables(endpointCount: number, traffic: SharedArrayBuffer = Traffic.allocate(), threads = 1): SharedTables {
  return { endpointCount, load: EndpointLoadTable.allocate(endpointCount, threads), failures: ConsecutiveFailures.allocate(endpointCount), traffic };
}

/** One thread's views over an endpoint list's tables; the traffic buffer goes to the thread's one long-lived `Traffic`. */
export interface EndpointTables {
  readonly load: EndpointLoadTable;
  readonly outcomes: ConsecutiveFailures;
}

/**
 * `reached` is how this thread tells the decider that an endpoint's failures reached `threshold`; `thread` is its row
 * of the held slots.
 */
export function openEndpointTables(tables: SharedTables, threshold: number, reached: ThresholdReached, thread = 0): EndpointTables {
  const load = new EndpointLoadTable(tables.load, thread);
  const outcomes = new ConsecutiveFailures(tables.failures, threshold, reached);
  if (load.inflight.length !== tables.endpointCount || outcomes.counts.length !== tables.endpointCount) {
    throw new RangeError(`shared tables are not sized for ${tables.endpointCount} endpoints`);
  }
  return { load, outcomes };
}
