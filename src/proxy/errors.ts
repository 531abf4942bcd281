// Meridian's one error type, the translation of undici and socket errors into it, and the JSON reply.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MERIDIAN_VERSION } from '../version.ts';
import type { Fence } from '../config/types.ts';

export type ErrorSource = 'downstream' | 'upstream' | 'internal';

export interface ProxyErrorKind {
  readonly code: string;
  readonly status: number;
  readonly type: string;
  readonly source: ErrorSource;
  /** True when nothing reached the upstream, so any method may be sent to the next candidate. */
  readonly nothingSent: boolean;
  readonly message: string;
}

function kind(code: string, status: number, type: string, source: ErrorSource, nothingSent: boolean, message: string): ProxyErrorKind {
  return Object.freeze({ code, status, type, source, nothingSent, message });
}

export const KINDS = Object.freeze({
  noCandidate: kind('MERIDIAN_NO_CANDIDATE', 503, 'meridian_no_upstream', 'internal', true, 'No upstream endpoint is available for this request.'),
  fenceExhausted: kind('MERIDIAN_FENCE_EXHAUSTED', 503, 'meridian_fence_exhausted', 'upstream', true, 'No region that this client is fenced to could serve the request.'),
  circuitOpen: kind('MERIDIAN_CIRCUIT_OPEN', 503, 'meridian_upstream_overloaded', 'internal', true, 'Every candidate endpoint is at its concurrent request limit.'),
  /** Internal: a 502/503/504 answer we chose to retry; never sent to a client as such. */
  upstreamStatus: kind('MERIDIAN_UPSTREAM_STATUS', 502, 'meridian_upstream_error', 'upstream', false, 'The upstream endpoint answered with a gateway error.'),
  connectFailed: kind('MERIDIAN_UPSTREAM_CONNECT', 502, 'meridian_upstream_unreachable', 'upstream', true, 'The upstream endpoint could not be reached.'),
  connectTimeout: kind('MERIDIAN_UPSTREAM_CONNECT_TIMEOUT', 504, 'meridian_upstream_timeout', 'upstream', true, 'The upstream endpoint did not accept the connection in time.'),
  responseTimeout: kind('MERIDIAN_UPSTREAM_TIMEOUT', 504, 'meridian_upstream_timeout', 'upstream', false, 'The upstream endpoint did not answer in time.'),
  bodyTimeout: kind('MERIDIAN_UPSTREAM_BODY_TIMEOUT', 504, 'meridian_upstream_timeout', 'upstream', false, 'The upstream endpoint stopped sending the response body.'),
  reset: kind('MERIDIAN_UPSTREAM_RESET', 502, 'meridian_upstream_error', 'upstream', false, 'The upstream connection closed before a complete response.'),
  badResponse: kind('MERIDIAN_UPSTREAM_PROTOCOL', 502, 'meridian_upstream_error', 'upstream', false, 'The upstream endpoint sent an invalid HTTP response.'),
  downstreamAborted: kind('MERIDIAN_DOWNSTREAM_ABORTED', 499, 'meridian_client_closed', 'downstream', false, 'The client closed the connection.'),
  badRequest: kind('MERIDIAN_BAD_REQUEST', 400, 'meridian_bad_request', 'downstream', true, 'The request is malformed.'),
  headersTooLarge: kind('MERIDIAN_HEADERS_TOO_LARGE', 431, 'meridian_headers_too_large', 'downstream', true, 'The request headers are too large.'),
  requestTimeout: kind('MERIDIAN_REQUEST_TIMEOUT', 408, 'meridian_request_timeout', 'downstream', true, 'The request was not received in time.'),
  internal: kind('MERIDIAN_INTERNAL', 500, 'meridian_internal_error', 'internal', false, 'Meridian failed to handle the request.'),
  /**
   * A per-client rate limit refused the request (src/proxy/rate-limit.ts). Appwrite's own limit answers 429 with
   * type `general_rate_limit_exceeded`; ours has a type of its own, so a client can tell the edge's limit from the API's.
   */
  rateLimited: kind('MERIDIAN_RATE_LIMITED', 429, 'meridian_rate_limited', 'downstream', true, 'Too many requests from this client.'),
});

