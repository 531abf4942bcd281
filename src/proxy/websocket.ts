// WebSocket upgrades (DESIGN.md §2): routed like requests, then tunnelled byte for byte to one endpoint for life.
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import type { Endpoint } from '../config/types.ts';
import type { GeoLocation } from '../geo/database.ts';
import type { RouteDecision, RouteFacts } from '../routing/types.ts';
import { upstreamRequestHeaders, type ForwardingFacts } from './headers.ts';
import { errorBody, fenceExhausted, KINDS, ProxyError, translateUpstreamError } from './errors.ts';
import { tunnelClose, tunnelOpen } from './events.ts';
import { identifyClient, peerAddress, projectOf, requestIdOf } from './request-facts.ts';
import type { DataPlane } from './plane.ts';

/** Both sockets point back at their tunnel, so the listeners below are shared functions, not per-socket closures. */
const TUNNEL = Symbol('meridian.tunnel');
type TunnelSocket = Socket & { [TUNNEL]?: Tunnel };

/** Replaces `head` once written: Node hands it over as a slice of a shared read buffer it would keep alive. */
const EMPTY = Buffer.alloc(0);

/** One upgrade request and its upstream connection; also the route facts, the forwarding facts and the event message. */
export class Tunnel implements RouteFacts, ForwardingFacts {
  readonly plane: DataPlane;
  readonly req: IncomingMessage;
  readonly downstream: TunnelSocket;
  readonly peerIp: string;
  readonly requestId: string;
  readonly host: string | undefined;
  readonly pinnedRegion = undefined;
  clientIp: string;
  proto = 'http';
  forwardedHost: string | undefined;
  location: GeoLocation | null = null;
  project: string | undefined = undefined;
  decision: RouteDecision | null = null;
  /** The request line and headers, rendered once and replayed to each candidate. */
  requestHead = '';
  /** Bytes the client sent after its request head (early frames), written upstream after it. */
  head: Buffer;
  /** Also the index of the next candidate: each is tried at most once, in order. */
  attempts = 0;
  /** The endpoint being tried; once connected, the one this socket stays on for life. */
  endpoint: Endpoint | null = null;
  upstream: TunnelSocket | null = null;
  connected = false;
  error: ProxyError | null = null;

  constructor(plane: DataPlane, req: IncomingMessage, downstream: TunnelSocket, head: Buffer) {
    this.plane = plane;
    this.req = req;
    this.downstream = downstream;
    this.head = head;
    this.peerIp = peerAddress(downstream);
    this.clientIp = this.peerIp;
    this.requestId = requestIdOf(req);
    this.host = req.headers.host;
    this.forwardedHost = this.host;
    downstream[TUNNEL] = this;
    // Node's HTTP server dropped its own listeners at the upgrade: without ours an 'error' would crash the process.
    downstream.on('error', onError).on('end', onDownstreamEnd).on('close', onDownstreamClose).on('timeout', onTimeout);
    downstream.setTimeout(plane.config.timeouts.idle);
    plane.traffic.tunnels.add(downstream);
    if (tunnelOpen.hasSubscribers) tunnelOpen.publish(this);
  }

  get appendForwardedFor(): boolean {
    return this.plane.config.headers.forwardedFor === 'append';
  }

  /** Connect to the next candidate, never one tried before; false when none is left or attempts are used up. */
  connectNext(): boolean {
    const candidates = this.decision?.candidates ?? [];
    if (this.attempts >= Math.min(this.plane.config.retries.maxAttempts, candidates.length)) return false;
    const endpoint = candidates[this.attempts++];
    this.endpoint = endpoint;
    const { hostname: host, port } = endpoint;
    // SNI must name a host; RFC 6066 forbids an IP literal there.
    const upstream: TunnelSocket = endpoint.tls
      ? connectTls({ host, port, servername: isIP(host) === 0 ? host : undefined, ALPNProtocols: ['http/1.1'] }, onUpstreamConnect)
      : connectTcp({ host, port }, onUpstreamConnect);
    upstream[TUNNEL] = this;
    upstream.on('error', onError).on('close', onUpstreamClose).on('timeout', onTimeout);
    upstream.setNoDelay(true);
    upstream.setTimeout(this.plane.config.timeouts.connect);
    this.upstream = upstream;
    return true;
  }

