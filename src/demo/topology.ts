// The demo's embedded config: four seed regions with real coordinates, zones az-1 and az-3 each,
// every zone pointing at one loopback backend. compileConfig validates it like any config file.
import type { ConfigInput } from '../config/schema.ts';
import type { DemoCertificate } from './certificate.ts';
import { DEFAULT_ADMIN_HOST, DEFAULT_ADMIN_PORT, DEFAULT_LISTEN_PORT, DEFAULT_PROBE_PORT } from '../config/defaults.ts';

export interface SeedRegion {
  readonly place: string;
  /** `[lat, lon]` of the metro the region stands for. */
  readonly location: readonly [number, number];
}

export const SEED_REGIONS: Readonly<Record<string, SeedRegion>> = Object.freeze({
  'us-west': { place: 'Oregon (Portland)', location: [45.52, -122.68] },
  'us-east': { place: 'N. Virginia (Ashburn)', location: [39.04, -77.49] },
  'eu-north': { place: 'Stockholm', location: [59.33, 18.07] },
  'eu-south': { place: 'Milan', location: [45.46, 9.19] },
});

export const DEMO_ZONES: readonly string[] = Object.freeze(['az-1', 'az-3']);
/** The AZ this demo instance plays; MERIDIAN_REGION / MERIDIAN_ZONE still override it. */
export const DEMO_SELF = Object.freeze({ region: 'us-east', zone: 'az-1' });
/** A demo opens no public port: the proxy binds loopback, unlike the 0.0.0.0 production default. */
export const DEMO_LISTEN_HOST = '127.0.0.1';

/** Backend origins by region, then by zone. */
export type DemoOrigins = Readonly<Record<string, Readonly<Record<string, string>>>>;

export interface DemoPorts {
  /** Default 8080; 0 picks a free port (tests). */
  readonly listenPort?: number;
  /** Default 9090; 0 picks a free port (tests). */
  readonly adminPort?: number;
  /** The HTTPS listener's port, default 8443; 0 picks a free port (tests). */
  readonly httpsPort?: number;
  /** The probe listener's port (/readyz and /healthz only), default 8081; 0 picks a free port (tests). */
  readonly probePort?: number;
}

/** The demo's HTTPS port by default. */
export const DEMO_HTTPS_PORT = 8443;

/** With `certificate`, an HTTPS listener (HTTP/2 too) joins the plain one. */
export function demoConfig(origins: DemoOrigins, ports: DemoPorts = {}, certificate: DemoCertificate | null = null): ConfigInput {
  const regions: ConfigInput['regions'] = {};
  for (const [name, seed] of Object.entries(SEED_REGIONS)) {
    const zones = Object.entries(origins[name] ?? {}).map(([zone, origin]) => [zone, { endpoints: [origin] }]);
    regions[name] = { location: [seed.location[0], seed.location[1]], zones: Object.fromEntries(zones) };
  }
  return {
    self: { ...DEMO_SELF },
    listen: [
      { host: DEMO_LISTEN_HOST, port: ports.listenPort ?? DEFAULT_LISTEN_PORT },
      ...(certificate === null ? [] : [{ protocol: 'https' as const, host: DEMO_LISTEN_HOST, port: ports.httpsPort ?? DEMO_HTTPS_PORT }]),
    ],
    tls: { certificates: certificate === null ? [] : [certificate] },
    admin: { host: DEFAULT_ADMIN_HOST, port: ports.adminPort ?? DEFAULT_ADMIN_PORT },
    // What a GeoDNS checker would poll in production, on loopback here like everything else of the demo.
    probe: { host: DEMO_LISTEN_HOST, port: ports.probePort ?? DEFAULT_PROBE_PORT },
    // Loopback stands in for a trusted load balancer, so `curl -H 'X-Forwarded-For: …'` plays any client.
    geo: { trustedProxies: ['127.0.0.0/8', '::1'] },
    regions,
    // The routing headers let a newcomer see with `curl -i` which region and zone answered.
    headers: { routingHeaders: true },
    // Nothing routes by this instance's readiness, so Ctrl-C need not wait for GeoDNS to notice.
    shutdown: { drainDelay: 0 },
  };
}
