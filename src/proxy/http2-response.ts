// The downstream response of a request that came over HTTP/2: node's compatibility response, given the few members
// of `ServerResponse` that the exchange and the error renderer use, so one request path serves both protocols.
import { Http2ServerResponse, type ServerHttp2Stream } from 'node:http2';
import type { OutgoingHttpHeaders } from 'node:http';
import type { Exchange } from './exchange.ts';

export class MeridianH2Response extends Http2ServerResponse {
  exchange: Exchange | null = null;
  /**
   * Read and written like HTTP/1.1's, and meaningless here: a stream ends on its own, the connection goes on. An
   * answer that starts while the request body still arrives simply ends the stream (node resets what is left).
   */
  shouldKeepAlive = true;

  /** HTTP/2 has no reason phrase: an upstream's is dropped rather than passed on to node, which warns about it. */
  override writeHead(statusCode: number, statusMessage?: string | OutgoingHttpHeaders | readonly string[], headers?: OutgoingHttpHeaders | readonly string[]): this {
    const list = typeof statusMessage === 'string' || statusMessage === undefined ? headers : statusMessage;
    return list === undefined ? super.writeHead(statusCode) : super.writeHead(statusCode, list as OutgoingHttpHeaders);
  }
}

// node's types list `destroyed` on the compatibility response, but it has none: it is the stream's.
Object.defineProperty(MeridianH2Response.prototype, 'destroyed', {
  get(this: MeridianH2Response): boolean {
    return this.stream.destroyed;
  },
});

/** The exchange an HTTP/2 stream serves, so its idle timer can tell a stall from a wait without a closure per stream. */
export const STREAM_EXCHANGE = Symbol('meridian.streamExchange');
export type ExchangeStream = ServerHttp2Stream & { [STREAM_EXCHANGE]?: Exchange | null };
