// WebSocket upgrades: checked, routed like requests and forwarded. Only the upstream's 101 turns the
// connection into a byte tunnel to that endpoint for life; any other answer is relayed as one response, then closed.
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from './node-http.ts';
import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import type { Endpoint } from '../config/types.ts';
import type { GeoLocation } from '../geo/database.ts';
import type { RouteDecision, RouteFacts } from '../routing/types.ts';
import { upstreamRequestHeaders, type ForwardingFacts } from './headers.ts';
import { errorBody, fenceExhausted, KINDS, ProxyError, translateUpstreamError } from './errors.ts';
import { tunnelClose, tunnelOpen } from './events.ts';
import { recordTunnel, type TunnelCloseReason } from './record.ts';
import { identifyClient, peerAddress, projectOf, requestIdOf, type ClientFacts } from './request-facts.ts';
import { overLimit } from './rate-limit.ts';
import { settleTarget } from './request-target.ts';
import type { DataPlane, TunnelHandle } from './plane.ts';
import { handshakeProblem, SUPPORTED_VERSION_HEADER } from './websocket-handshake.ts';
import { failAnswer, readAnswer, relayBody } from './websocket-answer.ts';
import { FrameTracker, GOING_AWAY_FRAME } from './websocket-frames.ts';
import { IdleSweep, type IdleWatched } from './websocket-idle.ts';

/** Both sockets point back at their tunnel, so the listeners below are shared functions, not per-socket closures. */
const TUNNEL = Symbol('meridian.tunnel');
type TunnelSocket = Socket & { [TUNNEL]?: Tunnel };

/** What `answer` holds until the upstream sends its first bytes. */
const EMPTY = Buffer.alloc(0);

/**
 * A request id as one flat string. randomUUID() builds its text by concatenation, a rope of some thirty heap objects
 * (about 850 bytes) that an open tunnel would otherwise keep for its whole life; the copy is under 60.
 */
function flat(text: string): string {
  return Buffer.from(text, 'latin1').toString('latin1');
}

/** The open tunnels' idle timeouts, all on one interval for this thread. */
const idleSweep = new IdleSweep<Tunnel>();

/**
 * connect: reaching a candidate. answer: the upgrade request is upstream, the client's later bytes are held.
 * open: the upstream switched protocols and bytes flow both ways. relay: a refusal's body is passed to the client.
 * done: the client has (or is getting) its answer; nothing more is forwarded.
 */
type Phase = 'connect' | 'answer' | 'open' | 'relay' | 'done';

/** One upgrade request and its upstream connection; also the route facts, the forwarding facts and the event message. */
export class Tunnel implements RouteFacts, ForwardingFacts, TunnelHandle, IdleWatched {
  readonly plane: DataPlane;
  /** The upgrade request until the tunnel opens; then let go, with its headers, for the tunnel's whole life. */
  req: IncomingMessage | null;
  readonly downstream: TunnelSocket;
  readonly peerIp: string;
  readonly requestId: string;
  readonly host: string | undefined;
  readonly pinnedRegion = undefined;
  /** performance.now() when the upgrade request arrived. */
  readonly startedAt: number;
  clientIp: string;
  /** Set by the client-ip phase when the socket peer is a trusted proxy. */
  trustedPeer = false;
  proto = 'http';
  forwardedHost: string | undefined;
  location: GeoLocation | null = null;
  project: string | undefined = undefined;
  decision: RouteDecision | null = null;
  /** The request line and headers, rendered once and replayed to each candidate. */
  requestHead = '';
  /** Bytes the client sent after its request head (early frames), held until the upstream has switched protocols. */
  head: Buffer;
  /** Also the index of the next candidate: each is tried at most once, in order. */
  attempts = 0;
  /** The endpoint being tried; once connected, the one this socket stays on for life. */
  endpoint: Endpoint | null = null;
  upstream: TunnelSocket | null = null;
  phase: Phase = 'connect';
  /** The upstream's answer head while it is still incomplete. */
  answer: Buffer = EMPTY;
  /** Body bytes of a relayed answer still to pass, or -1 for all of them until the upstream closes. */
  relayLeft = 0;
  /** Server-to-client frame headers, so that shutdown closes between two messages. */
  readonly frames = new FrameTracker();
  /** Set at shutdown. Once open, upstream bytes then pass only up to the next message boundary, then the close frame. */
  goingAway = false;
  /** Set when a side sat idle too long and Meridian cut both. */
  idledOut = false;
  /** The close frame has gone to the client (ours, or the upstream's own); nothing may follow it. */
  closeSent = false;
  goAwayTimer: NodeJS.Timeout | undefined = undefined;
  /** onDownstreamDrain is listening: added the first time writeDownstream meets backpressure. */
  drainListening = false;
  /** onUpstreamDrain is listening: added the first time a client chunk meets a full upstream buffer. */
  upstreamDrainListening = false;
  /** Open tunnels: counted by the idle sweep, reset by every chunk either way. */
  quietMs = 0;
  idleLimitMs = 0;
  error: ProxyError | null = null;

