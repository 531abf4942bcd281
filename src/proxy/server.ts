// The data-plane HTTP server: accepts downstream requests and runs the phases listed in the README (How a request flows).
import type { IncomingMessage, Server, ServerOptions } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { CURRENT_EXCHANGE, Exchange, type ExchangeSocket, type MeridianResponse } from './exchange.ts';
import { upstreamRequestHeaders } from './headers.ts';
import { closeIfBodyArriving, KINDS, ProxyError } from './errors.ts';
import { ASTERISK_ALLOW, settleTarget, type TargetVerdict } from './request-target.ts';
import { rejectMalformed } from './client-error.ts';
import { handleUpgrade } from './websocket.ts';
import { chunkKind } from './upload-pins.ts';
import { STAT } from '../observe/thread-stats.ts';
import { MeridianH2Response, STREAM_EXCHANGE, type ExchangeStream } from './http2-response.ts';
import type { DataPlane } from './plane.ts';
import type { ListenerSettings, Timeouts } from '../config/types.ts';
import { hasDuplicateHost, identifyClient, peerAddress, projectOf, requestIdOf } from './request-facts.ts';
import { overLimit } from './rate-limit.ts';

/**
 * The request path of every listener: HTTP/1.1 requests, upgrades and connections from the node servers the
 * listeners (src/listen/listeners.ts) create, and HTTP/2 requests from their HTTP/2 sessions.
 */
export class ProxyServer {
  /** Swapped whole on reload; each request reads it once at accept. */
  plane: DataPlane;

  constructor(plane: DataPlane) {
    this.plane = plane;
  }

  /** New requests are served with `plane`. */
  use(plane: DataPlane): void {
    this.plane = plane;
  }

  /**
   * Serve the HTTP/1.1 requests, upgrades and malformed input of `server`, and count its connections. A listener
   * that answers requests itself (the redirect listener) passes its handler, and takes no upgrades.
   */
  serve(server: Server, onRequest?: (req: IncomingMessage, res: MeridianResponse) => void): void {
    server.on('request', onRequest ?? this.onRequest);
    if (onRequest === undefined) server.on('upgrade', this.#onUpgrade);
    server.on('clientError', rejectMalformed);
    server.on('timeout', onIdleSocket);
    server.on('connection', this.onConnection);
  }

  onRequest = (req: IncomingMessage, res: MeridianResponse): void => {
    const plane = this.plane;
    const http2 = req.httpVersionMajor === 2;
    // Before the exchange reads Host: HTTP/2 names the site in `:authority`.
    if (http2) {
      adoptAuthority(req);
      plane.traffic.tally(STAT.http2Requests);
    }
    plane.traffic.exchangeStarted();
    const startedAt = performance.now();
    // While draining, tell keep-alive clients to reconnect elsewhere after this response; an HTTP/2 client gets
    // GOAWAY, which lets its open streams finish.
    if (plane.traffic.draining) {
      res.shouldKeepAlive = false;
      if (http2) (res as unknown as MeridianH2Response).stream.session?.close();
    }
    // Before anything reads Host: an absolute-form target supplies it.
    const target = settleTarget(req);
    const exchange = new Exchange(plane, req, res, peerAddress(req.socket), requestIdOf(req), startedAt);
    // TLS ended here: the upstream hears https whatever the client's headers say (a trusted proxy may say so too).
    if ((req.socket as TLSSocket).encrypted === true) exchange.proto = 'https';
    if (http2) watchStream(exchange, res as unknown as MeridianH2Response);
    if (target !== 'proxy') {
      answerTarget(exchange, target);
      return;
    }
    if ((req.headers.host === undefined && req.httpVersionMinor === 1) || hasDuplicateHost(req)) {
      // RFC 9112 §3.2: an HTTP/1.1 request without Host, or any with two, is malformed, and Appwrite routes by Host.
      res.shouldKeepAlive = false;
      exchange.fail(new ProxyError(KINDS.badRequest));
      return;
    }
    identifyClient(exchange, plane);
    // Rate limits, by the client just identified; without rules, this length check is all they cost.
    if (plane.config.rateLimits.rules.length !== 0) {
      const refused = overLimit(plane, exchange.clientIp, exchange.host, req.url ?? '/', req.method ?? 'GET', startedAt);
      if (refused !== null) {
        exchange.fail(refused);
        return;
      }
    }
    exchange.location = plane.locator.locate(exchange.clientIp);
    const headers = req.headers;
    exchange.project = projectOf(req, plane);
    if (headers['content-range'] !== undefined) {
      const chunk = chunkKind(headers, exchange.project);
      exchange.chunk = chunk;
      if (chunk?.kind === 'later') exchange.pinnedRegion = plane.uploadPins.regionFor(chunk.key);
    }
    exchange.decision = plane.router.route(exchange);
    // Redirect mode: without rules, this length check is all it costs.
    if (plane.config.routing.redirects.length > 0 && exchange.redirectIfRuled()) return;
    exchange.upstreamHeaders = upstreamRequestHeaders(req.headers, exchange, false);
    if (exchange.body !== null) {
      if (shouldHoldBody(req, plane.config.retries.bufferBodyBytes)) exchange.holdBody(0);
      else if (exchange.chunk !== null) holdChunkIfRoom(exchange, plane);
    }
    exchange.start();
  };

  onConnection = (socket: Socket): void => {
    const traffic = this.plane.traffic;
    traffic.connectionOpened();
    socket.once('close', () => traffic.connectionClosed());
  };

  #onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    handleUpgrade(this.plane, req, socket as Socket, head);
  };
}

