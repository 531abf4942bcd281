// Every default the configuration falls back to, in one place so the README and the code agree.

export const DEFAULT_LISTEN_HOST = '0.0.0.0';
export const DEFAULT_LISTEN_PORT = 8080;
export const DEFAULT_ADMIN_HOST = '127.0.0.1';
export const DEFAULT_ADMIN_PORT = 9090;
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

export const DEFAULT_FORWARDED_FOR_MODE = 'overwrite';
export const DEFAULT_ROUTING_HEADERS = false;

/** Readiness is already off during the delay, so GeoDNS health checks see it before we stop accepting. */
export const DEFAULT_DRAIN_DELAY_MS = 5_000;
export const DEFAULT_DRAIN_TIMEOUT_MS = 25_000;

export const DEFAULT_GEO_CACHE_SIZE = 100_000;
/** The client already paid to reach us: keep it here unless another region is this much nearer. */
export const DEFAULT_LOCAL_PREFERENCE_KM = 1_000;
/** A chunked upload's chunks must reach one region; a pin lives this long after its last chunk. */
export const DEFAULT_UPLOAD_PIN_TTL_MS = 3_600_000;
export const DEFAULT_UPLOAD_PIN_ENTRIES = 100_000;
