// One downstream request and its attempts upstream; it is also the undici dispatch handler.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import type { Endpoint } from '../config/types.ts';
import type { GeoLocation } from '../geo/database.ts';
import type { RouteDecision, RouteFacts } from '../routing/types.ts';
import type { DataPlane } from './plane.ts';
import { downstreamResponseHeaders, type ForwardingFacts } from './headers.ts';
import { closeIfBodyArriving, fenceExhausted, KINDS, ProxyError, sendError, translateUpstreamError, type ProxyErrorKind } from './errors.ts';
import { pickInZone } from '../routing/p2c.ts';
import { exchangeEnd, exchangeFailover } from './events.ts';
import { recordExchange, recordFailover, type RetryReason } from './record.ts';
import { uploadKey, type ChunkKind } from './upload-pins.ts';
import { namesUpload, UploadIdReader } from './upload-id.ts';
import { HeldBody } from './held-body.ts';
import { STAT } from '../observe/thread-stats.ts';
import { redirectFor, redirectPlan } from '../routing/redirect.ts';
import { ROUTE_HEADER, routeHeader, SERVER_TIMING_HEADER, serverTiming } from './explain-headers.ts';

/**
 * The downstream response carries its exchange, so shared listeners need no per-request closure. It is node's own
 * ServerResponse with the property added, not a subclass: V8 runs a subclass's constructor for every response, even
 * the default one (the arguments spread into `super`), and the profile showed that frame at about 0.5 µs a request.
 */
export type MeridianResponse = ServerResponse<IncomingMessage> & { exchange?: Exchange | null };

type Controller = Dispatcher.DispatchController;

/** The exchange a downstream socket is serving, so its idle timer can tell a stall from a wait. */
export const CURRENT_EXCHANGE = Symbol('meridian.exchange');
export type ExchangeSocket = Socket & { [CURRENT_EXCHANGE]?: Exchange | null };

const NO_DECISION: RouteDecision = Object.freeze({ candidates: [], tiers: [], panic: false, regions: [], home: null, reason: 'not routed', code: 'none', fence: null, misrouteNearest: null });

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Appwrite's error JSON is a few hundred bytes; a 404 body longer than this is not the one pin discovery reads. */
const NOT_FOUND_BODY_BYTES = 4_096;

interface NotFoundAnswer {
  readonly statusCode: number;
  readonly statusMessage: string | undefined;
  readonly headers: IncomingHttpHeaders;
  readonly parts: Buffer[];
  bytes: number;
  readonly at: number;
}

/** Appwrite's answer to a chunk of an upload the region does not know. */
function isFileNotFound(parts: readonly Buffer[]): boolean {
  try {
    return (JSON.parse(Buffer.concat(parts).toString('utf8')) as { type?: unknown }).type === 'storage_file_not_found';
  } catch {
    return false;
  }
}

/**
 * Fields are filled in phase order by the server (client-ip, geo, route, headers) before the first dispatch.
 * The exchange doubles as the route facts, the forwarding facts and the undici handler, so no per-phase objects exist.
 */
