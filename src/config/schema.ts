// The shape of a Meridian config file, with defaults; cross-field rules live in compile.ts.
import { z } from 'zod';
import { parseDuration } from './duration.ts';
import * as d from './defaults.ts';
import { catalogLocation } from './catalog.ts';

const port = z.number().int().min(0).max(65_535);
const name = z.string().regex(/^[a-z0-9][a-z0-9_-]*$/i, 'use letters, digits, "-" and "_"');

function duration(fallbackMs: number) {
  return z
    .union([z.string(), z.number()])
    .default(fallbackMs)
    .transform((value, ctx) => {
      const ms = parseDuration(value);
      if (ms === null) ctx.addIssue({ code: 'custom', message: `not a duration (${JSON.stringify(value)}); use e.g. 250ms, 5s, 2m` });
      return ms ?? 0;
    });
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.username === '' && url.password === '';
  } catch {
    return false;
  }
}

const endpoint = z.string().refine(isHttpUrl, 'not an http(s) URL');

function notWorkers(issue: { input?: unknown }): string {
  const got = typeof issue.input === 'number' ? String(issue.input) : JSON.stringify(issue.input);
  return `not a worker count (${got}); use auto or a whole number of at least 1`;
}

/** `auto` (one data-plane thread per usable CPU) or a whole number of threads; every rejection gets the same message. */
const workers = z.union([z.literal('auto'), z.number().int({ error: notWorkers }).min(1, { error: notWorkers })], { error: notWorkers });

const zone = z.strictObject({
  endpoints: z.array(endpoint).min(1, 'a zone needs at least one endpoint'),
});

const region = z.strictObject({
  /** `[lat, lon]` or a catalog name such as `aws:us-west-2` from geo-data/regions.json. */
  location: z.union([
    z.tuple([z.number().min(-90).max(90), z.number().min(-180).max(180)]),
    z.string().refine((name) => catalogLocation(name) !== undefined, {
      error: (issue) => `unknown catalog region ${JSON.stringify(issue.input)} (see geo-data/regions.json), or give [lat, lon]`,
    }),
  ]),
  publicHost: z.string().optional(),
  zones: z.record(name, zone).refine((zones) => Object.keys(zones).length > 0, 'a region needs at least one zone'),
});

const oneOrMany = z.union([z.string(), z.array(z.string()).min(1)]).transform((v) => (typeof v === 'string' ? [v] : v));

const fence = z.strictObject({
  /** Shown in errors and explain output; defaults to `fences[i]`. */
  name: z.string().optional(),
  match: z
    .strictObject({ country: oneOrMany.optional(), continent: oneOrMany.optional() })
    .refine((m) => m.country !== undefined || m.continent !== undefined, 'match needs country or continent'),
  regions: z.array(z.string()).min(1),
  mode: z.enum(['strict', 'preferred']).default('strict'),
});

const project = z.strictObject({
  home: z.string(),
  /** Regions that share the project's data and may serve it after the home region. */
  regions: z.array(z.string()).default([]),
});