  constructor(plane: DataPlane, req: IncomingMessage, downstream: TunnelSocket, head: Buffer) {
    this.plane = plane;
    this.req = req;
    this.downstream = downstream;
    this.head = head;
    this.startedAt = performance.now();
    this.peerIp = peerAddress(downstream);
    this.clientIp = this.peerIp;
    this.requestId = flat(requestIdOf(req));
    this.host = req.headers.host;
    this.forwardedHost = this.host;
    // TLS ended here (wss://): the upstream hears https, as for any request over the HTTPS listener.
    if ((downstream as { encrypted?: boolean }).encrypted === true) this.proto = 'https';
    downstream[TUNNEL] = this;
    // Node's HTTP server dropped its own listeners at the upgrade: without ours an 'error' would crash the process.
    downstream.on('error', onError).on('end', onDownstreamEnd).on('close', onDownstreamClose).on('timeout', onTimeout);
    downstream.setTimeout(plane.config.timeouts.idle);
    // Nothing more from the client is read until the upstream has agreed to switch protocols (bounded by the
    // socket's high-water mark, after which TCP pushes back).
    downstream.pause();
    plane.traffic.tunnelOpened(this);
    if (tunnelOpen.hasSubscribers) tunnelOpen.publish(recordTunnel(this, null));
  }

  get appendForwardedFor(): boolean {
    return this.plane.config.headers.forwardedFor === 'append';
  }

  get clientAddressHeaders(): ReadonlySet<string> {
    return this.plane.config.geo.clientAddressHeaders;
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
    upstream.on('error', onError).on('close', onUpstreamClose).on('timeout', onTimeout).on('data', onUpstreamData).on('end', onUpstreamEnd);
    upstream.setNoDelay(true);
    upstream.setTimeout(this.plane.config.timeouts.connect);
    this.upstream = upstream;
    return true;
  }

  /** Answer with a Meridian error instead of a tunnel, in the same shape as `sendError`. */
  refuse(error: ProxyError, extraHead = ''): void {
    this.error = error;
    this.phase = 'done';
    const socket = this.downstream;
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const body = errorBody(error);
    let head =
      `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? ''}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\nconnection: close\r\nx-request-id: ${this.requestId}\r\n${extraHead}`;
    const origin = this.req?.headers.origin;
    if (origin) head += `access-control-allow-origin: ${origin}\r\naccess-control-allow-credentials: true\r\nvary: Origin\r\n`;
    // Header values came off the wire as latin1; writing them back the same way keeps every byte.
    socket.write(`${head}\r\n`, 'latin1');
    socket.end(body);
    // Read and drop whatever else the client sends, so closing does not reset the connection under our answer.
    socket.setTimeout(this.plane.config.timeouts.idle);
    socket.resume();
  }

  goAway(graceMs: number): void {
    if (this.goingAway || this.downstream.destroyed) return;
    this.goingAway = true;
    if (this.phase === 'connect' || this.phase === 'answer') return this.destroy();
    // A relayed refusal finishes on its own; the end of the drain window cuts it if it has not.
    if (this.phase !== 'open') return;
    this.goAwayTimer = setTimeout(cut, graceMs, this);
    // From now on onUpstreamData forwards only up to the next message boundary.
    if (this.frames.atMessageBoundary) sendGoingAway(this);
  }

  /** Called by the idle sweep: a tunnel quiet both ways for its whole idle timeout is cut. */
  cutIdle(): void {
    this.idledOut = true;
    this.destroy();
  }

  /** The 101 went to the client: bytes now flow both ways through the shared listeners below. */
  open(): void {
    const { upstream, downstream } = this;
    this.phase = 'open';
    this.req = null;
    // Per-socket timers give way to the thread's one sweep.
    upstream!.setTimeout(0);
    downstream.setTimeout(0);
    this.idleLimitMs = this.plane.config.timeouts.websocketIdle;
    if (this.idleLimitMs > 0) idleSweep.add(this);
    downstream.on('data', onDownstreamData);
    downstream.resume();
  }