export class Exchange implements Dispatcher.DispatchHandler, RouteFacts, ForwardingFacts {
  readonly plane: DataPlane;
  readonly req: IncomingMessage;
  readonly res: MeridianResponse;
  /**
   * The HTTP/1.1 connection, kept because `req.socket` is detached by the time the response closes; null over
   * HTTP/2, where the connection carries many exchanges and each stream has its own idle timer.
   */
  readonly socket: ExchangeSocket | null;
  readonly startedAt: number;
  readonly peerIp: string;
  readonly requestId: string;
  readonly host: string | undefined;
  /** The downstream request's body, or null when it has none. */
  readonly body: IncomingMessage | null;
  clientIp: string;
  /** Set by the client-ip phase when the socket peer is a trusted proxy. */
  trustedPeer = false;
  location: GeoLocation | null = null;
  project: string | undefined = undefined;
  pinnedRegion: string | undefined = undefined;
  /** For a chunked-upload request: which upload it belongs to, or that it starts one. */
  chunk: ChunkKind = null;
  proto = 'http';
  forwardedHost: string | undefined;
  decision: RouteDecision = NO_DECISION;
  upstreamHeaders: string[] = [];
  /** Position in `decision.tiers`, and the endpoints already tried in that tier as a bit mask. */
  tier = 0;
  triedInTier = 0;
  attempts = 0;
  endpoint: Endpoint | null = null;
  /** The endpoint that failed before the current one was tried (the records name it). */
  previousEndpoint: Endpoint | null = null;
  retryReason: RetryReason | null = null;
  /** Set between dispatch and upstream response headers: the downstream idle timer must not fire then. */
  awaitingResponse = false;
  responseStarted = false;
  attemptStartedAt = 0;
  /** performance.now() when the upstream response headers arrived (0 when they never did). */
  responseStartedAt = 0;
  status = 0;
  /** Request body bytes the current attempt has passed upstream (undici reports each chunk it sends). */
  bytesIn = 0;
  bytesOut = 0;
  /** The answer's Content-Length, or -1: the chunk that completes it ends the response in the same write. */
  #bodyLength = -1;
  error: ProxyError | null = null;
  #controller: Controller | null = null;
  #drainListening = false;
  #countedAsRetry = false;
  #circuitSkips = 0;
  /** Reading a new upload's id from its first chunk's answer, as the answer streams to the client. */
  #uploadId: UploadIdReader | null = null;
  /** The body held for retries (a small idempotent body, or an upload chunk), and the chunk bytes it reserved. */
  #held: HeldBody | null = null;
  #heldBytes = 0;
  /** A 404 to a later chunk of an unpinned upload, held back until its body is read (pin discovery). */
  #notFound: NotFoundAnswer | null = null;
  /** This chunk went on to another region after a 404 (pin discovery). */
  #discovered = false;
  /** Set once a held later chunk went to a region: its retries stay there, where the upload's other chunks were written. */
  #regionLock: string | null = null;
  /** Some attempt in the locked region got further than a refused connect: the region may hold the upload. */
  #regionReached = false;

  constructor(plane: DataPlane, req: IncomingMessage, res: MeridianResponse, peerIp: string, requestId: string, startedAt: number) {
    this.plane = plane;
    this.req = req;
    this.res = res;
    this.peerIp = peerIp;
    this.clientIp = peerIp;
    this.requestId = requestId;
    this.startedAt = startedAt;
    this.host = req.headers.host;
    this.forwardedHost = this.host;
    this.body = hasBody(req.headers) ? req : null;
    res.exchange = this;
    // The snapshot's pools stay open until this exchange, and every failover it makes, is over.
    plane.pools.acquire();
    if (req.httpVersionMajor === 2) {
      this.socket = null;
    } else {
      this.socket = req.socket as ExchangeSocket;
      this.socket[CURRENT_EXCHANGE] = this;
    }
    res.on('close', onDownstreamClose);
  }

  get appendForwardedFor(): boolean {
    return this.plane.config.headers.forwardedFor === 'append';
  }

  get clientAddressHeaders(): ReadonlySet<string> {
    return this.plane.config.geo.clientAddressHeaders;
  }

  /**
   * Hold the body while it streams, so a reset, a connect failure or a 502/503/504 can send it again: a small body of
   * an idempotent request to the next candidate; an upload chunk too (Appwrite writes chunk n of an upload
   * idempotently), a later chunk only within its region, where the upload's other chunks are. `reservedBytes` were
   * taken from the process's chunk-retry memory and are given back when the exchange ends.
   */
  holdBody(reservedBytes: number): void {
    this.#held = new HeldBody(this.req);
    this.#heldBytes = reservedBytes;
  }

