// An evenly paced, open-loop HTTP/1.1 load generator on raw keep-alive sockets. Request i is due at start + i / rate
// and goes out on connection i mod N, so the rate is spread evenly over time (never a burst at each second's start),
// and its latency counts from when it was due, not from when it went out: a stalled proxy delays every request behind
// it, and those delays are measured rather than hidden (no coordinated omission).
// Run as `node bench/pacer.ts URL --rate R --connections N --duration S [--warmup S] [--header "name: value"]...`;
// it prints one JSON line (see PacedResult). bench/paced.ts runs it pinned to the load CPU.
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export interface PacedOptions {
  readonly url: string;
  /** Requests per second, over all connections together. */
  readonly rate: number;
  readonly connections: number;
  /** Seconds of load after the warm-up; the run ends after warm-up + duration or `maxRequests`, whichever is first. */
  readonly durationS: number;
  /** Seconds of load first whose requests are not recorded. */
  readonly warmupS: number;
  readonly headers: Readonly<Record<string, string>>;
  /** A request still unanswered this long after the last one was due counts as an error. */
  readonly drainMs?: number;
  readonly maxRequests?: number;
}

export interface PacedResult {
  /** Requests due in the measured window, and how many of them completed with a 2xx. */
  readonly scheduled: number;
  readonly completed: number;
  /** Completed 2xx per second over the measured window. */
  readonly rps: number;
  /** Latency from when each request was due to its response's last byte, ms. */
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
  /** Non-2xx answers, socket errors, and requests unanswered at the end. */
  readonly errors: number;
  /**
   * How late the generator itself sent requests whose connection was free when they were due (p99, ms): the
   * generator's own scheduling lag. Well under the latencies measured means the generator was not the limit.
   */
  readonly sendLagP99Ms: number;
  /** CPU the generator used over the whole run, in % of one core. */
  readonly cpuPercent: number;
}

/** Without other events to wake it, the generator checks for due requests at least this often. */
const TICK_MS = 1;
const CRLF2 = Buffer.from('\r\n\r\n');

type OnResponse = (conn: Connection, due: number, ok: boolean) => void;

/** One keep-alive connection carrying one request at a time, with the due times of those waiting for it. */
class Connection {
  readonly socket: Socket;
  /** Due times (ms, performance.now()) of requests queued behind the one in flight; a ring would do, these stay tiny. */
  readonly waiting: number[] = [];
  inFlightDue = -1;
  #pending: Buffer | null = null;
  readonly #request: Buffer;
  readonly #done: OnResponse;

  constructor(host: string, port: number, request: Buffer, done: OnResponse, failed: (err: Error) => void) {
    this.#request = request;
    this.#done = done;
    this.socket = connect({ host, port, noDelay: true });
    this.socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.socket.on('error', failed);
    this.socket.on('close', () => failed(new Error('connection closed')));
  }

  get busy(): boolean {
    return this.inFlightDue >= 0;
  }

  send(due: number): void {
    this.inFlightDue = due;
    this.socket.write(this.#request);
  }

  #onData(chunk: Buffer): void {
    const buf = this.#pending === null ? chunk : Buffer.concat([this.#pending, chunk]);
    const length = responseLength(buf);
    if (length < 0 || buf.length < length) {
      this.#pending = buf;
      return;
    }
    // One request at a time per connection, so a response never shares a chunk with the next one.
    this.#pending = null;
    const status = buf[9] * 100 + buf[10] * 10 + buf[11] - 5328; // 5328 = '000' in ASCII digits
    const due = this.inFlightDue;
    this.inFlightDue = -1;
    this.#done(this, due, status >= 200 && status < 300);
  }
}

const CONTENT_LENGTH = [Buffer.from('\r\ncontent-length:'), Buffer.from('\r\nContent-Length:')];

/**
 * The full length of the HTTP response at the start of `buf`, or -1 while its head or chunked body is incomplete. The
 * usual spellings of Content-Length are found without making strings (the generator must stay cheap at 10k req/s);
 * anything else goes through a regular expression over the head.
 */
export function responseLength(buf: Buffer): number {
  const headEnd = buf.indexOf(CRLF2);
  if (headEnd < 0) return -1;
  const bodyStart = headEnd + 4;
  for (const name of CONTENT_LENGTH) {
    let at = buf.indexOf(name);
    if (at < 0 || at > headEnd) continue;
    at += name.length;
    while (buf[at] === 32 || buf[at] === 9) at++;
    let length = 0;
    for (let c = buf[at]; c >= 48 && c <= 57; c = buf[++at]) length = length * 10 + c - 48;
    return bodyStart + length;
  }
  const head = buf.toString('latin1', 0, headEnd);
  const contentLength = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
  if (contentLength !== null) return bodyStart + Number(contentLength[1]);
  if (!/\r\ntransfer-encoding:[^\r]*chunked/i.test(head)) return bodyStart;
  // Chunked: walk the chunk sizes up to the last (zero) chunk and its empty trailer.
  let at = bodyStart;
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', at, 'latin1');
    if (lineEnd < 0) return -1;
    const size = parseInt(buf.toString('latin1', at, lineEnd), 16);
    if (size === 0) {
      const end = buf.indexOf(CRLF2, lineEnd, 'latin1');
      return end < 0 ? -1 : end + 4;
    }
    at = lineEnd + 2 + size + 2;
    if (at > buf.length) return -1;
  }
}

