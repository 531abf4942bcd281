// The compiled, frozen configuration snapshot that the data plane reads.

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
}

export interface MeridianConfig {
  readonly topology: Topology;
  readonly listen: { readonly host: string; readonly port: number; readonly maxHeaderBytes: number };
  readonly admin: { readonly host: string; readonly port: number; readonly token: string | undefined };
  readonly timeouts: Timeouts;
  readonly retries: { readonly maxAttempts: number };
  readonly headers: { readonly forwardedFor: 'overwrite' | 'append'; readonly routingHeaders: boolean };
  readonly shutdown: { readonly drainDelay: number; readonly drainTimeout: number };
}
