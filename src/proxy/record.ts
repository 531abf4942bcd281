// What observers are handed: plain records of a finished exchange, a failover and a tunnel. The data plane fills one
// reused object of each kind per thread and publishes it (events.ts); observers read it during the publish and copy
// what they keep, so they never hold the live exchange, node's request and response, or a socket.
import type { Endpoint, Topology } from '../config/types.ts';
import { errorBody } from './errors.ts';
import type { Exchange } from './exchange.ts';
import type { Tunnel } from './websocket.ts';

/** The standard methods, then `OTHER`: a record's method class is an index here, so a client cannot mint label values. */
export const METHOD_CLASSES = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE', 'OTHER'] as const;

/** Retry-reason labels, by the failure that caused the retry. */
export type RetryReason = 'connect_failure' | 'reset' | 'upstream_5xx';

/**
 * One finished downstream request. Endpoints are the snapshot's own frozen config objects: plain data that carries its
 * origin, region and zone for labels, and its index into `topology` for observers that count in arrays.
 */
export interface ExchangeRecord {
  readonly requestId: string;
  readonly method: string;
  /** Index in METHOD_CLASSES. */
  readonly methodClass: number;
  readonly host: string | undefined;
  /** The request target, its query string cut off unless the exchange's `accessLog.includeQuery` keeps it. */
  readonly path: string;
  readonly peerIp: string;
  readonly clientIp: string;
  readonly country: string | null;
  readonly continent: string | null;
  /** What the client received, Meridian's own errors included; 0 when no response head was sent. */
  readonly status: number;
  /** The whole response reached the client; false when it left or the connection was cut mid-body. */
  readonly completed: boolean;
  /** Request body bytes that the last attempt passed upstream. */
  readonly bytesIn: number;
  /** Response body bytes sent to the client: relayed from the upstream, or Meridian's JSON error. */
  readonly bytesOut: number;
  /** Epoch milliseconds, fractional: unlike performance.now(), comparable between threads. */
  readonly startedAt: number;
  /** From the last attempt's dispatch to its response headers; -1 when none arrived. */
  readonly upstreamHeadersMs: number;
  readonly durationMs: number;
  readonly attempts: number;
  /** Why the last retry was made; null without one. */
  readonly retryReason: RetryReason | null;
  /** The topology of the snapshot the exchange ran under, which the endpoints below belong to. */
  readonly topology: Topology;
  /** The last endpoint tried: the one that answered, or the one whose failure the client got; null when none was. */
  readonly endpoint: Endpoint | null;
  /** The endpoint that failed before the last one was tried; null without a failover. */
  readonly failedEndpoint: Endpoint | null;
  /** Meridian's stable `MERIDIAN_*` code of the last error, if any. */
  readonly errorCode: string | null;
  readonly routeReason: string;
  /** The project's home region when affinity routed it. */
  readonly home: string | null;
  /** The nearer region when GeoDNS sent the client to the wrong one. */
  readonly misrouteNearest: string | null;
  /**
   * For an exchange an upstream answered: the index in MISROUTE_REASONS when serving it was a misroute by the rule in
   * routing/geo-router.ts (misrouteCost), else -1; and its extra distance in km. Optional for records made elsewhere.
   */
  readonly misrouteReason?: number;
  readonly misrouteKm?: number;
}

/** A request moving from a failed endpoint to the next candidate, published once the next one has it. */
export interface FailoverRecord {
  readonly requestId: string;
  readonly topology: Topology;
  readonly from: Endpoint;
  readonly to: Endpoint;
  readonly reason: RetryReason;
}

/**
 * `refused`: the client got an answer instead of a tunnel (Meridian's error or the upstream's own). `abandoned`: the
 * client left before the upstream answered. `shutdown` and `idle`: Meridian ended it. `error`: a connection failed
 * (`errorCode` says how). `closed`: either side closed it; the closing handshake runs end to end through the tunnel,
 * so which side began it is not told apart.
 */
