// The accept phase of a listener that takes the PROXY protocol: only the configured load balancers may connect, and
// each connection must open with a header naming the client, before TLS or HTTP see a byte.
import type { Server as NetServer, Socket } from 'node:net';
import type { CidrSet } from '../geo/cidr.ts';
import { peerAddress } from '../proxy/request-facts.ts';
import { PROXIED_PEER, readProxyHeader, type ProxyHeaderOutcome } from './proxy-protocol.ts';

type ConnectionListener = (socket: Socket) => void;
/** A socket the PROXY header named a client for: `null` when the load balancer spoke for itself (LOCAL, a health check). */
type ProxiedSocket = Socket & { [PROXIED_PEER]?: string | null };

/**
 * Puts the PROXY header phase in front of whatever `server` does with a new connection (node's TLS or HTTP
 * connection handling, and the proxy's connection count): the listeners registered so far run once the header is
 * read, with the bytes that came after it handed back. `refused` is told of each connection closed here.
 */
export function requireProxyHeader(server: NetServer, trusted: CidrSet, timeoutMs: number, tlsFollows: boolean, refused: () => void, handedOver: (socket: Socket) => void): void {
  const listeners = server.listeners('connection') as ConnectionListener[];
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    // The socket's own address: nobody has spoken for it yet.
    if (!trusted.has(peerAddress(socket))) {
      refused();
      socket.destroy();
      return;
    }
    readProxyHeader(socket, timeoutMs, (outcome: ProxyHeaderOutcome) => {
      if (!outcome.ok) {
        refused();
        socket.destroy();
        return;
      }
      if (outcome.peer !== null) (socket as ProxiedSocket)[PROXIED_PEER] = outcome.peer;
      handedOver(socket);
      handOver(server, socket, listeners, outcome.rest, tlsFollows);
    });
  });
}

/**
 * node's TLS layer reads what is buffered in the socket when it wraps it, so the bytes after the header are put back
 * first; node's HTTP parser reads the socket's handle directly, so they are fed to it as data once it is attached.
 */
function handOver(server: NetServer, socket: Socket, listeners: readonly ConnectionListener[], rest: Buffer, tlsFollows: boolean): void {
  if (tlsFollows && rest.length > 0) socket.unshift(rest);
  for (const listener of listeners) listener.call(server, socket);
  if (tlsFollows) return;
  if (rest.length > 0) socket.emit('data', rest);
  socket.resume();
}

/**
 * The TCP socket a server-side TLS socket wraps. node keeps it as `_parent`, its only link back; the TLS and PROXY
 * protocol tests fail if a node release drops it.
 */
export function tcpSocketOf(tlsSocket: Socket): Socket | null {
  return (tlsSocket as Socket & { _parent?: Socket | null })._parent ?? null;
}

/** Through TLS: the client a PROXY header named, read from the TCP socket the TLS socket wraps. */
export function adoptProxiedPeer(tlsSocket: Socket): void {
  const peer = (tcpSocketOf(tlsSocket) as ProxiedSocket | null)?.[PROXIED_PEER];
  if (peer !== undefined) (tlsSocket as ProxiedSocket)[PROXIED_PEER] = peer;
}
