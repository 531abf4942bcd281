// HTTP/2 clients for tests of the HTTPS listeners: a node:http2 session that trusts the test CA and names the site by
// SNI while it connects to loopback, and one request on it with the whole answer collected.
import { connect } from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, OutgoingHttpHeaders, SecureClientSessionOptions } from 'node:http2';

/** The site every HTTP/2 test names, in SNI and in `:authority`; its certificate must carry it. */
export const H2_SITE = 'appwrite.test';

/** A client session and the code of the GOAWAY the server sent it, if any. */
export interface H2Client {
  readonly session: ClientHttp2Session;
  /** The error code of the last GOAWAY the server sent (`undefined` until one arrives). */
  readonly goaway: number | undefined;
}

/**
 * Connect to `127.0.0.1:port` offering h2, trusting `ca`, and wait for the server's SETTINGS, so `remoteSettings` is
 * the server's own. Errors after that are left to the streams they cut: tests provoke them, and node must not throw.
 */
export function h2Connect(port: number, ca: string, options: SecureClientSessionOptions = {}): Promise<H2Client> {
  return new Promise((resolve, reject) => {
    const session = connect(`https://127.0.0.1:${port}`, { ca, servername: H2_SITE, ...options });
    let goaway: number | undefined;
    const client: H2Client = {
      session,
      get goaway() {
        return goaway;
      },
    };
    session.on('goaway', (code: number) => (goaway = code));
    session.on('error', reject);
    session.once('close', () => reject(new Error('the session closed before the server sent its SETTINGS')));
    session.once('remoteSettings', () => resolve(client));
  });
}

export interface H2Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface H2RequestOptions {
  readonly method?: string;
  readonly path?: string;
  readonly headers?: OutgoingHttpHeaders;
  readonly body?: string | Buffer;
}

export interface H2OpenOptions extends Omit<H2RequestOptions, 'body'> {
  /** The caller writes a body and ends the stream; without it the request ends with its headers. */
  readonly withBody?: boolean;
}

/** Open a stream for a request; `:authority` is the test site unless the headers name another. */
export function h2Open(session: ClientHttp2Session, options: H2OpenOptions = {}): ClientHttp2Stream {
  const headers: OutgoingHttpHeaders = { ':method': options.method ?? 'GET', ':path': options.path ?? '/', ':authority': H2_SITE, ...options.headers };
  return session.request(headers, { endStream: options.withBody !== true });
}

/** A stream that did not end cleanly: the reset code it closed with (0 when it closed without one) and the status, if any came. */
export interface H2Failure extends Error {
  readonly rstCode: number;
  readonly status: number | undefined;
}

/** Collect a stream's answer; rejects with an `H2Failure` when the stream ends in a reset or an error. */
export function h2Collect(stream: ClientHttp2Stream): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    let head: IncomingHttpHeaders | undefined;
    let error: Error | undefined;
    const chunks: Buffer[] = [];
    stream.on('response', (headers) => (head = headers));
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    // node emits `error` before `close`, where the reset code is final.
    stream.on('error', (err: Error) => (error = err));
    stream.on('close', () => {
      const status = head === undefined ? undefined : Number(head[':status']);
      if (stream.rstCode !== 0 || error !== undefined || head === undefined) {
        const message = `stream ended with reset code ${stream.rstCode}${error ? `: ${error.message}` : ''}`;
        reject(Object.assign(new Error(message, { cause: error }), { rstCode: stream.rstCode, status }));
      } else {
        resolve({ status: status!, headers: head, body: Buffer.concat(chunks) });
      }
    });
  });
}

/** One request on `session`, the whole answer buffered. */
export function h2Request(session: ClientHttp2Session, options: H2RequestOptions = {}): Promise<H2Reply> {
  const stream = h2Open(session, { ...options, withBody: options.body !== undefined });
  const reply = h2Collect(stream);
  if (options.body !== undefined) stream.end(options.body);
  return reply;
}