/** `name`, `*.suffix`, an IPv4 address or a bracketed IPv6 one, each with an optional `:port`. */
const ALLOWED_HOST = /^(?:(?:\*\.)?[a-z0-9-]+(?:\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i;

const method = z.string().regex(/^[A-Z]+$/, 'an HTTP method in capitals, e.g. GET');
const hostPattern = z.string().regex(/^(\*\.)?[a-z0-9.-]+$/i, 'a hostname or *.suffix');

/** What a rate-limit or redirect rule applies to; every field given must match, an absent one matches anything. */
const requestMatch = {
  host: hostPattern.optional(),
  pathPrefix: z.string().startsWith('/', 'must start with /').optional(),
  methods: z.array(method).min(1).optional(),
};

const redirectRule = z.strictObject({
  /** Names the rule in logs and explain output; default `redirects[i]`. */
  name: name.optional(),
  ...requestMatch,
  status: z.union([z.literal(307), z.literal(308)]).default(d.DEFAULT_REDIRECT_STATUS),
});

const rateLimitRule = z.strictObject({
  /** The `rule` label of `meridian_rate_limited_total`. */
  name,
  ...requestMatch,
  /** Requests per second each client may make, sustained. */
  rate: z.number().gt(0),
  /** Requests a client may make at once beyond the sustained rate. */
  burst: z.number().int().min(1),
});

const hostRule = z.strictObject({
  /** An exact hostname, or `*.suffix` for every subdomain (custom, function and site domains). */
  host: z.string().regex(/^(\*\.)?[a-z0-9.-]+$/i, 'a hostname or *.suffix'),
  region: z.string(),
});

const listener = z.strictObject({
  /** Names the listener in metrics and logs; default: its protocol. */
  name: name.optional(),
  /** `http`: plain HTTP; `https`: TLS (ALPN h2 and http/1.1); `redirect`: plain HTTP that only sends clients to HTTPS. */
  protocol: z.enum(['http', 'https', 'redirect']).default('http'),
  host: z.string().default(d.DEFAULT_LISTEN_HOST),
  port: port.default(d.DEFAULT_LISTEN_PORT),
  maxHeaderBytes: z.number().int().min(1024).max(1024 * 1024).default(d.DEFAULT_MAX_HEADER_BYTES),
  /** Every connection must open with a PROXY protocol header (v1 or v2), and only these peers may connect. */
  proxyProtocol: z.strictObject({ trusted: z.array(z.string()).min(1, 'name the load balancers that send it') }).optional(),
  /** `https` only: offer HTTP/2 through ALPN. */
  http2: z.boolean().default(true),
  /** `redirect` only. */
  redirect: z
    .strictObject({
      /** The port in `Location`; default: the first https listener's port (443 is left out of the URL). */
      httpsPort: port.min(1).optional(),
      /** `proxy`: ACME HTTP-01 challenges (`/.well-known/acme-challenge/`) go to the backends like any request. */
      acmeChallenge: z.enum(['proxy', 'redirect']).default(d.DEFAULT_ACME_CHALLENGE),
    })
    .optional(),
});

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * `self` must name a region and one of its zones. It runs even when other fields failed (`when`), on whatever
 * parsed, so that one run of `meridian check` lists this mistake together with every other.
 */
function selfInTopology(config: { self: unknown; regions: unknown }, ctx: z.RefinementCtx): void {
  const { self, regions } = config;
  if (!isRecord(self) || typeof self.region !== 'string' || typeof self.zone !== 'string' || !isRecord(regions)) return;
  if (!Object.hasOwn(regions, self.region)) {
    const names = Object.keys(regions).join(', ');
    ctx.addIssue({ code: 'custom', path: ['self', 'region'], message: `"${self.region}" is not one of the regions (${names})` });
    return;
  }
  const zones = (regions[self.region] as { zones?: unknown } | null)?.zones;
  if (isRecord(zones) && !Object.hasOwn(zones, self.zone)) {
    const names = Object.keys(zones).join(', ');
    ctx.addIssue({ code: 'custom', path: ['self', 'zone'], message: `"${self.zone}" is not a zone of ${self.region} (${names})` });
  }
}

export const configSchema = z.strictObject({
  self: z.strictObject({ region: z.string(), zone: z.string() }),
  workers: workers.default(d.DEFAULT_WORKERS),
  /** One listener (the plain HTTP one of older configs) or a list of them; each worker thread opens every one. */
  listen: z.preprocess((value) => (value === undefined ? [{}] : Array.isArray(value) ? value : [value]), z.array(listener).min(1, 'give at least one listener')),
  tls: z
    .strictObject({
      /** PEM files; the first pair is the default for clients that send no SNI name, or one no certificate names. */
      certificates: z.array(z.strictObject({ cert: z.string().min(1), key: z.string().min(1) })).default([]),
      /** How often the session-ticket key shared by every worker is replaced; 0 keeps one key for the process's life. */
      ticketKeyRotation: duration(d.DEFAULT_TICKET_KEY_ROTATION_MS),
    })
    .prefault({}),
  admin: z
    .strictObject({
      host: z.string().default(d.DEFAULT_ADMIN_HOST),
      port: port.default(d.DEFAULT_ADMIN_PORT),
      token: z.string().min(16, 'use at least 16 characters').optional(),
      /** Names the admin plane answers to besides its own address (DNS-rebinding guard): `name`, `*.suffix`, with `:port` optional. */
      allowedHosts: z.array(z.string().regex(ALLOWED_HOST, 'a hostname, *.suffix or IP address, with :port optional')).default([]),
    })
    .prefault({}),
  /** Optional: a listener serving only /readyz and /healthz, for GeoDNS and load-balancer health checkers. */
  probe: z
    .strictObject({
      host: z.string().default(d.DEFAULT_PROBE_HOST),
      port: port.default(d.DEFAULT_PROBE_PORT),
    })
    .optional(),
  geo: z
    .strictObject({
      /** Default: the bundled DB-IP Lite City databases (IPv4 and IPv6). */
      databases: z.array(z.string().min(1)).min(1).optional(),
      trustedProxies: z.array(z.string()).default([]),
      /** A single-value client IP header such as CF-Connecting-IP, honoured only from trusted proxies. */
      clientIpHeader: z.string().regex(/^[a-z0-9-]+$/i, 'a header name').optional(),
      cacheSize: z.number().int().min(1).default(d.DEFAULT_GEO_CACHE_SIZE),
    })
    .prefault({}),
  routing: z
    .strictObject({
      localPreferenceKm: z.number().min(0).default(d.DEFAULT_LOCAL_PREFERENCE_KM),
      /** `latency`: regions by cost in ms (distance, slowness, errors) with hysteresis; `distance`: great-circle only. */
      order: z.enum(['latency', 'distance']).default(d.DEFAULT_ROUTING_ORDER),
      latency: z
        .strictObject({
          errorPenalty: duration(d.DEFAULT_LATENCY_ERROR_PENALTY_MS),
          margin: duration(d.DEFAULT_LATENCY_MARGIN_MS),
          window: duration(d.DEFAULT_LATENCY_WINDOW_MS),
        })
        .prefault({}),
      fences: z.array(fence).default([]),
      projects: z.record(z.string(), project).default({}),
      hosts: z.array(hostRule).default([]),
      /** Redirect mode: matching requests whose home region is another one go to its `publicHost` instead. */
      redirects: z.array(redirectRule).default([]),
      uploadPinning: z
        .strictObject({
          ttl: duration(d.DEFAULT_UPLOAD_PIN_TTL_MS),
          maxEntries: z.number().int().min(1).default(d.DEFAULT_UPLOAD_PIN_ENTRIES),
        })
        .prefault({}),
    })
    .prefault({}),
  regions: z
    .record(name, region)
    .refine((regions) => Object.keys(regions).length > 0, 'at least one region is required')
    .refine((regions) => Object.keys(regions).length <= 64, 'at most 64 regions'),
  timeouts: z
    .strictObject({
      requestHeaders: duration(d.DEFAULT_REQUEST_HEADERS_TIMEOUT_MS),
      connect: duration(d.DEFAULT_CONNECT_TIMEOUT_MS),
      response: duration(d.DEFAULT_RESPONSE_TIMEOUT_MS),
      idle: duration(d.DEFAULT_IDLE_TIMEOUT_MS),
      websocketIdle: duration(d.DEFAULT_WEBSOCKET_IDLE_TIMEOUT_MS),
      keepAlive: duration(d.DEFAULT_KEEP_ALIVE_TIMEOUT_MS),
      /** A PROXY protocol header and a TLS handshake must each complete within this time. */
      handshake: duration(d.DEFAULT_HANDSHAKE_TIMEOUT_MS),
    })
    .prefault({}),
  health: z
    .strictObject({
      path: z.string().startsWith('/', 'must start with /').default(d.DEFAULT_HEALTH_PATH),
      /** Host header of the probes; Appwrite expects its _APP_DOMAIN. Default: the endpoint's host. */
      host: z.string().optional(),
      expectStatus: z
        .tuple([z.number().int().min(100).max(599), z.number().int().min(100).max(599)])
        .refine(([low, high]) => low <= high, 'write [lowest, highest]')
        .default([200, 299]),
      interval: duration(d.DEFAULT_HEALTH_INTERVAL_MS),
      unhealthyInterval: duration(d.DEFAULT_HEALTH_UNHEALTHY_INTERVAL_MS),
      timeout: duration(d.DEFAULT_HEALTH_TIMEOUT_MS),
      rise: z.number().int().min(1).default(d.DEFAULT_HEALTH_RISE),
      fall: z.number().int().min(1).default(d.DEFAULT_HEALTH_FALL),
    })
    .prefault({}),
  outlierDetection: z
    .strictObject({
      consecutiveFailures: z.number().int().min(1).default(d.DEFAULT_OUTLIER_CONSECUTIVE_FAILURES),
      baseEjection: duration(d.DEFAULT_OUTLIER_BASE_EJECTION_MS),
      maxEjection: duration(d.DEFAULT_OUTLIER_MAX_EJECTION_MS),
      maxEjectedPercent: z.number().min(0).max(100).default(d.DEFAULT_OUTLIER_MAX_EJECTED_PERCENT),
    })
    .prefault({}),
  retries: z
    .strictObject({
      maxAttempts: z.number().int().min(1).max(10).default(d.DEFAULT_MAX_ATTEMPTS),
      budgetPercent: z.number().min(0).max(100).default(d.DEFAULT_RETRY_BUDGET_PERCENT),
      minConcurrency: z.number().int().min(0).default(d.DEFAULT_RETRY_MIN_CONCURRENCY),
      bufferBodyBytes: z.number().int().min(0).max(16 * 1024 * 1024).default(d.DEFAULT_RETRY_BUFFER_BODY_BYTES),
    })
    .prefault({}),
  circuitBreaker: z
    .strictObject({
      maxRequests: z.number().int().min(1).default(d.DEFAULT_MAX_REQUESTS_PER_ENDPOINT),
    })
    .prefault({}),
  accessLog: z
    .strictObject({
      mode: z.enum(['off', 'on', 'sampled']).default(d.DEFAULT_ACCESS_LOG_MODE),
      /** Share of requests logged in `sampled` mode; errors (status ≥ 500 or no response) are always logged. */
      sampleRate: z.number().gt(0).max(1).default(d.DEFAULT_ACCESS_LOG_SAMPLE_RATE),
      /** Query strings can carry secrets and JWTs, so they are left out unless asked for. */
      includeQuery: z.boolean().default(false),
    })
    .prefault({}),
  readiness: z
    .strictObject({
      policy: z.enum(['local-zone', 'local-region', 'any-region']).default(d.DEFAULT_READINESS_POLICY),
    })
    .prefault({}),
  headers: z
    .strictObject({
      forwardedFor: z.enum(['overwrite', 'append']).default(d.DEFAULT_FORWARDED_FOR_MODE),
      routingHeaders: z.boolean().default(d.DEFAULT_ROUTING_HEADERS),
      /** `x-meridian-route` and `Server-Timing` on responses: why this region, and where the time went. */
      explain: z.boolean().default(d.DEFAULT_EXPLAIN_HEADERS),
    })
    .prefault({}),
  rateLimits: z
    .strictObject({
      /** Clients are grouped by these prefixes: an IPv6 user typically holds a whole /64. */
      ipv4Prefix: z.number().int().min(8).max(32).default(d.DEFAULT_RATE_LIMIT_IPV4_PREFIX),
      ipv6Prefix: z.number().int().min(16).max(128).default(d.DEFAULT_RATE_LIMIT_IPV6_PREFIX),
      /** Client groups tracked at once, across the process; the least recently seen make room. */
      maxClients: z.number().int().min(1).max(10_000_000).default(d.DEFAULT_RATE_LIMIT_MAX_CLIENTS),
      rules: z.array(rateLimitRule).max(d.MAX_RATE_LIMIT_RULES, `at most ${d.MAX_RATE_LIMIT_RULES} rules`).default([]),
    })
    .prefault({}),
  uploads: z
    .strictObject({
      retryChunkBytes: z.number().int().min(0).max(64 * 1024 * 1024).default(d.DEFAULT_UPLOAD_RETRY_CHUNK_BYTES),
      retryBufferBytes: z.number().int().min(0).max(1024 * 1024 * 1024).default(d.DEFAULT_UPLOAD_RETRY_BUFFER_BYTES),
    })
    .prefault({}),
  shutdown: z
    .strictObject({
      drainDelay: duration(d.DEFAULT_DRAIN_DELAY_MS),
      drainTimeout: duration(d.DEFAULT_DRAIN_TIMEOUT_MS),
    })
    .prefault({}),
}).superRefine(selfInTopology, { when: () => true });

/** The config file as written, before compiling. */
export type ConfigInput = z.input<typeof configSchema>;
/** The config after validation and defaults, before compiling. */
export type ParsedConfig = z.output<typeof configSchema>;