export type TunnelCloseReason = 'refused' | 'abandoned' | 'shutdown' | 'idle' | 'error' | 'closed';

/**
 * A WebSocket upgrade, published when it arrives and when the client's connection closes. At open nothing is routed
 * yet: the location, endpoint, durations, bytes and reason are empty until close.
 */
export interface TunnelRecord {
  readonly requestId: string;
  readonly peerIp: string;
  readonly clientIp: string;
  readonly country: string | null;
  readonly continent: string | null;
  readonly topology: Topology;
  /** The endpoint tried last: once open, the one the connection stayed on. */
  readonly endpoint: Endpoint | null;
  readonly misrouteNearest: string | null;
  /** As on ExchangeRecord, at close of a tunnel that connected to its endpoint; -1 otherwise. */
  readonly misrouteReason?: number;
  readonly misrouteKm?: number;
  /** Epoch milliseconds, fractional. */
  readonly startedAt: number;
  readonly durationMs: number;
  /** Bytes read from and written to the client's connection, the handshake included. */
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly closeReason: TunnelCloseReason | null;
  readonly errorCode: string | null;
}

type Writable<T> = { -readonly [K in keyof T]: T[K] };

/** Read once: `performance.timeOrigin` is a getter that calls into the runtime, about as dear as `performance.now()`. */
const TIME_ORIGIN = performance.timeOrigin;

const NO_TOPOLOGY: Topology = Object.freeze({ self: Object.freeze({ region: '', zone: '' }), regions: [], endpoints: [] });

// One of each per thread, every field present from the start so their shape never changes.
const exchangeRecord: Writable<ExchangeRecord> = {
  requestId: '',
  method: '',
  methodClass: 0,
  host: undefined,
  path: '',
  peerIp: '',
  clientIp: '',
  country: null,
  continent: null,
  status: 0,
  completed: false,
  bytesIn: 0,
  bytesOut: 0,
  startedAt: 0,
  upstreamHeadersMs: -1,
  durationMs: 0,
  attempts: 0,
  retryReason: null,
  topology: NO_TOPOLOGY,
  endpoint: null,
  failedEndpoint: null,
  errorCode: null,
  routeReason: '',
  home: null,
  misrouteNearest: null,
  misrouteReason: -1,
  misrouteKm: 0,
};

const failoverRecord: Writable<FailoverRecord> = { requestId: '', topology: NO_TOPOLOGY, from: null!, to: null!, reason: 'connect_failure' };

const tunnelRecord: Writable<TunnelRecord> = {
  requestId: '',
  peerIp: '',
  clientIp: '',
  country: null,
  continent: null,
  topology: NO_TOPOLOGY,
  endpoint: null,
  misrouteNearest: null,
  misrouteReason: -1,
  misrouteKm: 0,
  startedAt: 0,
  durationMs: 0,
  bytesIn: 0,
  bytesOut: 0,
  closeReason: null,
  errorCode: null,
};

export function methodClass(method: string | undefined): number {
  // Node hands over its own interned method strings, so these compare by pointer.
  switch (method) {
    case 'GET':
      return 0;
    case 'HEAD':
      return 1;
    case 'POST':
      return 2;
    case 'PUT':
      return 3;
    case 'PATCH':
      return 4;
    case 'DELETE':
      return 5;
    case 'OPTIONS':
      return 6;
    case 'CONNECT':
      return 7;
    case 'TRACE':
      return 8;
    default:
      return 9;
  }
}

