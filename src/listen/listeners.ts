// A data-plane thread's listeners: one node server per configured listener (plain HTTP, HTTPS with HTTP/2, redirect
// to HTTPS), each bound with reusePort, all serving the same request path with the same snapshot. They follow the
// snapshot: downstream timeouts and certificates apply to new connections on reload; the sockets are restart-only.
import type { Server } from 'node:http';
import { createServer as createHttpServer } from '../proxy/node-http.ts';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Http2Server, ServerHttp2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo, Socket } from 'node:net';
import type { ListenerSettings, Timeouts } from '../config/types.ts';
import type { DataPlane } from '../proxy/plane.ts';
import { serverOptions, type ProxyServer } from '../proxy/server.ts';
import { endTunnels } from '../proxy/websocket-drain.ts';
import { LISTENER_STAT, listenerSlot } from '../observe/listener-stats.ts';
import { TLS_SERVER_OPTIONS, TlsContexts } from './tls.ts';
import { createHttp2Server } from './http2.ts';
import { redirectHandler } from './redirect.ts';
import { adoptProxiedPeer, requireProxyHeader, tcpSocketOf } from './accept.ts';

/** Where a listener accepts, as `start` reports it. */
export interface ListenerAddress {
  readonly name: string;
  readonly protocol: ListenerSettings['protocol'];
  readonly address: string;
  readonly port: number;
  readonly family: string;
}

interface Bound {
  readonly settings: ListenerSettings;
  readonly server: Server | HttpsServer;
  readonly http2: Http2Server | null;
}

export class Listeners {
  readonly #proxy: ProxyServer;
  readonly #bound: Bound[];
  /** This thread's row of the per-listener stats. */
  readonly #stats: Float64Array;
  readonly #sessions = new Set<ServerHttp2Session>();
  /**
   * TCP connections still owing their PROXY header or TLS handshake: no HTTP server knows them yet, so shutdown
   * cuts them itself rather than wait out `timeouts.handshake` (they carry no request).
   */
  readonly #accepting = new Set<Socket>();
  #tls: TlsContexts | null = null;
  #timeouts: Timeouts;
  /** `timeouts.handshake` as the process started: restart-only, like the listeners. */
  readonly #handshakeMs: number;

  /**
   * `listeners` are the ones the process started with (restart-only: a reload that changes them waits for a restart,
   * and a worker started after such a reload must still open these).
   */
  constructor(proxy: ProxyServer, listeners: readonly ListenerSettings[], handshakeMs: number, stats: Float64Array) {
    this.#proxy = proxy;
    this.#stats = stats;
    this.#timeouts = proxy.plane.config.timeouts;
    this.#handshakeMs = handshakeMs;
    if (listeners.some((l) => l.protocol === 'https')) this.#tls = new TlsContexts(proxy.plane.tls);
    this.#bound = listeners.map((settings, index) => this.#create(settings, index));
  }