export class ProxyError extends Error {
  readonly kind: ProxyErrorKind;
  /** Whole seconds for a `Retry-After` header on the answer; only a rate-limit refusal has one. */
  retryAfter: number | undefined = undefined;
  get code(): string {
    return this.kind.code;
  }
  get status(): number {
    return this.kind.status;
  }

  constructor(errorKind: ProxyErrorKind, cause?: unknown, message: string = errorKind.message) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'ProxyError';
    this.kind = errorKind;
  }
}

const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL', 'ECONNABORTED']);

/** The single place where undici and socket errors become Meridian errors. */
export function translateUpstreamError(err: unknown): ProxyError {
  if (err instanceof ProxyError) return err;
  const code = (err as { code?: string } | null)?.code ?? '';
  if (CONNECT_CODES.has(code)) return new ProxyError(KINDS.connectFailed, err);
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new ProxyError(KINDS.connectTimeout, err);
    case 'UND_ERR_HEADERS_TIMEOUT':
      return new ProxyError(KINDS.responseTimeout, err);
    case 'UND_ERR_BODY_TIMEOUT':
      return new ProxyError(KINDS.bodyTimeout, err);
    case 'HPE_INVALID_CONSTANT':
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'HPE_INVALID_STATUS':
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
    case 'UND_ERR_INFO':
      return new ProxyError(KINDS.badResponse, err);
    // undici refused the request itself (a target or header it cannot send, a body shorter than its length):
    // the client's fault, which no other endpoint would take either and no endpoint's health should pay for.
    case 'UND_ERR_INVALID_ARG':
    case 'UND_ERR_NOT_SUPPORTED':
    case 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH':
      return new ProxyError(KINDS.badRequest, err);
    default:
      return new ProxyError(KINDS.reset, err);
  }
}

/** A 429 for rate-limit rule `rule`, to be retried after `retryAfter` seconds. */
export function rateLimitedError(rule: string, retryAfter: number): ProxyError {
  const error = new ProxyError(KINDS.rateLimited, undefined, `Too many requests from this client: rate limit "${rule}" allows more in ${retryAfter} s.`);
  error.retryAfter = retryAfter;
  return error;
}

/** The Appwrite-shaped JSON body of a Meridian error, shared by every path that answers with one. */
export function errorBody(error: ProxyError): string {
  return JSON.stringify({ message: error.message, code: error.status, type: error.kind.type, version: MERIDIAN_VERSION });
}

/**
 * A strict fence whose candidates are all used up answers 503 naming the fence (README: Routing), not the last
 * upstream's error: the client must learn that other regions exist but may not serve it. Only failures that would
 * have moved on to another region count; the client's own faults keep their answer. Null when the rule does not apply.
 */
export function fenceExhausted(fence: Fence | null, error: ProxyError): ProxyError | null {
  if (fence === null || fence.mode !== 'strict') return null;
  if (error.kind.source === 'downstream' || !(error.kind.nothingSent || error.kind === KINDS.noCandidate)) return null;
  const message = `No region allowed for this client could serve the request: fence ${fence.name} (strict) keeps it in ${fence.regions.join(', ')}.`;
  return new ProxyError(KINDS.fenceExhausted, error, message);
}

/** Appwrite-shaped JSON error with CORS headers, so browser SDKs can read why a request failed. */
export function sendError(req: IncomingMessage, res: ServerResponse, error: ProxyError, requestId: string | undefined): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = errorBody(error);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  };
  const origin = req.headers.origin;
  if (origin) {
    headers['access-control-allow-origin'] = origin;
    headers['access-control-allow-credentials'] = 'true';
    headers['vary'] = 'Origin';
  }
  if (requestId) headers['x-request-id'] = requestId;
  if (error.retryAfter !== undefined) headers['retry-after'] = error.retryAfter;
  // Nothing will consume the rest of the body now: read and drop it until the connection closes.
  if (closeIfBodyArriving(req, res)) req.resume();
  res.writeHead(error.status, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}

/**
 * The one rule for an answer that starts while the request body is still arriving (Meridian's own error, `OPTIONS *`,
 * an upstream's early 413): what is left of the body cannot be told apart from a next request on this connection, so
 * the connection closes after the answer. Must run before the response head is written. True when it applied.
 */
export function closeIfBodyArriving(req: IncomingMessage, res: ServerResponse): boolean {
  if (req.complete) return false;
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0')) return false;
  res.shouldKeepAlive = false;
  return true;
}
