// HTTP/2 for the HTTPS listeners: sessions for the connections that chose `h2` through ALPN, with the limits that
// keep one client from exhausting the process (stream count, header list size, rapid reset, idle sessions).
import { constants, createServer, type Http2Server, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { IncomingMessage } from 'node:http';
import type { ListenerSettings } from '../config/types.ts';
import { MeridianH2Response } from '../proxy/http2-response.ts';
import type { MeridianResponse } from '../proxy/exchange.ts';

/** Streams a client may have open at once per connection (nginx allows 128, Envoy's edge guidance 100). */
export const HTTP2_MAX_CONCURRENT_STREAMS = 100;
/**
 * Streams a client may cancel per connection in one second before the connection is closed with ENHANCE_YOUR_CALM.
 * Cancelling is normal (a browser leaving a page cancels its requests), but CVE-2023-44487 ("rapid reset") opens and
 * cancels streams without pause so that every cancelled stream still costs the server, and an upstream, a request.
 */
export const HTTP2_MAX_RESETS_PER_SECOND = 200;
/** Per-stream and per-connection receive windows: room for an upload to stream at speed without hoarding memory. */
const STREAM_WINDOW_BYTES = 256 * 1024;
const SESSION_WINDOW_BYTES = 2 * 1024 * 1024;

const RESETS = Symbol('meridian.resets');
const OPEN_STREAMS = Symbol('meridian.openStreams');
type CountedSession = ServerHttp2Session & { [RESETS]: { count: number; since: number }; [OPEN_STREAMS]: number };

/**
 * The HTTP/2 server of one HTTPS listener. It never listens: the listener hands it each TLS connection that chose
 * `h2`. `onRequest` is the same request path as HTTP/1.1's; `sessions` lets shutdown close them.
 */
export function createHttp2Server(listener: ListenerSettings, idleMs: () => number, onRequest: (req: IncomingMessage, res: MeridianResponse) => void, sessions: Set<ServerHttp2Session>): Http2Server {
  const server = createServer({
    Http2ServerResponse: MeridianH2Response as unknown as typeof import('node:http2').Http2ServerResponse,
    // Extended CONNECT (RFC 8441) stays off: WebSocket clients then open an HTTP/1.1 connection for the upgrade.
    settings: {
      maxConcurrentStreams: HTTP2_MAX_CONCURRENT_STREAMS,
      maxHeaderListSize: listener.maxHeaderBytes,
      initialWindowSize: STREAM_WINDOW_BYTES,
      enableConnectProtocol: false,
    },
    // A header list over the advertised size is not buffered: node resets that stream (ENHANCE_YOUR_CALM).
    maxHeaderListPairs: 256,
  });
  server.on('request', onRequest as unknown as (req: import('node:http2').Http2ServerRequest, res: import('node:http2').Http2ServerResponse) => void);
  server.on('session', (session: ServerHttp2Session) => {
    const counted = session as CountedSession;
    counted[RESETS] = { count: 0, since: 0 };
    counted[OPEN_STREAMS] = 0;
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    // An idle connection (no stream for `timeouts.idle`) is closed; one with streams waits on their own idle timers.
    session.setTimeout(idleMs(), () => {
      if (counted[OPEN_STREAMS] === 0) session.close();
    });
    session.on('connect', () => session.setLocalWindowSize(SESSION_WINDOW_BYTES));
    session.on('error', () => session.destroy());
  });
  server.on('stream', (stream: ServerHttp2Stream) => {
    const session = stream.session as CountedSession;
    session[OPEN_STREAMS]++;
    stream.once('close', () => onStreamClose(session, stream));
  });
  // Without a listener an error on a stream would be thrown; the exchange has already answered or cut it.
  server.on('streamError', () => {});
  return server;
}

function onStreamClose(session: CountedSession, stream: ServerHttp2Stream): void {
  session[OPEN_STREAMS]--;
  // Any stream the client reset before its answer ended, whatever code it gave (CANCEL, NO_ERROR, INTERNAL_ERROR…).
  if (!stream.aborted || session.destroyed) return;
  const resets = session[RESETS];
  const now = performance.now();
  if (now - resets.since > 1_000) {
    resets.since = now;
    resets.count = 0;
  }
  if (++resets.count > HTTP2_MAX_RESETS_PER_SECOND) {
    session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
    session.destroy();
  }
}