  /** First dispatch; answers 503 itself when there is nothing to dispatch to. */
  start(): void {
    if (this.dispatchNext()) return;
    this.fail(new ProxyError(this.#circuitSkips > 0 ? KINDS.circuitOpen : KINDS.noCandidate));
  }

  /**
   * Dispatch to the next endpoint: by load inside the current zone, then zone after zone. An endpoint at its
   * concurrency limit is passed over without spending an attempt. False when nothing is left to try.
   */
  dispatchNext(): boolean {
    const { plane, decision } = this;
    const { retries, circuitBreaker } = plane.config;
    const load = plane.load;
    while (this.attempts < retries.maxAttempts && this.tier < decision.tiers.length) {
      const tier = decision.tiers[this.tier];
      if (this.#regionLock !== null && tier[0]?.region !== this.#regionLock) {
        this.tier++;
        this.triedInTier = 0;
        continue;
      }
      const position = pickInZone(tier, this.triedInTier, load, Math.random);
      if (position === -1) {
        this.tier++;
        this.triedInTier = 0;
        continue;
      }
      this.triedInTier |= 1 << position;
      const endpoint = tier[position];
      // Check and take the slot in one step: another thread may be dispatching to the same endpoint.
      if (!load.tryAcquire(endpoint.index, circuitBreaker.maxRequests)) {
        this.#circuitSkips++;
        continue;
      }
      this.attempts++;
      this.bytesIn = 0;
      this.endpoint = endpoint;
      this.awaitingResponse = true;
      this.attemptStartedAt = performance.now();
      this.#controller = null;
      const req = this.req;
      const held = this.#held;
      // A later chunk's upload lives where its other chunks were written; a first chunk's upload starts wherever it lands.
      if (held !== null && this.chunk?.kind === 'later') this.#regionLock = endpoint.region;
      const body = held !== null ? held.attempt() : this.body;
      plane.pools.get(endpoint).dispatch({ path: req.url ?? '/', method: req.method ?? 'GET', headers: this.upstreamHeaders, body }, this);
      return true;
    }
    return false;
  }

  onRequestStart(controller: Controller): void {
    this.#controller = controller;
    // Queued in the pool while the exchange already ended on the client's side (a stalled body): never send it.
    if (this.error !== null && this.error.kind.source === 'downstream') controller.abort(this.error);
  }

  onBodySent(chunk: Buffer): void {
    this.bytesIn += chunk.length;
  }

  onResponseStart(controller: Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    const now = performance.now();
    const endpoint = this.endpoint!;
    const plane = this.plane;
    plane.load.observeLatency(endpoint.index, now - this.attemptStartedAt);
    if (statusCode === 502 || statusCode === 503 || statusCode === 504) {
      plane.outcomes.failure(endpoint.index, Date.now());
      if (this.#mayRetry(KINDS.upstreamStatus)) {
        // Drop this answer and try elsewhere; onResponseError takes it from here.
        controller.abort(new ProxyError(KINDS.upstreamStatus));
        return;
      }
    } else {
      plane.outcomes.success(endpoint.index);
      if (statusCode === 404 && this.#mayDiscover()) {
        // Held back until its body tells whether this region does not know the upload (onResponseEnd).
        this.#notFound = { statusCode, statusMessage, headers, parts: [], bytes: 0, at: now };
        return;
      }
    }
    this.#answer(statusCode, headers, statusMessage, now);
  }

  /** The upstream's answer goes to the client: its head now, its body as it streams. */
  #answer(statusCode: number, headers: IncomingHttpHeaders, statusMessage: string | undefined, now: number): void {
    const endpoint = this.endpoint!;
    const plane = this.plane;
    this.awaitingResponse = false;
    this.responseStarted = true;
    // An earlier attempt's failure is told by the failover fields; the answer the client gets is this one's.
    this.error = null;
    this.responseStartedAt = now;
    this.status = statusCode;
    const chunk = this.chunk;
    if (chunk !== null && statusCode >= 200 && statusCode < 300) {
      if (this.#discovered) plane.traffic.tally(STAT.chunkDiscovered);
      if (chunk.kind === 'later') plane.uploadPins.pin(chunk.key, endpoint.region);
      else if (namesUpload(statusCode, headers['content-type'])) this.#uploadId = new UploadIdReader();
    }
    const length = headers['content-length'];
    this.#bodyLength = typeof length === 'string' && this.req.method !== 'HEAD' ? Number(length) : -1;
    const extra = plane.routingHeaders[endpoint.index];
    // The upstream answered before the client finished its body (a 413, a 401 on an upload).
    closeIfBodyArriving(this.req, this.res);
    const list = downstreamResponseHeaders(headers, extra);
    if (plane.config.headers.explain) {
      // Meridian's time: up to the dispatch of the attempt that answered (earlier attempts included), and from its
      // response headers to now. The upstream's: that dispatch to those headers.
      const upstreamMs = now - this.attemptStartedAt;
      list.push(ROUTE_HEADER, routeHeader(this.decision, this.tier, this.attempts > 1));
      list.push(SERVER_TIMING_HEADER, serverTiming(this.attemptStartedAt - this.startedAt + (performance.now() - now), upstreamMs));
    }
    this.res.writeHead(statusCode, statusMessage || undefined, list);
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    const notFound = this.#notFound;
    if (notFound !== null) {
      notFound.parts.push(chunk);
      notFound.bytes += chunk.length;
      // Too long for Appwrite's error JSON: not the answer discovery looks for; the client gets it as it is.
      if (notFound.bytes > NOT_FOUND_BODY_BYTES) this.#relayNotFound(notFound);
      return;
    }
    this.bytesOut += chunk.length;
    if (this.#uploadId !== null) this.#learnUploadId(chunk);
    if (this.bytesOut === this.#bodyLength) {
      // The last bytes: node sends them with the end of the response (for a small answer, with its head too).
      this.res.end(chunk);
      return;
    }
    if (this.res.write(chunk)) return;
    // Backpressure: stop reading upstream until the client has taken what we gave it.
    controller.pause();
    if (!this.#drainListening) {
      this.#drainListening = true;
      this.res.on('drain', onDownstreamDrain);
    }
  }

  /** The first chunk's answer names the upload: pin it to the region that took it, for the chunks that follow. */
  #learnUploadId(chunk: Buffer): void {
    const reader = this.#uploadId!;
    const id = reader.read(chunk);
    if (id !== undefined) this.plane.uploadPins.pin(uploadKey(this.project, id), this.endpoint!.region);
    if (reader.finished) this.#uploadId = null;
  }

  onResponseEnd(): void {
    this.plane.load.release(this.endpoint!.index);
    const notFound = this.#notFound;
    if (notFound !== null) {
      // Dispatching from inside undici's callback would re-enter it; the next attempt goes on the next tick.
      process.nextTick(() => {
        if (this.res.destroyed) return;
        if (!isFileNotFound(notFound.parts) || !this.#discoverElsewhere()) this.#relayNotFound(notFound);
        if (this.#notFound === null && this.responseStarted && !this.res.writableEnded) this.res.end();
      });
      return;
    }
    if (!this.res.writableEnded) this.res.end();
  }

  /**
   * Pin discovery: a later chunk of an upload with no pin here (its first chunk went through another instance, or
   * through this one before a restart) was sent by the usual route, and that region does not know the upload. It is
   * sent, held, to the next allowed region, nearest first, until one accepts it (its pin is then made from the answer)
   * or `retries.maxAttempts` is spent: one attempt per region, each bounded by `timeouts.response`.
   */
  #mayDiscover(): boolean {
    return this.chunk?.kind === 'later' && this.pinnedRegion === undefined && this.#held !== null && this.attempts < this.plane.config.retries.maxAttempts;
  }

  /** True when the chunk went on to another region; false when none is left to ask. */
  #discoverElsewhere(): boolean {
    const { tiers } = this.decision;
    const from = this.endpoint!.region;
    let next = this.tier;
    while (next < tiers.length && tiers[next][0]?.region === from) next++;
    if (next >= tiers.length) return false;
    this.#notFound = null;
    this.#regionLock = null;
    this.tier = next;
    this.triedInTier = 0;
    this.#discovered = true;
    this.previousEndpoint = this.endpoint;
    if (this.dispatchNext()) return true;
    this.endpoint = this.previousEndpoint;
    return false;
  }

  /** The held-back 404 goes to the client after all, head and the body read so far. */
  #relayNotFound(notFound: NotFoundAnswer): void {
    this.#notFound = null;
    this.#answer(notFound.statusCode, notFound.headers, notFound.statusMessage, notFound.at);
    for (const part of notFound.parts) {
      this.bytesOut += part.length;
      this.res.write(part);
    }
  }

  onResponseError(_controller: Controller, err: Error): void {
    const endpoint = this.endpoint!;
    this.plane.load.release(endpoint.index);
    this.awaitingResponse = false;
    // A 404 cut off while discovery read it is a failed attempt like any other.
    this.#notFound = null;
    const error = translateUpstreamError(err);
    this.error = error;
    const res = this.res;
    if (error.kind.source === 'upstream' && error.kind !== KINDS.upstreamStatus) this.plane.outcomes.failure(endpoint.index, Date.now());
    if (res.destroyed || res.writableEnded) return;
    if (this.responseStarted) {
      // Bytes already reached the client: cut the connection so a truncated body never looks complete.
      res.destroy(error);
      return;
    }
    // The client's own fault (a stalled body, a request undici refuses) would fail the same way anywhere: no retry.
    if (error.kind.source !== 'downstream' && (error.kind === KINDS.upstreamStatus || this.#mayRetry(error.kind))) {
      process.nextTick(failOver, this);
      return;
    }
    this.fail(error);
  }

  /** Answer with a Meridian error before or instead of any upstream response. */
  fail(error: ProxyError): void {
    const answer = (this.#hasNextCandidate() ? null : fenceExhausted(this.decision.fence, error)) ?? error;
    this.error = answer;
    if (this.plane.config.headers.explain) this.#explainOwnAnswer();
    sendError(this.req, this.res, answer, this.requestId);
  }

  /**
   * Meridian's own answers carry the explain headers too: why a 503 came (a strict fence, nothing left) is what they
   * are for. `tier` is that of the last endpoint tried, `none` without one; the time is all Meridian's.
   */
  #explainOwnAnswer(): void {
    const res = this.res;
    // sendError destroys a response whose head is already out; setHeader would throw there.
    if (res.headersSent || res.destroyed) return;
    res.setHeader(ROUTE_HEADER, routeHeader(this.decision, this.#lastTier(), this.attempts > 1));
    res.setHeader(SERVER_TIMING_HEADER, serverTiming(performance.now() - this.startedAt, null));
  }

  /** The tier of the last endpoint tried: `tier` itself may have moved past it looking for another. */
  #lastTier(): number | null {
    const endpoint = this.endpoint;
    if (endpoint === null) return null;
    const at = this.decision.tiers.findIndex((tier) => tier.includes(endpoint));
    return at === -1 ? null : at;
  }

  /**
   * Redirect mode (src/routing/redirect.ts), run once routed and only when the config has redirect rules: answers
   * 307/308 to the home region's `publicHost` and returns true, or returns false to proxy the request.
   */
  redirectIfRuled(): boolean {
    const { req, res, plane } = this;
    const upgrade = req.headers.upgrade;
    const redirect = redirectFor(redirectPlan(plane.config), this.decision, {
      host: this.host,
      forwardedHost: this.forwardedHost,
      target: req.url ?? '/',
      method: req.method ?? 'GET',
      secure: this.proto === 'https',
      websocket: upgrade !== undefined && upgrade.toLowerCase() === 'websocket',
      uploadChunk: this.chunk !== null,
    });
    if (redirect === null) return false;
    plane.traffic.redirected(redirect.regionIndex);
    this.status = redirect.status;
    const headers: Record<string, string | number> = {
      location: redirect.location,
      'content-length': 0,
      'cache-control': 'no-store',
      'x-request-id': this.requestId,
    };
    // As on Meridian's errors (sendError): a browser reads a cross-origin redirect only with these.
    const origin = req.headers.origin;
    if (origin) {
      headers['access-control-allow-origin'] = origin;
      headers['access-control-allow-credentials'] = 'true';
      headers['vary'] = 'Origin';
    }
    if (plane.config.headers.explain) {
      headers[ROUTE_HEADER] = routeHeader(this.decision, null, false);
      headers[SERVER_TIMING_HEADER] = serverTiming(performance.now() - this.startedAt, null);
    }
    // What is left of a body cannot be told from the next request on this connection.
    if (closeIfBodyArriving(req, res)) req.resume();
    res.writeHead(redirect.status, headers);
    res.end();
    return true;
  }

  /**
   * The retry rules (README: How a request flows, failover): a connect failure sent nothing, so any method may go elsewhere; a reset or a gateway error
   * may repeat the request, so only idempotent methods whose body we still hold. Always within `maxAttempts`,
   * with another candidate left, and for gateway errors within the retry budget.
   */
  #mayRetry(kind: ProxyErrorKind): boolean {
    const { retries } = this.plane.config;
    if (!kind.nothingSent) this.#regionReached = true;
    else if (this.#regionLock !== null && !this.#regionReached && !this.#hasNextCandidate()) {
      // A later chunk whose region refused every connect: nothing reached that region, so, unpinned, it tells nothing
      // about where the upload lives (health may not have noticed the region's death yet). The chunk goes on to the
      // next region as pin discovery would: one that does not know the upload answers 404 and the search goes on.
      // A pinned chunk's route holds its pinned region alone, so it never leaves it this way.
      this.#regionLock = null;
    }
    if (this.attempts >= retries.maxAttempts || !this.#hasNextCandidate()) return false;
    let reason: RetryReason;
    if (this.#held !== null && (kind.nothingSent || kind === KINDS.reset || kind === KINDS.upstreamStatus)) {
      // Only idempotent requests and upload chunks are held; a later chunk stays in its region (#hasNextCandidate).
      reason = kind.nothingSent ? 'connect_failure' : kind === KINDS.reset ? 'reset' : 'upstream_5xx';
    } else if (kind.nothingSent && (this.body === null || !this.body.readableDidRead)) {
      reason = 'connect_failure';
    } else if ((kind === KINDS.reset || kind === KINDS.upstreamStatus) && IDEMPOTENT.has(this.req.method ?? '') && this.body === null) {
      reason = kind === KINDS.reset ? 'reset' : 'upstream_5xx';
    } else {
      return false;
    }
    // Only retries after a gateway answer spend the budget: an upstream that answers 502/503/504 stays in rotation,
    // and retrying it is what storms. A connect failure or a reset means a dead endpoint, which ejection and the
    // checks take out within a few failures; budgeting those would fail the burst of requests a killed zone had
    // in flight, which must all succeed elsewhere (test/chaos.test.ts kills a zone under load and expects no failed request).
    if (reason === 'upstream_5xx' && !this.#countedAsRetry) {
      if (!this.plane.traffic.admitRetry(retries.budgetPercent, retries.minConcurrency)) return false;
      this.#countedAsRetry = true;
    }
    this.retryReason = reason;
    if (this.#held !== null && this.chunk !== null) this.plane.traffic.tally(STAT.chunkRetried);
    return true;
  }

  #hasNextCandidate(): boolean {
    const { tiers } = this.decision;
    const lock = this.#regionLock;
    const current = tiers[this.tier];
    if (current !== undefined && this.triedInTier !== (1 << current.length) - 1 && (lock === null || current[0]?.region === lock)) return true;
    for (let next = this.tier + 1; next < tiers.length; next++) if (lock === null || tiers[next][0]?.region === lock) return true;
    return false;
  }

  resumeUpstream(): void {
    this.#controller?.resume();
  }

  abortUpstream(reason: ProxyError): void {
    const controller = this.#controller;
    if (controller !== null && !controller.aborted) controller.abort(reason);
  }

  /**
   * The downstream socket sat idle for `timeouts.idle`. While the upstream computes its answer to a complete request
   * that is `timeouts.response`'s business; otherwise the client stalled, mid-body or before, and the exchange ends
   * here: 408 when nothing was answered yet, the upstream attempt aborted, its circuit-breaker slot freed.
   * False when the caller should cut the connection itself.
   */
  onDownstreamIdle(): boolean {
    if (this.awaitingResponse && this.req.complete) return true;
    if (this.res.headersSent) return false;
    const error = new ProxyError(KINDS.requestTimeout);
    if (this.#controller !== null && this.awaitingResponse) {
      // onResponseError answers with it: a downstream error is never retried and never counts against the endpoint.
      this.abortUpstream(error);
    } else {
      this.error = error;
      if (this.plane.config.headers.explain) this.#explainOwnAnswer();
      sendError(this.req, this.res, error, this.requestId);
    }
    return true;
  }

  /** Called once when the downstream response closes. */
  ended(): void {
    this.plane.pools.release();
    const traffic = this.plane.traffic;
    traffic.exchangeEnded();
    if (this.#countedAsRetry) traffic.retryEnded();
    if (this.#held !== null) {
      this.#held.release();
      this.#held = null;
      if (this.#heldBytes > 0) traffic.releaseHeld(this.#heldBytes);
    }
  }
}

function hasBody(headers: IncomingHttpHeaders): boolean {
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function failOver(exchange: Exchange): void {
  if (exchange.res.destroyed) return;
  const failed = exchange.endpoint!;
  if (!exchange.dispatchNext()) {
    exchange.fail(exchange.error !== null && exchange.error.kind !== KINDS.upstreamStatus ? exchange.error : new ProxyError(KINDS.noCandidate));
    return;
  }
  exchange.previousEndpoint = failed;
  if (exchangeFailover.hasSubscribers) exchangeFailover.publish(recordFailover(exchange, failed, exchange.endpoint!, exchange.retryReason!));
}

function onDownstreamDrain(this: MeridianResponse): void {
  this.exchange?.resumeUpstream();
}

function onDownstreamClose(this: MeridianResponse): void {
  const exchange = this.exchange;
  if (exchange === null || exchange === undefined) return;
  if (!this.writableFinished) {
    exchange.error ??= new ProxyError(KINDS.downstreamAborted);
    exchange.abortUpstream(exchange.error);
  }
  exchange.ended();
  if (exchangeEnd.hasSubscribers) exchangeEnd.publish(recordExchange(exchange));
  this.exchange = null;
  const socket = exchange.socket;
  if (socket !== null && socket[CURRENT_EXCHANGE] === exchange) socket[CURRENT_EXCHANGE] = null;
}
