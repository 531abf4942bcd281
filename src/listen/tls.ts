// TLS for the HTTPS listeners: the protocol and cipher policy, and the secure contexts built from the certificates
// the control plane published, chosen per connection by SNI.
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { sniIndex } from './certificates.ts';

/** One certificate as the control plane publishes it: checked PEM text and the DNS names it is valid for. */
export interface PublishedCertificate {
  readonly label: string;
  readonly names: readonly string[];
  readonly cert: string;
  readonly key: string;
}

/** The TLS part of a data-plane snapshot: plain data, so it crosses to worker threads unchanged. */
export interface TlsSnapshot {
  /** Bumps when a certificate or the ticket key changes. */
  readonly generation: number;
  /** In config order; the first is the default for clients without SNI or with a name no certificate carries. */
  readonly certificates: readonly PublishedCertificate[];
  /** 48 bytes, the same in every worker, so a session ticket issued by one resumes on any other. */
  readonly ticketKeys: Uint8Array;
}

export const NO_TLS: TlsSnapshot = Object.freeze({ generation: 0, certificates: Object.freeze([]), ticketKeys: new Uint8Array(48) });

/** TLS 1.2 and 1.3 only: 1.0 and 1.1 are deprecated (RFC 8996). */
export const TLS_MIN_VERSION = 'TLSv1.2';

/**
 * The TLS 1.2 suites of Mozilla's "intermediate" server profile (forward secrecy and AEAD only), without its
 * finite-field DHE suites, which need per-server parameters and add nothing a client from this decade lacks. TLS 1.3
 * suites are OpenSSL's defaults (all three are AEAD). Clients pick among them: every one listed is sound.
 */
export const TLS_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Resumed sessions are kept this long (node's default is 300 s); the ticket key rotation bounds them as well. */
const SESSION_TIMEOUT_S = 3_600;

/** The options every HTTPS listener's server is created with, besides the default certificate. */
export const TLS_SERVER_OPTIONS = Object.freeze({ minVersion: TLS_MIN_VERSION, ciphers: TLS_CIPHERS, sessionTimeout: SESSION_TIMEOUT_S } as const);

/** The secure contexts of one TLS snapshot: built once per generation, then read by every handshake. */
export class TlsContexts {
  readonly generation: number;
  /** For `server.setSecureContext`: the default certificate, for clients that send no name. */
  readonly defaultOptions: SecureContextOptions;
  readonly #lookup: (servername: string) => SecureContext;

  constructor(snapshot: TlsSnapshot) {
    this.generation = snapshot.generation;
    const ticketKeys = Buffer.from(snapshot.ticketKeys);
    // Only the default context carries the shared ticket key: OpenSSL issues and opens tickets with the context a
    // handshake started on (the listener's, set by `setSecureContext`), even after SNI switched the certificate.
    const contexts = snapshot.certificates.map((c) => ({
      names: c.names,
      value: createSecureContext({ cert: c.cert, key: c.key, ...TLS_SERVER_OPTIONS } as SecureContextOptions),
    }));
    const first = snapshot.certificates[0];
    this.defaultOptions = first === undefined ? { ...TLS_SERVER_OPTIONS, ticketKeys } : { cert: first.cert, key: first.key, ...TLS_SERVER_OPTIONS, ticketKeys };
    this.#lookup = contexts.length === 0 ? () => undefined as unknown as SecureContext : sniIndex(contexts, contexts[0].value);
  }

  /** The context for a client's SNI name: exact, then wildcard, then the default certificate. */
  contextFor(servername: string): SecureContext {
    return this.#lookup(servername);
  }
}
