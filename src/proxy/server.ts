// The data-plane HTTP server: accepts downstream requests and runs the phases listed in the README (How a request flows).
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket, AddressInfo } from 'node:net';
import { CURRENT_EXCHANGE, Exchange, MeridianResponse, type ExchangeSocket } from './exchange.ts';
import { upstreamRequestHeaders } from './headers.ts';
import { closeIfBodyArriving, KINDS, ProxyError } from './errors.ts';
import { ASTERISK_ALLOW, settleTarget, type TargetVerdict } from './request-target.ts';
import { rejectMalformed } from './client-error.ts';
import { handleUpgrade } from './websocket.ts';
import { chunkKind } from './upload-pins.ts';
import { STAT } from '../observe/thread-stats.ts';
import { endTunnels } from './websocket-drain.ts';
import type { DataPlane } from './plane.ts';
import { hasDuplicateHost, identifyClient, peerAddress, projectOf, requestIdOf } from './request-facts.ts';

export class ProxyServer {
  /** Swapped whole on reload; each request reads it once at accept. */
  plane: DataPlane;
  readonly server: Server;

  constructor(plane: DataPlane) {
    this.plane = plane;
    const { listen, timeouts } = plane.config;
    this.server = createServer({
      ServerResponse: MeridianResponse,
      maxHeaderSize: listen.maxHeaderBytes,
      headersTimeout: timeouts.requestHeaders,
      // Uploads to Appwrite can take far longer than any fixed deadline; the idle timer guards stalls instead.
      requestTimeout: 0,
      keepAliveTimeout: timeouts.keepAlive,
      connectionsCheckingInterval: Math.min(1_000, timeouts.requestHeaders),
      noDelay: true,
      // Checked in #onRequest instead: node's own check answers with a bare 400, not our JSON error.
      requireHostHeader: false,
    });
    this.server.timeout = timeouts.idle;
    this.server.on('request', this.#onRequest);
    this.server.on('upgrade', this.#onUpgrade);
    this.server.on('clientError', rejectMalformed);
    this.server.on('timeout', onIdleSocket);
    this.server.on('connection', this.#onConnection);
  }

  /** New requests are served with `plane`; a new config's downstream timeouts apply to the listener as well. */
  use(plane: DataPlane): void {
    const previous = this.plane;
    this.plane = plane;
    if (plane.config.timeouts !== previous.config.timeouts) this.applyTimeouts(plane.config.timeouts);
  }

  /**
   * A reload's downstream timeouts. node reads `headersTimeout` at each connections check and `keepAliveTimeout` as
   * each response ends, but `timeout` only as it accepts a connection: open connections keep their idle bound.
   * `connectionsCheckingInterval` is fixed at creation, so a lowered `requestHeaders` holds to within it (1 s at most).
   */
  applyTimeouts(timeouts: DataPlane['config']['timeouts']): void {
    this.server.headersTimeout = timeouts.requestHeaders;
    this.server.keepAliveTimeout = timeouts.keepAlive;
    this.server.timeout = timeouts.idle;
  }

  /** `reusePort`: share the port with the other workers' listeners; the kernel spreads new connections among them. */
  listen(host: string, port: number, reusePort = false): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ port, host, reusePort }, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /**
   * Stop accepting, let in-flight exchanges finish up to `timeoutMs`, then cut whatever is left. WebSocket tunnels
   * keep serving meanwhile and get their close frames one by one across that window (websocket-drain.ts).
   */
  async close(timeoutMs: number): Promise<void> {
    const traffic = this.plane.traffic;
    traffic.draining = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    // Over the same window, not after it: shutdown stays within drainTimeout however long the exchanges take.
    const tunnelsEnded = endTunnels(traffic, timeoutMs);
    await traffic.whenIdle(timeoutMs);
    // Upgraded sockets are no longer the HTTP server's connections: this cuts exchanges and leaves tunnels alone.
    this.server.closeAllConnections();
    await tunnelsEnded;
    await closed;
  }

  #onRequest = (req: IncomingMessage, res: MeridianResponse): void => {
    const plane = this.plane;
    plane.traffic.exchangeStarted();
    const startedAt = performance.now();
    // While draining, tell keep-alive clients to reconnect elsewhere after this response.
    if (plane.traffic.draining) res.shouldKeepAlive = false;
    // Before anything reads Host: an absolute-form target supplies it.
    const target = settleTarget(req);
    const exchange = new Exchange(plane, req, res, peerAddress(req.socket), requestIdOf(req), startedAt);
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
    exchange.location = plane.locator.locate(exchange.clientIp);
    const headers = req.headers;
    exchange.project = projectOf(req, plane);
    if (headers['content-range'] !== undefined) {
      const chunk = chunkKind(headers, exchange.project);
      exchange.chunk = chunk;
      if (chunk?.kind === 'later') exchange.pinnedRegion = plane.uploadPins.regionFor(chunk.key);
    }
    exchange.decision = plane.router.route(exchange);
    exchange.upstreamHeaders = upstreamRequestHeaders(req.headers, exchange, false);
    if (exchange.body !== null) {
      if (shouldHoldBody(req, plane.config.retries.bufferBodyBytes)) exchange.holdBody(0);
      else if (exchange.chunk !== null) holdChunkIfRoom(exchange, plane);
    }
    exchange.start();
  };

  #onConnection = (socket: Socket): void => {
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
