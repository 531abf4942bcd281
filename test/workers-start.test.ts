// The worker count a config gets when it names none, and `meridian start` as operators run it: SIGTERM drains every
// data-plane worker, not just the one that happens to hold the first request.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, test } from 'vitest';
import { compileConfig } from '../src/config/compile.ts';
import { usableCpus } from '../src/control/cpus.ts';
import { startDemo } from '../src/demo/run.ts';
import { startMeridian, type Meridian } from '../src/main.ts';
import { json, rawConfig, send, startUpstream, until, type Reply, type Upstream } from './support/harness.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'src/cli/index.ts');

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface WorkersView {
  readonly mode: string;
  readonly threads: readonly { readonly slot: number; readonly requests: number; readonly connections: number }[];
}

async function workersOf(adminPort: number): Promise<WorkersView> {
  return (json(await send(adminPort, { path: '/status' })) as unknown as { workers: WorkersView }).workers;
}

test('a config that names no worker count starts one data-plane thread per CPU this process may use', async () => {
  const upstream = await startUpstream((_req, res) => res.end('ok'));
  cleanups.push(() => upstream.close());
  const raw = rawConfig([upstream.origin]);
  delete raw.workers;
  const config = compileConfig(raw, {});
  expect(config.workers).toBe('auto');
  const meridian: Meridian = await startMeridian(config);
  cleanups.push(() => meridian.shutdown());

  const cpus = usableCpus();
  const { mode, threads } = await workersOf(meridian.adminAddress.port);
  expect({ mode, threads: threads.length }).toEqual({ mode: cpus > 1 ? 'workers' : 'in-process', threads: cpus });
  expect((await send(meridian.proxyAddress.port)).body.toString()).toBe('ok');
});

test('the demo runs as shipped: workers: auto, one data-plane thread per usable CPU', async () => {
  const demo = await startDemo({ listenPort: 0, adminPort: 0, httpsPort: 0, probePort: 0 });
  cleanups.push(() => demo.stop());
  expect(demo.config.workers).toBe('auto');
  const cpus = usableCpus();
  const { mode, threads } = demo.meridian.runtime.workers();
  expect({ mode, threads: threads.length }).toEqual({ mode: cpus > 1 ? 'workers' : 'in-process', threads: cpus });
  const res = await fetch(`http://127.0.0.1:${demo.meridian.proxyAddress.port}/v1/health/version`);
  expect([res.status, res.headers.get('x-meridian-region')]).toEqual([200, 'us-east']);
});

/** `meridian start --config FILE` as a child process, with what it printed so far; `nodeArgs` go to node first. */
async function meridianStart(configText: string, nodeArgs: readonly string[] = []): Promise<{ child: ChildProcess; output: () => { stdout: string; stderr: string }; proxyPort: number; adminPort: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'meridian-workers-start-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'meridian.yaml');
  await writeFile(file, configText);
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('MERIDIAN_')));
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'start', '--config', file], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [, proxyPort, adminPort] = await until(
    () => /http on 127\.0\.0\.1:(\d+), admin on 127\.0\.0\.1:(\d+)/.exec(stdout) ?? (child.exitCode !== null ? Promise.reject(new Error(stderr)) : null),
    'meridian start to report its ports',
    20_000,
    20,
  );
  return { child, output: () => ({ stdout, stderr }), proxyPort: Number(proxyPort), adminPort: Number(adminPort) };
}

function twoWorkerConfig(origin: string): string {
  return `self: { region: local, zone: az-1 }
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
health: { interval: 1h }
workers: 2
regions:
  local:
    location: [50.11, 8.68]
    zones:
      az-1: { endpoints: ['${origin}'] }
shutdown: { drainDelay: 0s, drainTimeout: 10s }
`;
}

test('an uncaught exception on the control plane takes the whole process down, workers and listeners with it', async () => {
  const upstream = await startUpstream((_req, res) => res.end('ok'));
  cleanups.push(() => upstream.close());
  // A stand-in for a bug on the main thread: SIGUSR2 throws there, outside any handler Meridian has.
  const crash = `data:text/javascript,process.on('SIGUSR2', () => { throw new Error('control plane bug'); });`;
  const { child, output, proxyPort, adminPort } = await meridianStart(twoWorkerConfig(upstream.origin), ['--import', crash]);
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  expect((await workersOf(adminPort)).mode).toBe('workers');
  expect((await send(proxyPort)).status).toBe(200);

  child.kill('SIGUSR2');
  const [code] = await Promise.race([exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('meridian still runs 10 s after the exception')), 10_000).unref())]);
  expect(code).not.toBe(0);
  expect(output().stderr).toContain('control plane bug');
  // No worker outlived it: the port the workers shared takes no connection.
  await expect(send(proxyPort)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
});

test('SIGTERM to meridian start drains both workers: requests each one holds finish with 200, new connections are refused, and it exits 0', async () => {
  const held: ServerResponse[] = [];
  const upstream: Upstream = await startUpstream((req, res) => {
    if (req.url === '/slow') held.push(res);
    else res.end('fast');
  });
  cleanups.push(() => upstream.close());
  cleanups.push(async () => {
    for (const res of held) res.end();
  });
  const { child, output, proxyPort, adminPort } = await meridianStart(twoWorkerConfig(upstream.origin));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  expect((await workersOf(adminPort)).mode).toBe('workers');

  // Slow requests on fresh connections until each worker holds one: the kernel picks the worker, /status tells which.
  const inFlight: Promise<Reply>[] = [];
  const holding = new Set<number>();
  for (let attempt = 0; attempt < 30 && holding.size < 2; attempt++) {
    const before = (await workersOf(adminPort)).threads.map((t) => t.requests);
    const reply = send(proxyPort, { path: '/slow' });
    // Awaited all together below; one cut meanwhile must fail the test there, not as an unhandled rejection.
    reply.catch(() => {});
    inFlight.push(reply);
    await until(() => held.length === inFlight.length, 'the slow request at the upstream');
    const after = (await workersOf(adminPort)).threads.map((t) => t.requests);
    holding.add(after.findIndex((n, slot) => n > before[slot]));
  }
  expect([...holding].sort()).toEqual([0, 1]);

  child.kill('SIGTERM');
  await until(() => output().stdout.includes('SIGTERM, draining'), 'meridian to start draining');
  // Every worker closed its listener: a new connection finds none to take it.
  await until(
    () => send(proxyPort).then(
      () => false,
      (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED',
    ),
    'new connections to be refused',
  );
  expect(child.exitCode).toBeNull();

  for (const res of held) res.end('done');
  const replies = await Promise.all(inFlight);
  expect(replies.map((r) => [r.status, r.body.toString()])).toEqual(Array(inFlight.length).fill([200, 'done']));
  const [code, signal] = await exited;
  expect({ code, signal, stderr: output().stderr }).toEqual({ code: 0, signal: null, stderr: '' });
  expect(output().stdout).toContain('stopped');
}, 30_000);