export function runPaced(o: PacedOptions): Promise<PacedResult> {
  const url = new URL(o.url);
  const host = url.hostname;
  const port = Number(url.port || 80);
  const head = [`GET ${url.pathname}${url.search} HTTP/1.1`, `host: ${url.host}`, ...Object.entries(o.headers).map(([n, v]) => `${n}: ${v}`)];
  const request = Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1');
  const intervalMs = 1000 / o.rate;
  const totalDue = Math.min(Math.floor((o.warmupS + o.durationS) * o.rate), o.maxRequests ?? Infinity);
  const firstMeasured = Math.floor(o.warmupS * o.rate);
  const measured = totalDue - firstMeasured;
  const latencies = new Float64Array(measured);
  const lags = new Float64Array(measured);
  let recorded = 0;
  let lagCount = 0;
  let errors = 0;
  let next = 0;
  let start = 0;
  let outstanding = 0;
  let finished = false;
  const cpuStart = process.cpuUsage();
  const wallStart = performance.now();

  return new Promise((resolve, reject) => {
    const measuredFrom = (): number => start + firstMeasured * intervalMs;
    const isMeasured = (due: number): boolean => due >= measuredFrom() - intervalMs / 2;
    const done = (conn: Connection, due: number, ok: boolean): void => {
      outstanding--;
      if (isMeasured(due)) {
        if (ok) latencies[recorded++] = performance.now() - due;
        else errors++;
      }
      const queued = conn.waiting.shift();
      if (queued !== undefined) conn.send(queued);
      pump();
      maybeFinish();
    };
    const failed = (err: Error): void => {
      if (finished) return;
      finished = true;
      clearInterval(ticker);
      for (const c of conns) c.socket.destroy();
      reject(new Error(`pacer: ${err.message} after ${next} requests`));
    };
    const conns = Array.from({ length: o.connections }, () => new Connection(host, port, request, done, failed));

    /** Sends (or queues behind the one in flight) every request due by now. */
    const pump = (): void => {
      const now = performance.now();
      while (next < totalDue) {
        const due = start + next * intervalMs;
        if (due > now) break;
        const conn = conns[next % conns.length];
        outstanding++;
        if (conn.busy) conn.waiting.push(due);
        else {
          if (isMeasured(due) && lagCount < lags.length) lags[lagCount++] = now - due;
          conn.send(due);
        }
        next++;
      }
    };

    let drainTimer: NodeJS.Timeout | undefined;
    const maybeFinish = (): void => {
      if (finished || next < totalDue) return;
      if (outstanding > 0) {
        drainTimer ??= setTimeout(() => finish(), o.drainMs ?? 2_000);
        return;
      }
      finish();
    };
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearInterval(ticker);
      clearTimeout(drainTimer);
      // Unanswered requests of the measured window are errors (counted once each, the warm-up's are ignored).
      errors += Math.max(0, measured - recorded - errors);
      for (const c of conns) {
        c.socket.removeAllListeners('close');
        c.socket.destroy();
      }
      const cpu = process.cpuUsage(cpuStart);
      resolve(summarize(latencies.subarray(0, recorded), lags.subarray(0, lagCount), {
        scheduled: measured,
        windowMs: measured * intervalMs,
        errors,
        cpuPercent: ((cpu.user + cpu.system) / 1000 / (performance.now() - wallStart)) * 100,
      }));
    };

    // Every response wakes the loop and pumps; the ticker covers the quiet gaps, at timer resolution.
    const ticker = setInterval(() => {
      pump();
      maybeFinish();
    }, TICK_MS);
    let connected = 0;
    for (const c of conns) {
      c.socket.once('connect', () => {
        if (++connected === conns.length) start = performance.now();
      });
    }
    // Nothing is due before every connection is open.
    start = Infinity;
  });
}

function summarize(
  latencies: Float64Array,
  lags: Float64Array,
  facts: { scheduled: number; windowMs: number; errors: number; cpuPercent: number },
): PacedResult {
  latencies.sort();
  lags.sort();
  const at = (sorted: Float64Array, q: number): number => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]);
  const round = (ms: number): number => Math.round(ms * 1000) / 1000;
  return {
    scheduled: facts.scheduled,
    completed: latencies.length,
    rps: Math.round((latencies.length / facts.windowMs) * 1000),
    p50Ms: round(at(latencies, 0.5)),
    p90Ms: round(at(latencies, 0.9)),
    p99Ms: round(at(latencies, 0.99)),
    p999Ms: round(at(latencies, 0.999)),
    maxMs: round(latencies.length === 0 ? NaN : latencies[latencies.length - 1]),
    errors: facts.errors,
    sendLagP99Ms: round(at(lags, 0.99)),
    cpuPercent: Math.round(facts.cpuPercent),
  };
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      rate: { type: 'string' },
      connections: { type: 'string', default: '50' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '0' },
      'max-requests': { type: 'string' },
      header: { type: 'string', multiple: true, default: [] },
    },
  });
  const headers: Record<string, string> = {};
  for (const h of values.header) {
    const colon = h.indexOf(':');
    headers[h.slice(0, colon).trim()] = h.slice(colon + 1).trim();
  }
  const options: PacedOptions = {
    url: positionals[0],
    rate: Number(values.rate),
    connections: Number(values.connections),
    durationS: Number(values.duration),
    warmupS: Number(values.warmup),
    maxRequests: values['max-requests'] === undefined ? undefined : Number(values['max-requests']),
    headers,
  };
  if (!options.url || !(options.rate > 0) || !(options.connections > 0) || !(options.durationS > 0)) {
    console.error('usage: node bench/pacer.ts URL --rate R [--connections N] [--duration S] [--warmup S] [--max-requests N] [--header "name: value"]...');
    process.exit(2);
  }
  runPaced(options).then(
    (result) => console.log(JSON.stringify(result)),
    (err: Error) => {
      console.error(err.message);
      process.exit(1);
    },
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
