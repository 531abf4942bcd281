// A tunnel's answer phase: the upstream's reply to the forwarded handshake, read off the raw socket. A 101 that
// proves the upstream read our key opens the tunnel; any other answer is relayed as one response, then the end.
import { KINDS, ProxyError } from './errors.ts';
import { acceptFor } from './websocket-handshake.ts';
import { headEnd, headerValue, parseAnswerHead, relayedHead, type AnswerHead } from './websocket-response-head.ts';
import type { Tunnel } from './websocket.ts';

/** Replaces `head` and `answer` once spent: Node hands `head` over as a slice of a shared read buffer it would keep alive. */
const EMPTY = Buffer.alloc(0);

/** Upstream bytes while the answer's head is incomplete; bounded by the listeners' `maxHeaderBytes`, like a request's head. */
export function readAnswer(tunnel: Tunnel, chunk: Buffer): void {
  const limit = tunnel.plane.config.maxHeaderBytes;
  let buffer = tunnel.answer.length === 0 ? chunk : Buffer.concat([tunnel.answer, chunk]);
  // The blank line may have started in the previous chunk.
  let from = Math.max(0, tunnel.answer.length - 3);
  for (;;) {
    const end = headEnd(buffer, from);
    if (end === -1 && buffer.length <= limit) {
      tunnel.answer = buffer;
      return;
    }
    const head = end === -1 || end > limit ? null : parseAnswerHead(buffer.toString('latin1', 0, end - 4));
    if (head === null) return failAnswer(tunnel, new ProxyError(KINDS.badResponse));
    const rest = buffer.subarray(end);
    if (head.status === 101) return switchProtocols(tunnel, head, buffer.subarray(0, end), rest);
    if (head.status >= 200) return startRelay(tunnel, head, rest);
    // Another informational answer (103, …) is not final: read the next head (RFC 9110 §15.2).
    buffer = rest;
    from = 0;
  }
}

/** Relayed-answer body bytes, up to its length (bytes past it are the upstream's, not the answer's) or its close. */
export function relayBody(tunnel: Tunnel, chunk: Buffer): void {
  const left = tunnel.relayLeft;
  const part = left === -1 || chunk.length <= left ? chunk : chunk.subarray(0, left);
  if (left !== -1) tunnel.relayLeft = left - part.length;
  tunnel.writeDownstream(part);
  if (tunnel.relayLeft === 0) endRelay(tunnel);
}

/** No tunnel: the client gets a 502 and the upstream connection goes. */
export function failAnswer(tunnel: Tunnel, error: ProxyError): void {
  tunnel.refuse(error);
  tunnel.upstream!.destroy();
}

/** The client gets the 101 as sent, then its held bytes go up, and both directions splice. */
function switchProtocols(tunnel: Tunnel, head: AnswerHead, headBytes: Buffer, rest: Buffer): void {
  const upstream = tunnel.upstream!;
  const downstream = tunnel.downstream;
  const key = tunnel.req!.headers['sec-websocket-key']!;
  if (headerValue(head, 'upgrade')?.toLowerCase() !== 'websocket' || headerValue(head, 'sec-websocket-accept') !== acceptFor(key)) {
    return failAnswer(tunnel, new ProxyError(KINDS.badResponse, undefined, 'The upstream endpoint switched protocols without a valid WebSocket handshake.'));
  }
  tunnel.answer = EMPTY;
  downstream.write(headBytes);
  if (rest.length > 0) {
    tunnel.frames.advance(rest);
    downstream.write(rest);
  }
  if (tunnel.head.length > 0) upstream.write(tunnel.head);
  tunnel.head = EMPTY;
  tunnel.open();
}

function startRelay(tunnel: Tunnel, head: AnswerHead, rest: Buffer): void {
  const downstream = tunnel.downstream;
  const timeouts = tunnel.plane.config.timeouts;
  tunnel.phase = 'relay';
  tunnel.answer = EMPTY;
  tunnel.head = EMPTY;
  // The held bytes and all the client sends from now on are read and dropped: none of it reaches the upstream.
  downstream.resume();
  downstream.setTimeout(timeouts.idle);
  tunnel.upstream!.setTimeout(timeouts.idle);
  downstream.write(relayedHead(head, tunnel.plane.routingHeaders[tunnel.endpoint!.index]), 'latin1');
  tunnel.relayLeft = head.bodyLength;
  if (tunnel.relayLeft === 0) endRelay(tunnel);
  else if (rest.length > 0) relayBody(tunnel, rest);
}

function endRelay(tunnel: Tunnel): void {
  tunnel.phase = 'done';
  tunnel.downstream.end();
  tunnel.upstream!.destroy();
}