const BAD_TARGET = 'The request target must be a path, or an absolute http(s) URL with a valid host.';

/** `OPTIONS *` asks about this server, so Meridian answers it; any other target that is not a path is refused. */
function answerTarget(exchange: Exchange, target: Exclude<TargetVerdict, 'proxy'>): void {
  const res = exchange.res;
  if (target === 'invalid') {
    res.shouldKeepAlive = false;
    exchange.fail(new ProxyError(KINDS.badRequest, undefined, BAD_TARGET));
    return;
  }
  closeIfBodyArriving(exchange.req, res);
  exchange.req.resume();
  res.writeHead(200, { allow: ASTERISK_ALLOW, 'content-length': 0, 'x-request-id': exchange.requestId });
  res.end();
}

const IDEMPOTENT_WITH_BODY = new Set(['PUT', 'DELETE', 'OPTIONS']);

/** Small bodies of idempotent requests are held in memory as they stream, so a reset or a 502/503/504 can be retried. */
function shouldHoldBody(req: IncomingMessage, limit: number): boolean {
  if (limit === 0 || !IDEMPOTENT_WITH_BODY.has(req.method ?? '')) return false;
  const length = Number(req.headers['content-length']);
  return Number.isInteger(length) && length <= limit;
}

/**
 * An upload chunk up to `uploads.retryChunkBytes` is held while it streams, if the process's chunk-retry memory has
 * room for its declared length; otherwise it streams unheld (no retry), and the metric counts it.
 */
function holdChunkIfRoom(exchange: Exchange, plane: DataPlane): void {
  const { retryChunkBytes, retryBufferBytes } = plane.config.uploads;
  const length = Number(exchange.req.headers['content-length']);
  if (!Number.isInteger(length) || length > retryChunkBytes) return;
  if (plane.traffic.tryHold(length, retryBufferBytes)) exchange.holdBody(length);
  else plane.traffic.tally(STAT.chunkNotHeld);
}

/** The downstream socket saw no bytes for `timeouts.idle`: the exchange it serves decides, or the connection goes. */
function onIdleSocket(socket: Socket): void {
  if ((socket as ExchangeSocket)[CURRENT_EXCHANGE]?.onDownstreamIdle()) return;
  socket.destroy();
}

/** The node:http options of a listener's server; `timeouts` are applied again on reload (src/listen/listeners.ts). */
export function serverOptions(listener: ListenerSettings, timeouts: Timeouts): ServerOptions {
  return {
    maxHeaderSize: listener.maxHeaderBytes,
    headersTimeout: timeouts.requestHeaders,
    // Uploads to Appwrite can take far longer than any fixed deadline; the idle timer guards stalls instead.
    requestTimeout: 0,
    keepAliveTimeout: timeouts.keepAlive,
    connectionsCheckingInterval: Math.min(1_000, timeouts.requestHeaders),
    noDelay: true,
    // Checked in onRequest instead: node's own check answers with a bare 400, not our JSON error.
    requireHostHeader: false,
  };
}

/**
 * An HTTP/2 request names its site in `:authority` (RFC 9113 §8.3.1); the upstream is HTTP/1.1 and Appwrite routes by
 * Host, so Host is taken from it when the client sent none. The pseudo-headers themselves never go upstream.
 */
function adoptAuthority(req: IncomingMessage): void {
  const headers = req.headers;
  if (headers.host === undefined) {
    const authority = headers[':authority'];
    if (typeof authority === 'string') headers.host = authority;
  }
}

/** An HTTP/2 stream gets the idle rule HTTP/1.1 connections have (`timeouts.idle`), with the exchange deciding. */
function watchStream(exchange: Exchange, res: MeridianH2Response): void {
  const stream = res.stream as ExchangeStream;
  stream[STREAM_EXCHANGE] = exchange;
  stream.setTimeout(exchange.plane.config.timeouts.idle);
  stream.on('timeout', onIdleStream);
}

function onIdleStream(this: ExchangeStream): void {
  if (this[STREAM_EXCHANGE]?.onDownstreamIdle()) return;
  this.close(0x8 /* CANCEL */);
}
