// The compiled, frozen configuration snapshot that the data plane reads.
import type { RequestMatch } from '../routing/request-match.ts';
import type { ParsedConfig } from './schema.ts';
import type { CidrSet } from '../geo/cidr.ts';

export interface Endpoint {
  /** Position in `Topology.endpoints`; pools and health state are arrays indexed by it. */
  readonly index: number;
  /** `region/zone/origin`, unique and stable across reloads; used as a metric label. */
  readonly key: string;
  readonly origin: string;
  readonly region: string;
  readonly zone: string;
  readonly tls: boolean;
  readonly hostname: string;
  readonly port: number;
}

export interface Zone {
  readonly name: string;
  readonly region: string;
  readonly endpoints: readonly Endpoint[];
}

export interface Region {
  readonly name: string;
  readonly lat: number;
  readonly lon: number;
  readonly publicHost: string | undefined;
  readonly zones: readonly Zone[];
}

export interface Topology {
  readonly self: { readonly region: string; readonly zone: string };
  readonly regions: readonly Region[];
  readonly endpoints: readonly Endpoint[];
}

export interface Timeouts {
  readonly requestHeaders: number;
  readonly connect: number;
  readonly response: number;
  readonly idle: number;
  readonly websocketIdle: number;
  readonly keepAlive: number;
  readonly handshake: number;
}

/** One downstream listener; every data-plane thread opens each (reusePort). */
export interface ListenerSettings {
  readonly name: string;
  readonly protocol: 'http' | 'https' | 'redirect';
  readonly host: string;
  readonly port: number;
  readonly maxHeaderBytes: number;
  /** Who may open a connection with a PROXY protocol header; null: the listener takes no PROXY header. */
  readonly proxyProtocol: CidrSet | null;
  readonly http2: boolean;
  /** For `redirect` listeners: the HTTPS port in `Location` (null: 443, left out) and what ACME challenges get. */
  readonly redirect: { readonly httpsPort: number | null; readonly acmeChallenge: 'proxy' | 'redirect' };
}

export interface TlsSettings {
  readonly certificates: readonly { readonly cert: string; readonly key: string }[];
  readonly ticketKeyRotation: number;
}

export interface GeoSettings {
  /** null means the bundled DB-IP Lite City databases. */
  readonly databases: readonly string[] | null;
  readonly trustedProxies: CidrSet;
  /** Lower-case header name, or undefined. */
  readonly clientIpHeader: string | undefined;
  /** Lower-case names of the client-address headers dropped from peers that are not trusted proxies, clientIpHeader included. */
  readonly clientAddressHeaders: ReadonlySet<string>;
  readonly cacheSize: number;
}

export interface Fence {
  readonly name: string;
  readonly mode: 'strict' | 'preferred';
  readonly regions: readonly string[];
  readonly countries: readonly string[];
  readonly continents: readonly string[];
}

export interface ProjectAffinity {
  readonly home: string;
  /** The home region first, then the regions sharing its data. */
  readonly regions: readonly string[];
}

export interface RoutingPolicy {
  readonly localPreferenceKm: number;
  readonly order: 'latency' | 'distance';
  /** The cost's error term and the hysteresis that holds a client area's home (src/routing/area-homes.ts). */
  readonly latency: { readonly errorPenaltyMs: number; readonly marginMs: number; readonly windowMs: number };
  readonly fences: readonly Fence[];
  /** Country code → fence, then continent code → fence; the first matching fence in file order wins. */
  readonly fenceByCountry: ReadonlyMap<string, Fence>;
  readonly fenceByContinent: ReadonlyMap<string, Fence>;
  readonly projects: ReadonlyMap<string, ProjectAffinity>;
  readonly hostRegions: ReadonlyMap<string, string>;
  /** `*.suffix` rules as `[".suffix", region]`, longest suffix first. */
  readonly hostSuffixRegions: readonly (readonly [string, string])[];
  readonly uploadPinning: { readonly ttl: number; readonly maxEntries: number };
  /** Redirect mode, in file order: the first rule that matches decides the status. */
  readonly redirects: readonly RedirectRule[];
}

