// Graceful shutdown (DESIGN.md §7): readiness turns 503 first, requests are still served through the drain delay,
// then the listener closes, in-flight exchanges finish (up to drainTimeout), and `meridian start` exits 0 on SIGTERM.
import { afterEach, describe, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { json, readBody, send, startProxy, startUpstream, until, type Overrides, type RunningProxy, type Upstream } from './support/harness.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'src/cli/index.ts');

let upstream: Upstream | undefined;
let proxy: RunningProxy | undefined;
const held: ServerResponse[] = [];

afterEach(async () => {
  await proxy?.shutdown();
  await upstream?.close();
  proxy = undefined;
  upstream = undefined;
  held.length = 0;
});

/** An upstream that holds `/slow` until the test releases it and answers everything else at once. */
async function setup(overrides: Overrides = {}): Promise<RunningProxy> {
  upstream = await startUpstream((req, res) => {
    if (req.url === '/slow') held.push(res);
    else res.end('fast');
  });
  proxy = await startProxy([upstream.origin], overrides);
  return proxy;
}

describe('shutdown()', () => {
  test('lets a request in flight finish with its whole body, while new connections are refused', async () => {
    const { port } = await setup({ shutdown: { drainDelay: 0, drainTimeout: '10s' } });
    const inFlight = send(port, { path: '/slow' });
    await until(() => held.length === 1, 'the slow request at the upstream');

    let stopped = false;
    const stopping = proxy!.shutdown().then(() => (stopped = true));
    await expect(send(port, { path: '/fast' })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(stopped).toBe(false);

    const body = Buffer.alloc(512 * 1024, 'm');
    held[0].writeHead(200, { 'content-length': body.length });
    held[0].end(body);
    const reply = await inFlight;
    expect(reply.status).toBe(200);
    expect(reply.body.equals(body)).toBe(true);
    await stopping;
    expect(stopped).toBe(true);
  });

  test('turns readiness 503 at once and keeps serving through the drain delay', async () => {
    const { port, adminPort } = await setup({ shutdown: { drainDelay: '500ms' } });
    const before = await send(adminPort, { path: '/readyz' });
    expect(before.status).toBe(200);

    const stopping = proxy!.shutdown();
    const during = await send(adminPort, { path: '/readyz' });
    expect(during.status).toBe(503);
    expect(json(during)).toMatchObject({ reason: 'draining: shutting down' });
    // Still serving, but telling keep-alive clients to reconnect (to another instance) afterwards.
    const served = await send(port, { path: '/fast', headers: { connection: 'keep-alive' } });
    expect(served.status).toBe(200);
    expect(served.body.toString()).toBe('fast');
    expect(served.headers.connection).toBe('close');

    await stopping;
    await expect(send(port, { path: '/fast' })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(send(adminPort, { path: '/readyz' })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  test('closes idle keep-alive connections when it stops accepting', async () => {
    const { port } = await setup();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/fast', agent });
      req.end();
      const [res] = (await once(req, 'response')) as [IncomingMessage];
      await readBody(res);
      const socket = req.socket!;
      expect(socket.destroyed).toBe(false);
      const closed = once(socket, 'close');
      await proxy!.shutdown();
      await closed;
    } finally {
      agent.destroy();
    }
  });

  test('cuts an exchange still running after drainTimeout, so shutdown is bounded', async () => {
    const { port } = await setup({ shutdown: { drainDelay: 0, drainTimeout: '200ms' } });
    const req = httpRequest({ host: '127.0.0.1', port, path: '/slow', agent: false });
    const failed = once(req, 'error');
    req.end();
    await until(() => held.length === 1, 'the slow request at the upstream');
    const startedAt = performance.now();
    await proxy!.shutdown();
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(190);
    const [err] = (await failed) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ECONNRESET');
  });
});

describe('meridian start', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  test('serves with a config file and exits 0 on SIGTERM', async () => {
    upstream = await startUpstream((_req, res) => res.end('from upstream'));
    dir = await mkdtemp(join(tmpdir(), 'meridian-start-'));
    const config = join(dir, 'meridian.yaml');
    await writeFile(
      config,
      `self: { region: local, zone: az-1 }
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
regions:
  local:
    location: [50.11, 8.68]
    zones:
      az-1: { endpoints: ['${upstream.origin}'] }
shutdown: { drainDelay: 100ms, drainTimeout: 5s }
`,
    );
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('MERIDIAN_')));
    const child = spawn(process.execPath, [CLI, 'start', '--config', config], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    try {
      const [, proxyPort, adminPort] = await until(
        () => /http on 127\.0\.0\.1:(\d+), admin on 127\.0\.0\.1:(\d+)/.exec(stdout) ?? (child.exitCode !== null ? Promise.reject(new Error(stderr)) : null),
        'meridian start to report its ports',
        15_000,
        20,
      );
      const reply = await send(Number(proxyPort), { path: '/v1/health/version' });
      expect(reply.body.toString()).toBe('from upstream');
      expect((await send(Number(adminPort), { path: '/readyz' })).status).toBe(200);

      child.kill('SIGTERM');
      const [code, signal] = await exited;
      expect({ code, signal, stderr }).toEqual({ code: 0, signal: null, stderr: '' });
      expect(stdout).toContain('SIGTERM, draining');
      expect(stdout).toContain('stopped');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
