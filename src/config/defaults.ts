// Every default the configuration falls back to, in one place so the README and the code agree.

/** One data-plane worker thread per CPU this process may use (affinity mask and cgroup CPU quota). */
export const DEFAULT_WORKERS = 'auto';

export const DEFAULT_LISTEN_HOST = '0.0.0.0';
export const DEFAULT_LISTEN_PORT = 8080;
export const DEFAULT_ADMIN_HOST = '127.0.0.1';
export const DEFAULT_ADMIN_PORT = 9090;
/** The probe listener, when configured: readiness for GeoDNS checkers, safe to publish. */
export const DEFAULT_PROBE_HOST = '0.0.0.0';
export const DEFAULT_PROBE_PORT = 8081;
/** Session-ticket keys are replaced this often, so a stolen key opens at most this much recorded traffic. */
export const DEFAULT_TICKET_KEY_ROTATION_MS = 12 * 3_600_000;
/** ACME HTTP-01 challenges reach the backends, so a certificate client behind Meridian keeps working. */
export const DEFAULT_ACME_CHALLENGE = 'proxy';
/** A PROXY header or TLS handshake that takes longer is a stalled or hostile client. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Node's own limit; larger headers get 431 before any upstream sees them. */
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024;

/** Slowloris guard: the whole request head must arrive within this time. */
export const DEFAULT_REQUEST_HEADERS_TIMEOUT_MS = 20_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Appwrite runs synchronous function executions for up to 900 s before answering. */
export const DEFAULT_RESPONSE_TIMEOUT_MS = 900_000;
/** No byte in either direction of a body for this long ends the exchange (large uploads pause). */
export const DEFAULT_IDLE_TIMEOUT_MS = 300_000;
/** Appwrite's SDK pings realtime sockets every 20 s; anything under 5 minutes would cut healthy ones. */
export const DEFAULT_WEBSOCKET_IDLE_TIMEOUT_MS = 600_000;
export const MIN_WEBSOCKET_IDLE_TIMEOUT_MS = 300_000;
/** How long an idle downstream keep-alive connection is kept open between requests. */
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 65_000;
/** How long an idle upstream connection stays in the pool. */
export const DEFAULT_UPSTREAM_KEEP_ALIVE_MS = 30_000;

export const DEFAULT_MAX_ATTEMPTS = 3;
/** Retries may add at most this share of the requests in flight, so an outage cannot triple the load. */
export const DEFAULT_RETRY_BUDGET_PERCENT = 20;
/** …but a quiet instance may always retry this many at once. */
export const DEFAULT_RETRY_MIN_CONCURRENCY = 3;
/** Idempotent request bodies up to this size are held so a reset or 502/503/504 can be retried. */
export const DEFAULT_RETRY_BUFFER_BODY_BYTES = 64 * 1024;
/** Envoy's default; beyond it the next candidate is tried instead of queueing. */
export const DEFAULT_MAX_REQUESTS_PER_ENDPOINT = 1_024;

export const DEFAULT_HEALTH_PATH = '/v1/health/version';
export const DEFAULT_HEALTH_INTERVAL_MS = 5_000;
/** A down endpoint is probed faster so it returns within a couple of seconds of recovering. */
export const DEFAULT_HEALTH_UNHEALTHY_INTERVAL_MS = 1_000;
export const DEFAULT_HEALTH_TIMEOUT_MS = 2_000;
export const DEFAULT_HEALTH_RISE = 2;
export const DEFAULT_HEALTH_FALL = 3;

export const DEFAULT_OUTLIER_CONSECUTIVE_FAILURES = 5;
export const DEFAULT_OUTLIER_BASE_EJECTION_MS = 30_000;
export const DEFAULT_OUTLIER_MAX_EJECTION_MS = 300_000;
/** Envoy defaults to 10 %; with one endpoint per zone, 50 % lets a whole region of a small topology be ejected. */
export const DEFAULT_OUTLIER_MAX_EJECTED_PERCENT = 50;

export const DEFAULT_READINESS_POLICY = 'local-region';

export const DEFAULT_FORWARDED_FOR_MODE = 'overwrite';
export const DEFAULT_ROUTING_HEADERS = false;
export const DEFAULT_EXPLAIN_HEADERS = false;

/** Temporary: a client that follows it once asks the same URL here next time, should the home region change. */
export const DEFAULT_REDIRECT_STATUS = 307;

export const DEFAULT_RATE_LIMIT_IPV4_PREFIX = 32;
/** One IPv6 subscriber usually holds a /64: limiting single addresses would let it rotate through 2^64 of them. */
export const DEFAULT_RATE_LIMIT_IPV6_PREFIX = 64;
export const DEFAULT_RATE_LIMIT_MAX_CLIENTS = 100_000;
/** The rate-limit table is shared memory allocated up front: a config asking for more is refused. */
export const MAX_RATE_TABLE_BYTES = 1024 * 2 ** 20;
/** Rules are counted in fixed shared-memory slots (src/observe/edge-stats.ts). */
export const MAX_RATE_LIMIT_RULES = 32;

/** Readiness is already off during the delay, so GeoDNS health checks see it before we stop accepting. */
export const DEFAULT_DRAIN_DELAY_MS = 5_000;
export const DEFAULT_DRAIN_TIMEOUT_MS = 25_000;

export const DEFAULT_GEO_CACHE_SIZE = 100_000;
/** The client already paid to reach us: keep it here unless another region is this much nearer. */
export const DEFAULT_LOCAL_PREFERENCE_KM = 1_000;
/**
 * Regions are ordered by a cost in ms (distance at fibre speed, slowness, errors) unless the config asks for
 * distance alone: a near region that has become slow or fails should sink, which distance cannot see.
 */
export const DEFAULT_ROUTING_ORDER = 'latency';
/**
 * What a region whose every request fails adds to its cost. A failed request costs the client a retry or an error,
 * worth a few hundred ms; at this value 5 % errors add 10 ms, the default margin, so one failure in twenty moves
 * clients off a region that was otherwise as good as the next.
 */
export const DEFAULT_LATENCY_ERROR_PENALTY_MS = 200;
/**
 * Another region becomes a client area's home only when it is cheaper by this much: the cost of 1,000 km of fibre,
 * the same as the default local preference, and well above the few ms that probes across regions jitter by.
 */
export const DEFAULT_LATENCY_MARGIN_MS = 10;
/**
 * …for this long without a break: six probes at the default 5 s interval, by when the RTT average has taken in ~90 % of
 * a lasting change, so one slow probe cannot move clients; and well inside a typical 60 s GeoDNS TTL.
 */
export const DEFAULT_LATENCY_WINDOW_MS = 30_000;
/** A chunked upload's chunks must reach one region; a pin lives this long after its last chunk. */
export const DEFAULT_UPLOAD_PIN_TTL_MS = 3_600_000;
export const DEFAULT_UPLOAD_PIN_ENTRIES = 100_000;
/** Appwrite's chunk is 5 MiB; its multipart envelope adds a few hundred bytes, so a whole chunk fits with room. */
export const DEFAULT_UPLOAD_RETRY_CHUNK_BYTES = 5 * 1024 * 1024 + 64 * 1024;
/** Chunk bytes held for retries across the process: about a dozen chunks streaming at once, 8 from one upload. */
export const DEFAULT_UPLOAD_RETRY_BUFFER_BYTES = 64 * 1024 * 1024;

export const DEFAULT_ACCESS_LOG_MODE = 'off';
export const DEFAULT_ACCESS_LOG_SAMPLE_RATE = 0.01;
