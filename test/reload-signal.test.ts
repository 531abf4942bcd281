// SIGHUP reloads `meridian start`'s config file: a good file is swapped in, a bad one (an empty one too) is rejected
// with its field paths while the old config keeps serving, a field that waits for a restart is named in the log
// line, and every outcome is counted in the reload metric.
import { afterEach, expect, test } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { send, startUpstream, until, type Upstream } from './support/harness.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'src/cli/index.ts');

let upstream: Upstream | undefined;
let child: ChildProcess | undefined;
let dir: string | undefined;

afterEach(async () => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  await upstream?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  child = upstream = dir = undefined;
});

function configText(origin: string, extra: string): string {
  return `self: { region: local, zone: az-1 }
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
health: { interval: 1h }
regions:
  local:
    location: [50.11, 8.68]
    zones:
      az-1: { endpoints: ['${origin}'] }
shutdown: { drainDelay: 0s }
${extra}`;
}

test('SIGHUP swaps in a good config, rejects a bad or empty one, names restart-only changes, and counts them all', async () => {
  upstream = await startUpstream((_req, res) => res.end('ok'));
  dir = await mkdtemp(join(tmpdir(), 'meridian-sighup-'));
  const file = join(dir, 'meridian.yaml');
  await writeFile(file, configText(upstream.origin, ''));
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('MERIDIAN_')));
  const proc = spawn(process.execPath, [CLI, 'start', '--config', file], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child = proc;
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  proc.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [, proxyPortText, adminPortText] = await until(() => /http on 127\.0\.0\.1:(\d+), admin on 127\.0\.0\.1:(\d+)/.exec(stdout), 'the listening ports', 15_000, 20);
  const proxyPort = Number(proxyPortText);
  const adminPort = Number(adminPortText);
  expect((await send(proxyPort)).headers['x-meridian-region']).toBeUndefined();

  await writeFile(file, configText(upstream.origin, 'headers: { routingHeaders: true }\n'));
  proc.kill('SIGHUP');
  await until(async () => (await send(proxyPort)).headers['x-meridian-region'] === 'local', 'the reloaded config to serve');
  expect(stderr).toContain('config reloaded (version 2)');

  await writeFile(file, configText(upstream.origin, 'headers: { routingHeaders: maybe }\n'));
  proc.kill('SIGHUP');
  await until(() => stderr.includes('reload rejected'), 'the bad config to be rejected');
  expect(stderr).toContain('headers.routingHeaders');
  const reply = await send(proxyPort);
  expect(reply.status).toBe(200);
  expect(reply.headers['x-meridian-region']).toBe('local');

  // An empty file is a problem at the root like any other, not a crash.
  await writeFile(file, '');
  proc.kill('SIGHUP');
  await until(() => stderr.includes('(root): the config file is empty'), 'the empty file to be rejected');
  expect((await send(proxyPort)).headers['x-meridian-region']).toBe('local');

  // A new port waits for a restart, and the log line says so while the old listener keeps serving.
  await writeFile(file, configText(upstream.origin, 'headers: { routingHeaders: true }\n').replace('listen: { host: 127.0.0.1, port: 0 }', 'listen: { host: 127.0.0.1, port: 1 }'));
  proc.kill('SIGHUP');
  await until(() => stderr.includes('config reloaded (version 3)'), 'the port change to be reloaded');
  expect(stderr).toContain('config reloaded (version 3); these fields change only after a restart: listen.port');
  expect((await send(proxyPort)).status).toBe(200);

  const metrics = (await send(adminPort, { path: '/metrics' })).body.toString();
  expect(metrics).toMatch(/meridian_config_reloads_total\{result="success"\} 2\b/);
  expect(metrics).toMatch(/meridian_config_reloads_total\{result="failure"\} 2\b/);
});