export interface RedirectRule {
  readonly name: string;
  readonly match: RequestMatch;
  readonly status: 307 | 308;
}

export interface RateLimitRule {
  readonly name: string;
  readonly match: RequestMatch;
  /** Tokens per second, and the bucket's size. */
  readonly rate: number;
  readonly burst: number;
}

export interface RateLimits {
  readonly ipv4Prefix: number;
  readonly ipv6Prefix: number;
  readonly maxClients: number;
  /** In file order; a request is checked against every rule it matches, each with its own bucket. */
  readonly rules: readonly RateLimitRule[];
}

/** An `admin.allowedHosts` entry: a name the admin plane answers to besides its own address. */
export interface AllowedHost {
  /** Lower case; IPv6 literals in brackets, as URLs write them. */
  readonly name: string;
  /** From `*.name`: every subdomain of `name`, not `name` itself. */
  readonly subdomains: boolean;
  /** From `name:port`: that port only; undefined means any port. */
  readonly port: number | undefined;
}

export interface MeridianConfig {
  /**
   * The validated config (the schema's output: environment overrides applied, defaults filled in), a deep-frozen
   * copy of plain data. A data-plane worker thread builds its own snapshot from it with `buildConfig(config.input)`,
   * because the compiled config holds class instances (CIDR sets and the like) that do not survive postMessage; that
   * yields a config equal to this one. It holds `admin.token` like the compiled config does: never log or serve it.
   */
  readonly input: ParsedConfig;
  readonly topology: Topology;
  /** Data-plane worker threads: `auto` (one per usable CPU, see src/control/cpus.ts) or a count; restart-only. */
  readonly workers: 'auto' | number;
  readonly geo: GeoSettings;
  readonly routing: RoutingPolicy;
  /** Restart-only: the first is the listener older configs called `listen`. */
  readonly listen: readonly ListenerSettings[];
  readonly tls: TlsSettings;
  /** The largest of the listeners' `maxHeaderBytes`: it also bounds an upstream's answer to a WebSocket handshake. */
  readonly maxHeaderBytes: number;
  readonly admin: {
    readonly host: string;
    readonly port: number;
    readonly token: string | undefined;
    readonly allowedHosts: readonly AllowedHost[];
  };
  /** The public readiness listener, or null when the config has no `probe` section. */
  readonly probe: { readonly host: string; readonly port: number } | null;
  readonly timeouts: Timeouts;
  readonly health: {
    readonly path: string;
    readonly host: string | undefined;
    readonly expectStatus: readonly [number, number];
    readonly interval: number;
    readonly unhealthyInterval: number;
    readonly timeout: number;
    readonly rise: number;
    readonly fall: number;
  };
  readonly outlierDetection: {
    readonly consecutiveFailures: number;
    readonly baseEjection: number;
    readonly maxEjection: number;
    readonly maxEjectedPercent: number;
  };
  readonly retries: {
    readonly maxAttempts: number;
    readonly budgetPercent: number;
    readonly minConcurrency: number;
    readonly bufferBodyBytes: number;
  };
  readonly circuitBreaker: { readonly maxRequests: number };
  readonly accessLog: { readonly mode: 'off' | 'on' | 'sampled'; readonly sampleRate: number; readonly includeQuery: boolean };
  readonly readiness: { readonly policy: 'local-zone' | 'local-region' | 'any-region' };
  readonly headers: { readonly forwardedFor: 'overwrite' | 'append'; readonly routingHeaders: boolean; readonly explain: boolean };
  readonly rateLimits: RateLimits;
  /** Chunk retries: a chunk up to `retryChunkBytes` is held while it streams, within `retryBufferBytes` for the process. */
  readonly uploads: { readonly retryChunkBytes: number; readonly retryBufferBytes: number };
  readonly shutdown: { readonly drainDelay: number; readonly drainTimeout: number };
}
