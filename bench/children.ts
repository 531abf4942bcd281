// Every process the bench starts: optionally pinned to one CPU with taskset, tracked, and killed by PID.
import { request } from 'node:http';
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';

/** Keep at most this much of a server's output: enough for an error message, never a growing buffer. */
const TAIL_BYTES = 8 * 1024;
const STOP_GRACE_MS = 5_000;

export function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

export const CAN_PIN = hasCommand('taskset');

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  /** stdout and stderr so far (the tail only, unless started with `keepOutput`). */
  output(): string;
  /** Resolves with the exit code (or the signal name) once the process is gone. */
  readonly exited: Promise<number | string>;
}

const running = new Set<Child>();

export interface StartOptions extends Pick<SpawnOptions, 'cwd' | 'env'> {
  /** The CPU to pin to; ignored when taskset is missing. */
  cpu?: number;
  /** Keep all output (load generators print their results), not just the tail. */
  keepOutput?: boolean;
}

export function startChild(name: string, command: string, args: readonly string[], options: StartOptions = {}): Child {
  const pinned = options.cpu !== undefined && CAN_PIN;
  // taskset execs the command, so the PID we track is the process itself, not a wrapper.
  const proc = pinned
    ? spawn('taskset', ['-c', String(options.cpu), command, ...args], { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  const append = (chunk: Buffer): void => {
    text += chunk.toString('utf8');
    if (!options.keepOutput && text.length > TAIL_BYTES) text = text.slice(-TAIL_BYTES);
  };
  // Always drain both pipes: a child blocked on a full pipe would skew or stall the run.
  proc.stdout!.on('data', append);
  proc.stderr!.on('data', append);
  const exited = new Promise<number | string>((resolve) => {
    proc.once('error', (err) => {
      text += `\n${err.message}`;
      resolve('spawn-error');
    });
    proc.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  const child: Child = { name, proc, output: () => text, exited };
  running.add(child);
  void exited.then(() => running.delete(child));
  return child;
}

/** SIGTERM, then SIGKILL after a grace period; resolves when the process is gone. */
export async function stopChild(child: Child): Promise<void> {
  if (!running.has(child)) return;
  signal(child, 'SIGTERM');
  const timer = setTimeout(() => signal(child, 'SIGKILL'), STOP_GRACE_MS);
  await child.exited;
  clearTimeout(timer);
}

/** Last resort on error, Ctrl-C or exit: synchronous, so it also works inside an 'exit' handler. */
export function killAllChildren(): void {
  for (const child of running) signal(child, 'SIGKILL');
}

/**
 * Runs a benchmark's `main` to its exit code. However it ends (done, thrown, or a signal), every child process it
 * started is stopped and its scratch directory `tmp` removed.
 */
export function runBench(main: () => Promise<number>, tmp: string): void {
  process.on('exit', killAllChildren);
  for (const name of ['SIGINT', 'SIGTERM'] as const) {
    process.once(name, () => {
      console.error(`\nbench: ${name}, stopping every child process`);
      killAllChildren();
      rmSync(tmp, { recursive: true, force: true });
      process.exit(130);
    });
  }
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(`bench: ${(err as Error).stack ?? String(err)}`);
      killAllChildren();
      rmSync(tmp, { recursive: true, force: true });
      process.exitCode = 1;
    },
  );
}

/** Runs a command to completion and returns its output; rejects on a non-zero exit or after `timeoutMs`. */
export async function runChild(name: string, command: string, args: readonly string[], timeoutMs: number, options: StartOptions = {}): Promise<string> {
  const child = startChild(name, command, args, { ...options, keepOutput: true });
  const timer = setTimeout(() => signal(child, 'SIGKILL'), timeoutMs);
  const status = await child.exited;
  clearTimeout(timer);
  if (status !== 0) throw new Error(`${name} exited with ${status}:\n${child.output().slice(-2_000)}`);
  return child.output();
}

/** Resident set size of a live process in MiB, now or at its peak, from /proc (null where /proc is missing). */
export function rssMiB(child: Child, which: 'now' | 'peak'): number | null {
  try {
    const status = readFileSync(`/proc/${child.proc.pid}/status`, 'utf8');
    const match = (which === 'now' ? /^VmRSS:\s+(\d+) kB/m : /^VmHWM:\s+(\d+) kB/m).exec(status);
    return match ? Number(match[1]) / 1024 : null;
  } catch {
    return null;
  }
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

/** CPU time (user + system, all threads) a live process has used so far, in seconds; null where /proc is missing. */
export function cpuSeconds(child: Child): number | null {
  try {
    const stat = readFileSync(`/proc/${child.proc.pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 of the whole line.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** A port that was free a moment ago; the tiny race is acceptable on a loopback bench. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function signal(child: Child, name: NodeJS.Signals): void {
  const pid = child.proc.pid;
  if (pid === undefined || child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}

/** The status of a GET to `url`, or 0 when nothing answered within a second: how the benches wait for a server. */
export function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { agent: false, timeout: 1_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}
