// One downstream request and its attempts upstream; it is also the undici dispatch handler.
import { ServerResponse } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import type { Endpoint } from '../config/types.ts';
import type { GeoLocation } from '../geo/database.ts';
import type { RouteDecision, RouteFacts } from '../routing/types.ts';
import type { DataPlane } from './plane.ts';
import { downstreamResponseHeaders, type ForwardingFacts } from './headers.ts';
import { KINDS, ProxyError, sendError, translateUpstreamError } from './errors.ts';
import { exchangeEnd, exchangeFailover } from './events.ts';

/** The downstream response carries its exchange, so shared listeners need no per-request closure. */
export class MeridianResponse extends ServerResponse<IncomingMessage> {
  exchange: Exchange | null = null;
}

type Controller = Dispatcher.DispatchController;

/** The exchange a downstream socket is serving, so its idle timer can tell a stall from a wait. */
export const CURRENT_EXCHANGE = Symbol('meridian.exchange');
export type ExchangeSocket = Socket & { [CURRENT_EXCHANGE]?: Exchange | null };

const NO_DECISION: RouteDecision = Object.freeze({ candidates: [], regions: [], home: null, reason: 'not routed', fence: null, misrouteNearest: null });

/**
 * Fields are filled in phase order by the server (client-ip, route, headers) before the first
 * dispatch. The exchange doubles as the route facts and forwarding facts, so no per-phase objects exist.
 */
export class Exchange implements Dispatcher.DispatchHandler, RouteFacts, ForwardingFacts {
  readonly plane: DataPlane;
  readonly req: IncomingMessage;
  readonly res: MeridianResponse;
  /** Kept here because `req.socket` is detached by the time the response closes. */
  readonly socket: ExchangeSocket;
  readonly startedAt: number;
  readonly peerIp: string;
  readonly requestId: string;
  readonly host: string | undefined;
  /** The downstream request when it has a body, streamed upstream as it arrives. */
  readonly body: IncomingMessage | null;
  clientIp: string;
  location: GeoLocation | null = null;
  project: string | undefined = undefined;
  pinnedRegion: string | undefined = undefined;
  proto = 'http';
  forwardedHost: string | undefined;
  decision: RouteDecision = NO_DECISION;
  upstreamHeaders: string[] = [];
  /** Index into `decision.candidates` of the endpoint being tried. */
  candidate = -1;
  attempts = 0;
  endpoint: Endpoint | null = null;
  /** Set between dispatch and upstream response headers: the downstream idle timer must not fire then. */
  awaitingResponse = false;
  responseStarted = false;
  status = 0;
  error: ProxyError | null = null;
  #controller: Controller | null = null;
  #drainListening = false;

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
    this.socket = req.socket as ExchangeSocket;
    this.socket[CURRENT_EXCHANGE] = this;
    res.on('close', onDownstreamClose);
  }

  get appendForwardedFor(): boolean {
    return this.plane.config.headers.forwardedFor === 'append';
  }

  /** Dispatch to the next candidate; false when none is left or attempts are used up. */
  dispatchNext(): boolean {
    const { candidates } = this.decision;
    if (this.attempts >= this.plane.config.retries.maxAttempts || this.candidate + 1 >= candidates.length) return false;
    this.candidate++;
    this.attempts++;
    const endpoint = candidates[this.candidate];
    this.endpoint = endpoint;
    this.awaitingResponse = true;
    const req = this.req;
    this.plane.pools.get(endpoint).dispatch(
      { path: req.url ?? '/', method: req.method ?? 'GET', headers: this.upstreamHeaders, body: this.body },
      this,
    );
    return true;
  }

  onRequestStart(controller: Controller): void {
    this.#controller = controller;
  }

  onResponseStart(_controller: Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    this.awaitingResponse = false;
    this.responseStarted = true;
    this.status = statusCode;
    if (statusCode < 400 && this.req.headers['content-range'] !== undefined) {
      this.plane.uploadPins.served(this.req.headers, this.clientIp, this.req.url ?? '/', this.endpoint!.region);
    }
    const extra = this.plane.routingHeaders[this.endpoint!.index];
    this.res.writeHead(statusCode, statusMessage || undefined, downstreamResponseHeaders(headers, extra));
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.res.write(chunk)) return;
    // Backpressure: stop reading upstream until the client has taken what we gave it.
    controller.pause();
    if (!this.#drainListening) {
      this.#drainListening = true;
      this.res.on('drain', onDownstreamDrain);
    }
  }

  onResponseEnd(): void {
    this.res.end();
  }

  onResponseError(_controller: Controller, err: Error): void {
    this.awaitingResponse = false;
    const error = translateUpstreamError(err);
    this.error = error;
    const res = this.res;
    if (res.destroyed) return;
    if (this.responseStarted) {
      // Bytes already reached the client: cut the connection so a truncated body never looks complete.
      res.destroy(error);
      return;
    }
    if (error.kind.nothingSent && this.bodyUntouched() && this.attempts < this.plane.config.retries.maxAttempts) {
      process.nextTick(failOver, this);
      return;
    }
    this.fail(error);
  }

  /** Answer with a Meridian error before or instead of any upstream response. */
  fail(error: ProxyError): void {
    const answer = this.#fenceExhausted(error) ?? error;
    this.error = answer;
    sendError(this.req, this.res, answer, this.requestId);
  }

  /**
   * A strict fence whose candidates are all used up answers 503 naming the fence (DESIGN.md §3), not the last
   * upstream's error: the client must learn that other regions exist but may not serve it.
   */
  #fenceExhausted(error: ProxyError): ProxyError | null {
    const { fence, candidates } = this.decision;
    if (fence === null || fence.mode !== 'strict' || this.candidate + 1 < candidates.length) return null;
    // Only a failure that would have moved on to another region counts; the client's own faults keep their answer.
    if (!error.kind.nothingSent || error.kind.source === 'downstream') return null;
    const message = `No region allowed for this client could serve the request: fence ${fence.name} (strict) keeps it in ${fence.regions.join(', ')}.`;
    return new ProxyError(KINDS.fenceExhausted, error, message);
  }

  resumeUpstream(): void {
    this.#controller?.resume();
  }

  abortUpstream(reason: ProxyError): void {
    const controller = this.#controller;
    if (controller !== null && !controller.aborted) controller.abort(reason);
  }

  private bodyUntouched(): boolean {
    return this.body === null || !this.body.readableDidRead;
  }
}

function hasBody(headers: IncomingHttpHeaders): boolean {
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function failOver(exchange: Exchange): void {
  if (exchange.res.destroyed) return;
  if (exchangeFailover.hasSubscribers) exchangeFailover.publish(exchange);
  if (!exchange.dispatchNext()) exchange.fail(exchange.error ?? new ProxyError(KINDS.noCandidate));
}

function onDownstreamDrain(this: MeridianResponse): void {
  this.exchange?.resumeUpstream();
}

function onDownstreamClose(this: MeridianResponse): void {
  const exchange = this.exchange;
  if (exchange === null) return;
  if (!this.writableFinished) {
    exchange.error ??= new ProxyError(KINDS.downstreamAborted);
    exchange.abortUpstream(exchange.error);
  }
  exchange.plane.traffic.exchangeEnded();
  if (exchangeEnd.hasSubscribers) exchangeEnd.publish(exchange);
  this.exchange = null;
  if (exchange.socket[CURRENT_EXCHANGE] === exchange) exchange.socket[CURRENT_EXCHANGE] = null;
}
