// Bounded labels for observers: how a finished exchange is classed (method, status class, retry reason), as indexes
// that counting in arrays uses, and the label objects of an endpoint, built once per config load.
import type { Endpoint } from '../config/types.ts';
import { METHOD_CLASSES, type ExchangeRecord, type RetryReason } from '../proxy/record.ts';
import type { CheckResult } from '../health/checker.ts';

/** The label value for "no endpoint was chosen" (a request refused before routing, or with no candidate). */
export const NONE = 'none';

/** The standard methods, then `OTHER`; a record's `methodClass` indexes this. */
export const METHODS = METHOD_CLASSES;

/**
 * Status classes of what the client received, Meridian's own JSON errors included, then `error`: the client got
 * no complete response (it left, or the connection was cut mid-body).
 */
export const CODES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'error'] as const;
export const CODE_5XX = 4;
export const CODE_ERROR = 5;

export function codeIndex(record: ExchangeRecord): number {
  if (!record.completed) return CODE_ERROR;
  const statusClass = (record.status / 100) | 0;
  return statusClass >= 1 && statusClass <= 5 ? statusClass - 1 : CODE_ERROR;
}

export interface ZoneName {
  readonly region: string;
  readonly zone: string;
}

export const RETRY_REASONS: readonly RetryReason[] = Object.freeze(['connect_failure', 'reset', 'upstream_5xx']);

export function retryIndex(reason: RetryReason | null): number {
  return reason === 'connect_failure' ? 0 : reason === 'reset' ? 1 : 2;
}

export const CHECK_RESULTS: readonly CheckResult[] = Object.freeze(['success', 'failure', 'timeout']);

export interface EndpointLabels {
  readonly base: { readonly region: string; readonly zone: string; readonly endpoint: string };
  readonly checks: Readonly<Record<CheckResult, { readonly region: string; readonly zone: string; readonly endpoint: string; readonly result: CheckResult }>>;
}

// Built once per endpoint object (that is, per config load), so health events and scrapes reuse them.
const endpointLabelCache = new WeakMap<Endpoint, EndpointLabels>();

export function endpointLabels(endpoint: Endpoint): EndpointLabels {
  let labels = endpointLabelCache.get(endpoint);
  if (labels === undefined) {
    // region and zone are labels of their own, so the origin is enough to tell endpoints apart.
    const base = Object.freeze({ region: endpoint.region, zone: endpoint.zone, endpoint: endpoint.origin });
    const checks = Object.fromEntries(CHECK_RESULTS.map((result) => [result, Object.freeze({ ...base, result })])) as EndpointLabels['checks'];
    labels = Object.freeze({ base, checks });
    endpointLabelCache.set(endpoint, labels);
  }
  return labels;
}