  /** Where pipe() is not in charge (a relayed answer, the last message at shutdown): a slow client pauses the upstream. */
  writeDownstream(chunk: Buffer): void {
    if (this.downstream.write(chunk)) return;
    this.upstream!.pause();
    if (this.drainListening) return;
    this.drainListening = true;
    this.downstream.on('drain', onDownstreamDrain);
  }

  destroy(): void {
    this.upstream?.destroy();
    this.downstream.destroy();
  }
}

export function handleUpgrade(plane: DataPlane, req: IncomingMessage, socket: Socket, head: Buffer): void {
  // As for requests, before anything reads Host: an absolute-form target supplies it.
  const target = settleTarget(req);
  const tunnel = new Tunnel(plane, req, socket, head);
  const problem = target === 'proxy' ? handshakeProblem(req) : 'The request target of a WebSocket handshake must be a path, or an absolute http(s) URL.';
  if (problem !== null) {
    tunnel.refuse(new ProxyError(KINDS.badRequest, undefined, problem), SUPPORTED_VERSION_HEADER);
    return;
  }
  // The request is still held here: the tunnel lets it go only once open.
  identifyClient(tunnel as ClientFacts, plane);
  // Rate limits as for requests, before any upstream is contacted.
  if (plane.config.rateLimits.rules.length !== 0) {
    const refused = overLimit(plane, tunnel.clientIp, tunnel.host, req.url ?? '/', req.method ?? 'GET', tunnel.startedAt);
    if (refused !== null) {
      tunnel.refuse(refused, `retry-after: ${refused.retryAfter}\r\n`);
      return;
    }
  }
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

/** The upstream accepted: send the upgrade request alone, and wait for its answer. */
function onUpstreamConnect(this: TunnelSocket): void {
  const tunnel = this[TUNNEL]!;
  tunnel.phase = 'answer';
  // Waiting on the upstream is bounded by its response timeout; the client, held meanwhile, is not idle.
  this.setTimeout(tunnel.plane.config.timeouts.response);
  tunnel.downstream.setTimeout(0);
  this.write(tunnel.requestHead, 'latin1');
}

/**
 * One listener for the upstream's whole life. Once open it forwards, following frame headers on the way; shared
 * functions like this one, not pipe(), which would add nine closures and two once-wrappers per direction and tunnel.
 */
function onUpstreamData(this: TunnelSocket, chunk: Buffer): void {
  const tunnel = this[TUNNEL]!;
  switch (tunnel.phase) {
    case 'open':
      tunnel.quietMs = 0;
      // An ended or closed client takes nothing more; its close is on its way to the upstream.
      if (!tunnel.downstream.writable) return;
      if (tunnel.goingAway) return forwardToBoundary(tunnel, chunk);
      tunnel.frames.advance(chunk);
      return tunnel.writeDownstream(chunk);
    case 'answer':
      // An answer has begun: no other candidate will need the request head again.
      tunnel.requestHead = '';
      return readAnswer(tunnel, chunk);
    case 'relay':
      return relayBody(tunnel, chunk);
    default:
      // done: dropped until the upstream closes.
      return;
  }
}

/** At shutdown: the rest of the message in flight reaches the client, then the close frame, then nothing. */
function forwardToBoundary(tunnel: Tunnel, chunk: Buffer): void {
  if (tunnel.closeSent) return;
  const at = tunnel.frames.boundaryIn(chunk);
  const part = at === -1 || at === chunk.length ? chunk : chunk.subarray(0, at);
  if (part.length > 0) tunnel.writeDownstream(part);
  if (at !== -1) sendGoingAway(tunnel);
}

/**
 * The upstream side follows on its own: the client answers with its close frame, which the still-open client-to-server
 * pipe carries up at the client's own frame boundary, and the client's FIN then ends the upstream socket.
 */
function sendGoingAway(tunnel: Tunnel): void {
  tunnel.closeSent = true;
  // After a close frame from the upstream a second one would break the closing handshake.
  if (!tunnel.frames.closeSeen) tunnel.downstream.write(GOING_AWAY_FRAME);
}

function onDownstreamDrain(this: TunnelSocket): void {
  this[TUNNEL]!.upstream?.resume();
}

/** Client bytes of an open tunnel, also while it goes away (the client's close frame must reach the upstream). */
function onDownstreamData(this: TunnelSocket, chunk: Buffer): void {
  const tunnel = this[TUNNEL]!;
  const upstream = tunnel.upstream!;
  tunnel.quietMs = 0;
  if (!upstream.writable || upstream.write(chunk)) return;
  // A slow upstream pauses the client until its buffer drains.
  this.pause();
  if (tunnel.upstreamDrainListening) return;
  tunnel.upstreamDrainListening = true;
  upstream.on('drain', onUpstreamDrain);
}

function onUpstreamDrain(this: TunnelSocket): void {
  this[TUNNEL]!.downstream.resume();
}

/** The upstream's FIN ends the client's side too, once open; while going away the close frame handles that. */
function onUpstreamEnd(this: TunnelSocket): void {
  const tunnel = this[TUNNEL]!;
  if (tunnel.phase === 'open' && !tunnel.goingAway && tunnel.downstream.writable) tunnel.downstream.end();
}

function cut(tunnel: Tunnel): void {
  tunnel.destroy();
}

/** Errors are only recorded here; the 'close' that always follows decides what happens next. */
function onError(this: TunnelSocket, err: Error): void {
  const tunnel = this[TUNNEL]!;
  if (this === tunnel.downstream) tunnel.error ??= new ProxyError(KINDS.downstreamAborted, err);
  else if (this === tunnel.upstream) tunnel.error = translateUpstreamError(err);
}

/** Before the upstream connects this is its connect timeout, then its response timeout; otherwise one side sat idle. */
function onTimeout(this: TunnelSocket): void {
  const tunnel = this[TUNNEL]!;
  if (this === tunnel.upstream && tunnel.phase === 'connect') {
    this.destroy(new ProxyError(KINDS.connectTimeout));
    return;
  }
  if (this === tunnel.upstream && tunnel.phase === 'answer') return failAnswer(tunnel, new ProxyError(KINDS.responseTimeout));
  tunnel.idledOut = true;
  tunnel.destroy();
}

/** A client that hangs up before the upstream answered gets nothing more; closing aborts the upstream. Once open, its FIN goes up. */
function onDownstreamEnd(this: TunnelSocket): void {
  const tunnel = this[TUNNEL]!;
  const phase = tunnel.phase;
  if (phase === 'connect' || phase === 'answer') this.end();
  else if (phase === 'open' && tunnel.upstream!.writable) tunnel.upstream!.end();
}

function onDownstreamClose(this: TunnelSocket, hadError: boolean): void {
  const tunnel = this[TUNNEL]!;
  tunnel.plane.traffic.tunnelClosed(tunnel);
  idleSweep.delete(tunnel);
  clearTimeout(tunnel.goAwayTimer);
  if (tunnelClose.hasSubscribers) tunnelClose.publish(recordTunnel(tunnel, closeReasonOf(tunnel)));
  const upstream = tunnel.upstream;
  if (upstream === null) return;
  // Anything short of an open tunnel is abandoned outright.
  passClose(upstream, hadError || tunnel.phase !== 'open');
  // The sweep has let the tunnel go: an upstream that never takes its FIN gets a timer of its own, as before opening.
  if (!upstream.destroyed && tunnel.idleLimitMs > 0) upstream.setTimeout(tunnel.idleLimitMs);
}

/** Read as the client's connection closes. */
function closeReasonOf(tunnel: Tunnel): TunnelCloseReason {
  const phase = tunnel.phase;
  if (phase === 'relay' || phase === 'done') return 'refused';
  if (tunnel.goingAway) return 'shutdown';
  if (tunnel.idledOut) return 'idle';
  if (phase !== 'open') return 'abandoned';
  return tunnel.error === null ? 'closed' : 'error';
}

function onUpstreamClose(this: TunnelSocket, hadError: boolean): void {
  const tunnel = this[TUNNEL]!;
  switch (tunnel.phase) {
    case 'open':
      return passClose(tunnel.downstream, hadError);
    case 'connect':
      return connectFailed(tunnel);
    case 'answer':
      // Closed with not one byte of answer: only the upgrade request, a GET, went up (the client's own bytes are still
      // held), so the next candidate may take it, as a reset GET would be retried. Once answer bytes came, not.
      if (tunnel.answer.length === 0) return connectFailed(tunnel);
      return tunnel.refuse(tunnel.error ?? new ProxyError(KINDS.reset));
    case 'relay':
      tunnel.phase = 'done';
      // Without a length the answer ends with the upstream's close; with one, a short body must not look complete.
      if (tunnel.relayLeft === -1 && !hadError) tunnel.downstream.end();
      else tunnel.downstream.destroy();
      return;
    default:
      // done: the client has its answer already.
      return;
  }
}

/** The connect failed (refused, timed out, TLS), or the upstream hung up before answering, or the client left. */
function connectFailed(tunnel: Tunnel): void {
  tunnel.upstream = null;
  tunnel.phase = 'connect';
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
