// The container image runs the JavaScript build (`npm run build`), not the TypeScript sources: the build must hold
// every file the program reads at run time, and the worker threads must start from it, as JavaScript. A module that
// names a `.ts` path at run time, or a non-code file the build does not copy, fails here rather than in production.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { send, startUpstream, until, type Upstream } from './support/harness.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BUILT_CLI = join(ROOT, 'dist/cli/index.js');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

let upstream: Upstream | undefined;
let child: ChildProcess | undefined;
let dir: string | undefined;

beforeAll(async () => {
  await promisify(execFile)(NPM, ['run', 'build'], { cwd: ROOT });
}, 60_000);

afterAll(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await upstream?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function files(at: string): Promise<string[]> {
  const entries = await readdir(at, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(at.length + 1));
}

test('the build has a JavaScript module for every source module and the files they read, and no TypeScript', async () => {
  const built = await files(join(ROOT, 'dist'));
  // Declaration files (a type for a module path) compile to nothing.
  const sources = (await files(join(ROOT, 'src'))).filter((f) => !f.endsWith('.test.ts') && !f.endsWith('.d.ts'));
  const expected = sources.map((f) => f.replace(/\.ts$/, '.js')).sort();
  expect(built.sort()).toEqual(expected);
});

test('the built program serves from two worker threads started as JavaScript, and its dashboard', async () => {
  upstream = await startUpstream((_req, res) => res.end('ok'));
  dir = await mkdtemp(join(tmpdir(), 'meridian-build-'));
  const file = join(dir, 'meridian.yaml');
  await writeFile(
    file,
    `self: { region: local, zone: az-1 }
workers: 2
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
health: { interval: 1h }
regions:
  local: { location: [50.11, 8.68], zones: { az-1: { endpoints: ['${upstream.origin}'] } } }
shutdown: { drainDelay: 0s }
`,
  );
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('MERIDIAN_')));
  // Type stripping off: a worker that tried to load a .ts module would fail to start.
  const proc = spawn(process.execPath, ['--no-experimental-strip-types', BUILT_CLI, 'start', '--config', file], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child = proc;
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  proc.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const match = await until(() => (proc.exitCode === null ? /http on 127\.0\.0\.1:(\d+), admin on 127\.0\.0\.1:(\d+)/.exec(stdout) : Promise.reject(new Error(stderr))), 'the listening ports', 15_000, 20);
  const [proxyPort, adminPort] = [Number(match[1]), Number(match[2])];

  // Fresh connections, which the kernel spreads over both workers.
  const replies = await Promise.all(Array.from({ length: 40 }, () => send(proxyPort)));
  expect(replies.map((r) => r.status)).toEqual(Array(40).fill(200));
  const status = (await (await fetch(`http://127.0.0.1:${adminPort}/status`)).json()) as { workers: { mode: string; threads: { requests: number }[] } };
  expect(status.workers.mode).toBe('workers');
  expect(status.workers.threads.map((t) => t.requests).reduce((a, b) => a + b)).toBe(40);
  expect(status.workers.threads.every((t) => t.requests > 0)).toBe(true);

  const dashboard = await fetch(`http://127.0.0.1:${adminPort}/`);
  expect(dashboard.status).toBe(200);
  expect(await dashboard.text()).toContain('<html');
  expect(stderr).not.toMatch(/ExperimentalWarning|Error/);
}, 60_000);
