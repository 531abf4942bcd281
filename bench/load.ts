// Load generators: autocannon (its CLI in a child process) and wrk, both pinned to the load CPU; output parsing.
import { fileURLToPath } from 'node:url';
import { runChild } from './children.ts';

const AUTOCANNON_BIN = fileURLToPath(new URL('../node_modules/autocannon/autocannon.js', import.meta.url));
/** A run may overrun its duration by this much (connection teardown, JSON output) before it is killed. */
const OVERRUN_MS = 30_000;

export interface LoadResult {
  /** Completed requests per second over the measured window. */
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Socket errors, timeouts and non-2xx responses: anything but zero means the numbers are suspect. */
  readonly errors: number;
}

export interface AutocannonOptions {
  readonly connections: number;
  readonly durationS: number;
  readonly cpu: number;
  readonly method?: string;
  /** A file whose bytes are sent as the request body. */
  readonly bodyFile?: string;
  /** Fixed overall request rate; without it autocannon runs closed-loop at saturation. */
  readonly rate?: number;
  readonly headers?: Readonly<Record<string, string>>;
}

interface AutocannonJson {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  latency: { p50: number; p99: number };
  requests: { total: number };
  '2xx': number;
}

export async function autocannon(url: string, o: AutocannonOptions): Promise<LoadResult> {
  const args = [AUTOCANNON_BIN, '--json', '--no-progress', '-c', String(o.connections), '-d', String(o.durationS)];
  if (o.method) args.push('-m', o.method);
  if (o.bodyFile) args.push('-i', o.bodyFile, '-H', 'content-type=application/octet-stream');
  if (o.rate) args.push('-R', String(o.rate));
  for (const [name, value] of Object.entries(o.headers ?? {})) args.push('-H', `${name}=${value}`);
  args.push(url);
  const output = await runChild('autocannon', process.execPath, args, o.durationS * 1000 + OVERRUN_MS, {
    cpu: o.cpu,
    // autocannon's dependencies print a deprecation warning on stderr; it is noise here.
    env: { ...process.env, NODE_OPTIONS: '--no-deprecation' },
  });
  const json = parseJsonLine<AutocannonJson>(output);
  return {
    // 2xx over the whole run, so error responses never count as throughput.
    rps: json['2xx'] / json.duration,
    p50Ms: json.latency.p50,
    p99Ms: json.latency.p99,
    errors: json.errors + json.timeouts + json.non2xx,
  };
}

export interface WrkOptions {
  readonly connections: number;
  readonly durationS: number;
  readonly cpu: number;
  readonly headers?: Readonly<Record<string, string>>;
}

export async function wrk(url: string, o: WrkOptions): Promise<LoadResult> {
  const args = ['-t1', `-c${o.connections}`, `-d${o.durationS}s`, '--latency'];
  for (const [name, value] of Object.entries(o.headers ?? {})) args.push('-H', `${name}: ${value}`);
  args.push(url);
  const output = await runChild('wrk', 'wrk', args, o.durationS * 1000 + OVERRUN_MS, { cpu: o.cpu });
  return parseWrk(output);
}

/** Parses wrk's text report: `Requests/sec:`, the `--latency` percentiles, and error lines. */
export function parseWrk(text: string): LoadResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  if (!rps) throw new Error(`wrk: no Requests/sec line in:\n${text}`);
  const percentile = (p: string): number => {
    const match = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)\\b`, 'm').exec(text);
    if (!match) throw new Error(`wrk: no ${p}% latency line in:\n${text}`);
    const value = Number(match[1]);
    return match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value;
  };
  let errors = 0;
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  if (non2xx) errors += Number(non2xx[1]);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  if (socket) errors += socket.slice(1).reduce((sum, n) => sum + Number(n), 0);
  return { rps: Number(rps[1]), p50Ms: percentile('50'), p99Ms: percentile('99'), errors };
}

function parseJsonLine<T>(text: string): T {
  const line = text.split('\n').find((l) => l.startsWith('{'));
  if (!line) throw new Error(`autocannon printed no JSON:\n${text.slice(-2_000)}`);
  return JSON.parse(line) as T;
}