  /** New requests and connections are served with `plane`: its timeouts, and its certificates when they changed. */
  use(plane: DataPlane): void {
    this.#proxy.use(plane);
    const { timeouts } = plane.config;
    if (timeouts !== this.#timeouts) {
      this.#timeouts = timeouts;
      for (const { server } of this.#bound) applyTimeouts(server, timeouts);
    }
    if (this.#tls !== null && plane.tls.generation !== this.#tls.generation) {
      // Built whole first: a certificate node refuses leaves every listener on the contexts it has.
      const tls = new TlsContexts(plane.tls);
      this.#tls = tls;
      for (const { server, settings } of this.#bound) if (settings.protocol === 'https') (server as HttpsServer).setSecureContext(tls.defaultOptions);
    }
  }

  get listening(): boolean {
    return this.#bound.every(({ server }) => server.listening);
  }

  /**
   * Binds every listener with reusePort; `ports` (from the first worker) replace the configured ones, so listeners
   * configured with port 0 are shared by every worker. Resolves with the bound addresses, in config order.
   */
  async listen(reusePort: boolean, ports: readonly number[] | null): Promise<ListenerAddress[]> {
    const addresses: ListenerAddress[] = [];
    for (const [i, { server, settings }] of this.#bound.entries()) {
      const port = ports?.[i] ?? settings.port;
      const address = await new Promise<AddressInfo>((resolve, reject) => {
        const failed = (err: Error): void => reject(Object.assign(err, { listener: settings.name }));
        server.once('error', failed);
        server.listen({ port, host: settings.host, reusePort }, () => {
          server.off('error', failed);
          resolve(server.address() as AddressInfo);
        });
      });
      addresses.push({ name: settings.name, protocol: settings.protocol, address: address.address, port: address.port, family: address.family });
    }
    return addresses;
  }

  /**
   * Stop accepting, let in-flight exchanges finish up to `timeoutMs`, then cut whatever is left. WebSocket tunnels
   * keep serving meanwhile and get their close frames one by one across that window (websocket-drain.ts); HTTP/2
   * connections get GOAWAY at once, so clients open new streams elsewhere while the ones they have finish.
   */
  async close(timeoutMs: number): Promise<void> {
    const traffic = this.#proxy.plane.traffic;
    traffic.draining = true;
    const closed = Promise.all(this.#bound.map(({ server }) => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()))));
    for (const socket of this.#accepting) socket.destroy();
    for (const { server } of this.#bound) server.closeIdleConnections();
    for (const session of this.#sessions) session.close();
    // Over the same window, not after it: shutdown stays within drainTimeout however long the exchanges take.
    const tunnelsEnded = endTunnels(traffic, timeoutMs);
    await traffic.whenIdle(timeoutMs);
    // Upgraded sockets are no longer the HTTP server's connections: this cuts exchanges and leaves tunnels alone.
    for (const { server } of this.#bound) server.closeAllConnections();
    for (const session of this.#sessions) session.destroy();
    await tunnelsEnded;
    await closed;
  }

  #create(settings: ListenerSettings, index: number): Bound {
    const proxy = this.#proxy;
    const options = serverOptions(settings, this.#timeouts);
    let server: Server | HttpsServer;
    let http2: Http2Server | null = null;
    if (settings.protocol === 'https') {
      const tls = this.#tls!;
      server = createHttpsServer({
        ...options,
        ...tls.defaultOptions,
        ...TLS_SERVER_OPTIONS,
        ALPNProtocols: settings.http2 ? ['h2', 'http/1.1'] : ['http/1.1'],
        // Read at each handshake, so a reload's certificates serve new connections at once.
        SNICallback: (servername, done) => done(null, this.#tls!.contextFor(servername)),
        handshakeTimeout: this.#handshakeMs,
      });
      proxy.serve(server);
      if (settings.http2) http2 = createHttp2Server(settings, () => this.#timeouts.idle, proxy.onRequest, this.#sessions);
      this.#countHandshakes(server as HttpsServer, index, http2, settings.proxyProtocol !== null);
    } else {
      server = createHttpServer(options);
      if (settings.protocol === 'redirect') {
        // Only the ACME challenges reach the request path; everything else is answered here.
        proxy.serve(server, redirectHandler(settings, proxy.onRequest));
      } else {
        proxy.serve(server);
      }
    }
    applyTimeouts(server, this.#timeouts);
    const https = settings.protocol === 'https';
    if (settings.proxyProtocol !== null) {
      const stats = this.#stats;
      const slot = listenerSlot(index, LISTENER_STAT.proxyRefused);
      // Over TLS the connection is still accepting until its handshake is done (#countHandshakes).
      const handedOver = https ? () => {} : this.#accepted;
      requireProxyHeader(server, settings.proxyProtocol, this.#handshakeMs, https, () => stats[slot]++, handedOver);
    }
    // Registered last, so it runs as a connection arrives, before any PROXY header is read.
    if (https || settings.proxyProtocol !== null) server.on('connection', this.#accept);
    return { settings, server, http2 };
  }

  #accept = (socket: Socket): void => {
    this.#accepting.add(socket);
    socket.once('close', () => this.#accepting.delete(socket));
  };

  #accepted = (socket: Socket): void => {
    this.#accepting.delete(socket);
  };

  /** Handshakes by outcome, and the ALPN choice: `h2` connections go to the HTTP/2 server, the rest stay HTTP/1.1. */
  #countHandshakes(server: HttpsServer, index: number, http2: Http2Server | null, proxied: boolean): void {
    const stats = this.#stats;
    const fresh = listenerSlot(index, LISTENER_STAT.tlsNew);
    const resumed = listenerSlot(index, LISTENER_STAT.tlsResumed);
    const failed = listenerSlot(index, LISTENER_STAT.tlsFailed);
    const [http1] = server.listeners('secureConnection') as ((socket: TLSSocket) => void)[];
    server.removeAllListeners('secureConnection');
    server.on('secureConnection', (socket: TLSSocket) => {
      const tcp = tcpSocketOf(socket);
      if (tcp !== null) this.#accepting.delete(tcp);
      stats[socket.isSessionReused() ? resumed : fresh]++;
      if (proxied) adoptProxiedPeer(socket);
      if (http2 !== null && socket.alpnProtocol === 'h2') http2.emit('connection', socket);
      else http1.call(server, socket);
    });
    server.on('tlsClientError', (_err, socket) => {
      stats[failed]++;
      socket.destroy();
    });
  }
}

/**
 * A reload's downstream timeouts. node reads `headersTimeout` at each connections check and `keepAliveTimeout` as
 * each response ends, but `timeout` only as it accepts a connection: open connections keep their idle bound.
 * `connectionsCheckingInterval` is fixed at creation, so a lowered `requestHeaders` holds to within it (1 s at most).
 */
function applyTimeouts(server: Server, timeouts: Timeouts): void {
  server.headersTimeout = timeouts.requestHeaders;
  server.keepAliveTimeout = timeouts.keepAlive;
  server.timeout = timeouts.idle;
}
