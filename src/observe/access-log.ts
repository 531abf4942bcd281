// The access log: one pino JSON line per finished exchange, written asynchronously to stdout. With `accessLog.mode`
// off it is not subscribed at all, so the data plane does not even publish.
import diagnostics from 'node:diagnostics_channel';
import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import type { MeridianRuntime } from '../main.ts';
import { exchangeEnd } from '../proxy/events.ts';
import type { ExchangeRecord } from '../proxy/record.ts';

// pino is loaded when the log is first turned on: with the log off (the default), no thread pays for its modules.
const require = createRequire(import.meta.url);

/** A stuck stdout drops lines past this much buffered output instead of growing without bound. */
const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

/** Where lines go: anything with `write(line)`, and `flush(cb)` if it buffers (pino's DestinationStream). */
export interface LogDestination {
  write(line: string): unknown;
  flush?(callback: (err?: Error) => void): void;
}

export interface AccessLog {
  /** Subscribes or unsubscribes after a reload changed `accessLog.mode`. */
  reconfigure(): void;
  /** Unsubscribes and flushes what is buffered. */
  close(): Promise<void>;
}

/** One line; `status` is null when the client got no response head, `error` names Meridian's error if any. */
export interface AccessLogLine {
  readonly requestId: string;
  readonly clientIp: string;
  readonly country: string | null;
  readonly method: string;
  readonly host: string | undefined;
  readonly path: string;
  readonly status: number | null;
  readonly bytes: number;
  readonly durationMs: number;
  readonly region: string | null;
  readonly zone: string | null;
  readonly endpoint: string | null;
  readonly attempts: number;
  readonly reason: string;
  readonly error?: string;
}

export function startAccessLog(runtime: Pick<MeridianRuntime, 'plane'>, destination?: LogDestination): AccessLog {
  const log = new AccessLogger(runtime, destination);
  log.reconfigure();
  return log;
}

class AccessLogger implements AccessLog {
  readonly #runtime: Pick<MeridianRuntime, 'plane'>;
  readonly #destination: LogDestination | undefined;
  #logger: Logger | null = null;
  #subscribed = false;

  constructor(runtime: Pick<MeridianRuntime, 'plane'>, destination: LogDestination | undefined) {
    this.#runtime = runtime;
    this.#destination = destination;
  }

  reconfigure(): void {
    const on = this.#runtime.plane().config.accessLog.mode !== 'off';
    if (on === this.#subscribed) return;
    if (on) {
      const pino = require('pino') as typeof import('pino').default;
      this.#logger ??= pino(
        // No pid or hostname: the container names the host. pino's level (30, info) stays: log shippers filter on it.
        // `time` is pino's epoch milliseconds: an ISO string would add a quarter to the cost of each line.
        { base: null },
        new TurnBatch(this.#destination ?? pino.destination({ dest: 1, sync: false, maxLength: MAX_BUFFERED_BYTES })),
      );
      diagnostics.subscribe(exchangeEnd.name as string, this.#onExchangeEnd);
    } else {
      diagnostics.unsubscribe(exchangeEnd.name as string, this.#onExchangeEnd);
    }
    this.#subscribed = on;
  }

  async close(): Promise<void> {
    if (this.#subscribed) diagnostics.unsubscribe(exchangeEnd.name as string, this.#onExchangeEnd);
    this.#subscribed = false;
    const logger = this.#logger;
    if (logger !== null) await new Promise<void>((resolve) => logger.flush(() => resolve()));
  }

  readonly #onExchangeEnd = (message: unknown): void => {
    const record = message as ExchangeRecord;
    // The mode is the config's as the exchange ends; the path was cut by the config it started with (includeQuery).
    const { mode, sampleRate } = this.#runtime.plane().config.accessLog;
    const failed = !record.completed || record.status >= 500;
    if (mode === 'off' || (mode === 'sampled' && !failed && Math.random() >= sampleRate)) return;
    this.#logger!.info(accessLogLine(record));
  };
}

/**
 * Hands the lines of one event-loop turn to the destination as one write. SonicBoom measures its pending buffer on
 * every write, which made line-by-line writes cost about 2.5 µs a line; joined per turn, that is paid once per batch.
 */
class TurnBatch implements LogDestination {
  readonly #inner: LogDestination;
  #lines: string[] = [];
  #scheduled = false;

  constructor(inner: LogDestination) {
    this.#inner = inner;
  }

  write(line: string): void {
    this.#lines.push(line);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(this.#drain);
  }

  flush(callback: (err?: Error) => void): void {
    this.#drain();
    if (this.#inner.flush) this.#inner.flush(callback);
    else callback();
  }

  readonly #drain = (): void => {
    this.#scheduled = false;
    if (this.#lines.length === 0) return;
    const batch = this.#lines.join('');
    this.#lines = [];
    this.#inner.write(batch);
  };
}

export function accessLogLine(record: ExchangeRecord): AccessLogLine {
  const { endpoint, errorCode } = record;
  const line: AccessLogLine = {
    requestId: record.requestId,
    clientIp: record.clientIp,
    country: record.country,
    method: record.method,
    host: record.host,
    path: record.path,
    status: record.status === 0 ? null : record.status,
    bytes: record.bytesOut,
    durationMs: Math.round(record.durationMs * 1000) / 1000,
    region: endpoint === null ? null : endpoint.region,
    zone: endpoint === null ? null : endpoint.zone,
    endpoint: endpoint === null ? null : endpoint.origin,
    attempts: record.attempts,
    reason: record.routeReason,
  };
  return errorCode === null ? line : { ...line, error: errorCode };
}
