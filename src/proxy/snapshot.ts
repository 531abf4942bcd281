// The contract between the control plane and a data-plane worker: plain, structured-clone-able messages. Shared
// memory travels inside them as SharedArrayBuffers (posted, never copied); everything else is data.
import type { HealthSnapshot } from '../health/state.ts';
import type { ParsedConfig } from '../config/schema.ts';
import type { PublishedGeoDatabase } from '../geo/database.ts';
import type { TrafficTablesDescriptor } from '../observe/traffic-tables.ts';
import type { SharedTables } from './shared-tables.ts';
import type { UploadPinsMemory } from './upload-pins.ts';
import type { RateBucketsDescriptor } from './rate-buckets.ts';
import type { TlsSnapshot } from '../listen/tls.ts';
import type { ListenerAddress } from '../listen/listeners.ts';
import type { PublishedHomes } from '../routing/area-homes.ts';

/**
 * Everything a worker needs to build the data plane it serves with, whole: a worker swaps to it in one assignment,
 * and requests in flight keep the snapshot they started with. Each part carries a generation, so a worker rebuilds
 * only what changed (a health change, the most frequent cause, rebuilds the router alone).
 */
export interface PlaneSnapshot {
  readonly config: {
    readonly version: number;
    /** `MeridianConfig.input`: the worker builds its own snapshot from it, since compiled configs hold class instances. */
    readonly input: ParsedConfig;
  };
  readonly health: HealthSnapshot;
  /** The endpoint list's shared counters; a new list (or new health settings) brings new tables. */
  readonly tables: { readonly generation: number; readonly shared: SharedTables };
  readonly geo: { readonly generation: number; readonly databases: readonly PublishedGeoDatabase[]; readonly cacheSize: number };
  readonly pins: { readonly generation: number; readonly memory: UploadPinsMemory };
  /** The rate limits' bucket table; a reload that changes the client groups, their bound or the rules brings a new one. */
  readonly rateLimits: { readonly generation: number; readonly memory: RateBucketsDescriptor };
  /** Certificates (PEM text) and the session-ticket key; a worker rebuilds its TLS contexts when the generation moves. */
  readonly tls: TlsSnapshot;
  /** Latency order's measurements and the client areas it has moved, for this config's topology. */
  readonly homes: PublishedHomes;
  /** The metric tables covering this config's topology; attached before the snapshot serves. */
  readonly trafficTables: TrafficTablesDescriptor;
}

/** Given once, when a worker starts: what stays for the worker's whole life. */
export interface WorkerInit {
  /** This worker's slot: its row in the thread stats, and its name in logs and `/status`. */
  readonly slot: number;
  readonly stats: SharedArrayBuffer;
  /** Per-listener stats (src/observe/listener-stats.ts): TLS handshakes and PROXY protocol refusals. */
  readonly listenerStats: SharedArrayBuffer;
  /** Edge stats (src/observe/edge-stats.ts): rate-limit refusals and redirects. */
  readonly edgeStats: SharedArrayBuffer;
  /** Process-wide exchanges in flight and retrying (the retry budget). */
  readonly traffic: SharedArrayBuffer;
  readonly snapshot: PlaneSnapshot;
  /**
   * The config the process started with: its listeners and handshake timeout are restart-only, so a worker started
   * after a reload that changed them (a replacement) still opens the ones its siblings serve on.
   */
  readonly started: ParsedConfig;
  /** The port of each listener, in config order, that every worker binds: the first worker's, once it has them (a config's port may be 0). */
  readonly ports: readonly number[] | null;
  /** Only tests set this: the worker then obeys `crash` and `hang` messages. */
  readonly testHooks: boolean;
}

/** Control plane → worker. */
export type ToWorker =
  | { readonly kind: 'snapshot'; readonly snapshot: PlaneSnapshot }
  | { readonly kind: 'drain' }
  | { readonly kind: 'close'; readonly timeoutMs: number }
  | { readonly kind: 'ping'; readonly seq: number }
  | { readonly kind: 'crash' }
  | { readonly kind: 'hang'; readonly ms: number };

/** Worker → control plane: rare, never per request. */
export type FromWorker =
  | { readonly kind: 'listening'; readonly addresses: readonly ListenerAddress[] }
  /** The listener could not open: node's error, with the fields the CLI's one-line message reads. */
  | { readonly kind: 'failed'; readonly message: string; readonly code: string | undefined; readonly address: string; readonly port: number; readonly listener: string }
  /** A run of passive failures on `index` of the endpoint list of `tables` reached the ejection threshold. */
  | { readonly kind: 'threshold'; readonly tables: number; readonly index: number; readonly now: number }
  | { readonly kind: 'pong'; readonly seq: number }
  | { readonly kind: 'closed' };