/** Fills the thread's exchange record from an exchange whose downstream response has closed. */
export function recordExchange(exchange: Exchange): ExchangeRecord {
  const now = performance.now();
  const { req, res, plane, location, decision, error } = exchange;
  const record = exchangeRecord;
  const url = req.url ?? '/';
  const query = plane.config.accessLog.includeQuery ? -1 : url.indexOf('?');
  record.requestId = exchange.requestId;
  record.method = req.method ?? '';
  record.methodClass = methodClass(req.method);
  record.host = exchange.host;
  record.path = query === -1 ? url : url.slice(0, query);
  record.peerIp = exchange.peerIp;
  record.clientIp = exchange.clientIp;
  record.country = location === null ? null : location.country;
  record.continent = location === null ? null : location.continent;
  record.status = res.headersSent ? res.statusCode : 0;
  record.completed = res.writableFinished;
  record.bytesIn = exchange.bytesIn;
  record.bytesOut = bodyBytesOut(exchange);
  record.startedAt = TIME_ORIGIN + exchange.startedAt;
  record.upstreamHeadersMs = exchange.responseStartedAt > 0 ? exchange.responseStartedAt - exchange.attemptStartedAt : -1;
  record.durationMs = now - exchange.startedAt;
  record.attempts = exchange.attempts;
  record.retryReason = exchange.retryReason;
  record.topology = plane.config.topology;
  record.endpoint = exchange.endpoint;
  record.failedEndpoint = exchange.previousEndpoint;
  record.errorCode = error === null ? null : error.code;
  record.routeReason = decision.reason;
  record.home = decision.home;
  record.misrouteNearest = decision.misrouteNearest;
  // The cost was worked out with the decision; only a request an upstream answered can have one.
  const cost = decision.misrouteCost;
  const served = cost == null || exchange.endpoint === null || record.upstreamHeadersMs < 0 ? -1 : exchange.endpoint.index;
  record.misrouteReason = served === -1 ? -1 : cost!.reasons[served];
  record.misrouteKm = served === -1 ? 0 : cost!.extraKm[served];
  return record;
}

/** Meridian's own JSON error is rendered again to measure it: errors are rare, and this runs only for listeners. */
function bodyBytesOut(exchange: Exchange): number {
  const { error } = exchange;
  if (exchange.responseStarted || error === null || !exchange.res.headersSent || exchange.req.method === 'HEAD') return exchange.bytesOut;
  return Buffer.byteLength(errorBody(error));
}

/** Fills the thread's failover record: the exchange has just dispatched to `to` after `from` failed. */
export function recordFailover(exchange: Exchange, from: Endpoint, to: Endpoint, reason: RetryReason): FailoverRecord {
  const record = failoverRecord;
  record.requestId = exchange.requestId;
  record.topology = exchange.plane.config.topology;
  record.from = from;
  record.to = to;
  record.reason = reason;
  return record;
}

/** Fills the thread's tunnel record; `closeReason` is null when the upgrade request has just arrived. */
export function recordTunnel(tunnel: Tunnel, closeReason: TunnelCloseReason | null): TunnelRecord {
  const { location, decision, downstream, error } = tunnel;
  const record = tunnelRecord;
  const closing = closeReason !== null;
  record.requestId = tunnel.requestId;
  record.peerIp = tunnel.peerIp;
  record.clientIp = tunnel.clientIp;
  record.country = location === null ? null : location.country;
  record.continent = location === null ? null : location.continent;
  record.topology = tunnel.plane.config.topology;
  record.endpoint = tunnel.endpoint;
  record.misrouteNearest = decision === null ? null : decision.misrouteNearest;
  // Counted at close, for a tunnel that reached its endpoint: not one the client left or that got an answer instead.
  const cost = decision === null ? null : decision.misrouteCost;
  const connected = closeReason !== null && closeReason !== 'refused' && closeReason !== 'abandoned' && tunnel.endpoint !== null;
  const served = cost == null || !connected ? -1 : tunnel.endpoint!.index;
  record.misrouteReason = served === -1 ? -1 : cost!.reasons[served];
  record.misrouteKm = served === -1 ? 0 : cost!.extraKm[served];
  record.startedAt = TIME_ORIGIN + tunnel.startedAt;
  record.durationMs = closing ? performance.now() - tunnel.startedAt : 0;
  record.bytesIn = closing ? downstream.bytesRead : 0;
  record.bytesOut = closing ? downstream.bytesWritten : 0;
  record.closeReason = closeReason;
  record.errorCode = error === null ? null : error.code;
  return record;
}