  /** Answer with a Meridian error instead of a tunnel, in the same shape as `sendError`. */
  refuse(error: ProxyError): void {
    this.error = error;
    const socket = this.downstream;
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const body = errorBody(error);
    let head =
      `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? ''}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\nconnection: close\r\nx-request-id: ${this.requestId}\r\n`;
    const origin = this.req.headers.origin;
    if (origin) head += `access-control-allow-origin: ${origin}\r\naccess-control-allow-credentials: true\r\nvary: Origin\r\n`;
    // Header values came off the wire as latin1; writing them back the same way keeps every byte.
    socket.write(`${head}\r\n`, 'latin1');
    socket.end(body);
    // Read and drop whatever else the client sends, so closing does not reset the connection under our answer.
    socket.resume();
  }
}

export function handleUpgrade(plane: DataPlane, req: IncomingMessage, socket: Socket, head: Buffer): void {
  const tunnel = new Tunnel(plane, req, socket, head);
  // Only WebSockets are tunnelled: splicing arbitrary protocols (h2c, …) would bypass every HTTP rule we enforce.
  if (req.method !== 'GET' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
    tunnel.refuse(new ProxyError(KINDS.badRequest, undefined, 'Only WebSocket upgrades are proxied.'));
    return;
  }
  identifyClient(tunnel, plane);
  tunnel.location = plane.locator.locate(tunnel.clientIp);
  tunnel.project = projectOf(req, plane);
  tunnel.decision = plane.router.route(tunnel);
  const headers = upstreamRequestHeaders(req.headers, tunnel, true);
  let text = `GET ${req.url ?? '/'} HTTP/1.1\r\n`;
  for (let i = 0; i < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
  tunnel.requestHead = `${text}\r\n`;
  if (tunnel.connectNext()) return;
  const error = new ProxyError(KINDS.noCandidate);
  tunnel.refuse(fenceExhausted(tunnel.decision.fence, error) ?? error);
}


/** The upstream accepted: replay the upgrade request, then splice. Its 101 (or refusal) flows back untouched. */
function onUpstreamConnect(this: TunnelSocket): void {
  const tunnel = this[TUNNEL]!;
  const downstream = tunnel.downstream;
  tunnel.connected = true;
  const idle = tunnel.plane.config.timeouts.websocketIdle;
  this.setTimeout(idle);
  downstream.setTimeout(idle);
  this.write(tunnel.requestHead, 'latin1');
  if (tunnel.head.length > 0) this.write(tunnel.head);
  tunnel.head = EMPTY;
  tunnel.requestHead = '';
  // pipe() ends the other side on 'end' and applies backpressure; stream.pipeline would allocate per tunnel.
  downstream.pipe(this);
  this.pipe(downstream);
}

/** Errors are only recorded here; the 'close' that always follows decides what happens next. */
function onError(this: TunnelSocket, err: Error): void {
  const tunnel = this[TUNNEL]!;
  if (this === tunnel.downstream) tunnel.error ??= new ProxyError(KINDS.downstreamAborted, err);
  else if (this === tunnel.upstream) tunnel.error = translateUpstreamError(err);
}

/** Before the upstream connects this is its connect timeout; otherwise one side sat idle too long. */
function onTimeout(this: TunnelSocket): void {
  const tunnel = this[TUNNEL]!;
  if (this === tunnel.upstream && !tunnel.connected) {
    this.destroy(new ProxyError(KINDS.connectTimeout));
    return;
  }
  tunnel.upstream?.destroy();
  tunnel.downstream.destroy();
}

/** A client that hangs up while we are still connecting gets nothing more; closing aborts the connect. */
function onDownstreamEnd(this: TunnelSocket): void {
  if (!this[TUNNEL]!.connected) this.end();
}

function onDownstreamClose(this: TunnelSocket, hadError: boolean): void {
  const tunnel = this[TUNNEL]!;
  tunnel.plane.traffic.tunnels.delete(this);
  if (tunnelClose.hasSubscribers) tunnelClose.publish(tunnel);
  // A connect still in flight is abandoned outright.
  if (tunnel.upstream !== null) passClose(tunnel.upstream, hadError || !tunnel.connected);
}

function onUpstreamClose(this: TunnelSocket, hadError: boolean): void {
  const tunnel = this[TUNNEL]!;
  if (tunnel.connected) return passClose(tunnel.downstream, hadError);
  // The connect failed (refused, timed out, TLS) or was aborted because the client left; nothing was sent yet.
  tunnel.upstream = null;
  if (tunnel.downstream.destroyed) return;
  if (tunnel.connectNext()) return;
  const error = tunnel.error ?? new ProxyError(KINDS.connectFailed);
  tunnel.refuse(fenceExhausted(tunnel.decision?.fence ?? null, error) ?? error);
}

/** An error resets the other side; a clean close ends it gracefully, so frames already queued (the close frame) arrive. */
function passClose(socket: Socket, hadError: boolean): void {
  if (hadError) socket.destroy();
  else socket.end(() => socket.destroy());
}
