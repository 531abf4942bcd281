// The access log writes one JSON line per finished request with the fields operators search by, keeps query strings
// out unless asked, always logs errors when sampling, writes nothing when off, and follows a config reload.
import { afterEach, describe, expect, test } from 'vitest';
import { request } from 'node:http';
import type { ServerResponse } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileConfig } from '../src/config/compile.ts';
import { loadConfigFile } from '../src/config/load.ts';
import { startMeridian, type Meridian } from '../src/main.ts';
import type { LogDestination } from '../src/observe/access-log.ts';
import { deadPort, rawConfig, send, startUpstream, until, type Overrides, type Upstream } from './support/harness.ts';

const LONDON = '81.2.69.142';
const FIELDS = ['level', 'time', 'requestId', 'clientIp', 'country', 'method', 'host', 'path', 'status', 'bytes', 'durationMs', 'region', 'zone', 'endpoint', 'attempts', 'reason'];

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Collects what the log writes (a turn's lines come as one write), parsed line by line. */
function capture(): LogDestination & { readonly lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return {
    lines,
    write(batch: string) {
      expect(batch.endsWith('\n')).toBe(true);
      for (const line of batch.slice(0, -1).split('\n')) lines.push(JSON.parse(line) as Record<string, unknown>);
    },
  };
}

/** Lines reach the destination once per event-loop turn; this resolves after the current turn's batch. */
const endOfTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const held: ServerResponse[] = [];
async function upstream(): Promise<Upstream> {
  const started = await startUpstream((req, res) => {
    req.resume();
    if (req.url === '/boom') res.writeHead(500).end('boom');
    else if (req.url === '/hang') held.push(res);
    else res.end('hello');
  });
  cleanups.push(() => started.close());
  return started;
}

async function meridian(origins: string[], accessLog: Record<string, unknown>, destination: LogDestination, overrides: Overrides = {}): Promise<Meridian> {
  const config = compileConfig(rawConfig(origins, { accessLog, geo: { trustedProxies: ['127.0.0.1/32'] }, ...overrides }), {});
  const started = await startMeridian(config, { accessLog: destination });
  cleanups.push(() => started.shutdown());
  return started;
}

/** A request the upstream holds, abandoned by the client once the upstream has it. */
async function abandon(port: number): Promise<void> {
  const before = held.length;
  const req = request({ host: '127.0.0.1', port, path: '/hang', agent: false });
  req.on('error', () => {});
  req.end();
  await until(() => held.length > before, 'the upstream to hold /hang');
  req.destroy();
}

describe('access log', () => {
  test('on: one line per request with every field, and no query string', async () => {
    const up = await upstream();
    const log = capture();
    const { proxyAddress } = await meridian([up.origin], { mode: 'on' }, log);
    const port = proxyAddress.port;

    await send(port, { path: '/v1/account?secret=jwt&project=p1', headers: { 'x-request-id': 'req-1', 'x-forwarded-for': LONDON } });
    await send(port, { method: 'POST', path: '/v1/storage/files', body: 'chunk' });
    await send(port, { method: 'HEAD', path: '/v1/health' });
    await until(() => log.lines.length === 3, 'three lines');

    const [first, post, head] = log.lines;
    expect(Object.keys(first)).toEqual(FIELDS);
    expect(first).toEqual({
      level: 30,
      time: expect.any(Number),
      requestId: 'req-1',
      clientIp: LONDON,
      country: 'GB',
      method: 'GET',
      host: `127.0.0.1:${port}`,
      path: '/v1/account',
      status: 200,
      bytes: 5,
      durationMs: expect.any(Number),
      region: 'local',
      zone: 'az-1',
      endpoint: up.origin,
      attempts: 1,
      reason: expect.stringMatching(/^nearest region local/),
    });
    expect(first.durationMs).toBeGreaterThan(0);
    expect(Math.abs((first.time as number) - Date.now())).toBeLessThan(60_000);
    expect(post).toMatchObject({ method: 'POST', path: '/v1/storage/files', status: 200, clientIp: '127.0.0.1', country: null, reason: expect.stringMatching(/^location unknown/) });
    expect(post.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(head).toMatchObject({ method: 'HEAD', status: 200, bytes: 0 });
  });

  test("on: Meridian's own errors carry their code and the size of the JSON body", async () => {
    const log = capture();
    const dead = `http://127.0.0.1:${await deadPort()}`;
    const { proxyAddress } = await meridian([dead], { mode: 'on' }, log);
    const reply = await send(proxyAddress.port, { path: '/v1/databases' });
    expect(reply.status).toBe(502);
    await until(() => log.lines.length === 1, 'one line');
    expect(log.lines[0]).toMatchObject({ status: 502, bytes: reply.body.length, endpoint: dead, attempts: 1, error: 'MERIDIAN_UPSTREAM_CONNECT' });
  });

  test('includeQuery keeps the query string', async () => {
    const up = await upstream();
    const log = capture();
    const { proxyAddress } = await meridian([up.origin], { mode: 'on', includeQuery: true }, log);
    await send(proxyAddress.port, { path: '/v1/realtime?project=p1&channels[]=files' });
    await until(() => log.lines.length === 1, 'one line');
    expect(log.lines[0].path).toBe('/v1/realtime?project=p1&channels[]=files');
  });

  test('sampled: errors (status ≥ 500, no response) are always logged', async () => {
    const up = await upstream();
    const log = capture();
    // A rate this small logs no success in practice, so every line below is there because it is an error.
    const { proxyAddress } = await meridian([up.origin], { mode: 'sampled', sampleRate: 1e-12 }, log);
    const port = proxyAddress.port;
    for (let i = 0; i < 10; i++) expect((await send(port)).status).toBe(200);
    expect((await send(port, { path: '/boom' })).status).toBe(500);
    await abandon(port);
    await until(() => log.lines.length === 2, 'the abandoned request');

    expect(log.lines[0]).toMatchObject({ path: '/boom', status: 500, bytes: 4 });
    expect(log.lines[0]).not.toHaveProperty('error');
    expect(log.lines[1]).toMatchObject({ path: '/hang', status: null, bytes: 0, error: 'MERIDIAN_DOWNSTREAM_ABORTED' });
  });

  test('off: nothing is written', async () => {
    const up = await upstream();
    const log = capture();
    const started = await meridian([up.origin], { mode: 'off' }, log);
    const port = started.proxyAddress.port;
    for (let i = 0; i < 5; i++) await send(port, { path: i === 0 ? '/boom' : '/' });
    await abandon(port);
    // The summary hears the same event a logger would; a logger writes its lines at the end of that turn.
    await until(() => started.runtime.summary.snapshot().zones[0]?.requests === 6, 'six finished requests');
    await endOfTurn();
    expect(log.lines).toEqual([]);
  });

  test('a reload that turns the log on starts it, and one that turns it off stops it', async () => {
    const up = await upstream();
    const log = capture();
    const dir = await mkdtemp(join(tmpdir(), 'meridian-access-log-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'meridian.yaml');
    const yaml = (mode: string): string =>
      [
        'self: { region: local, zone: az-1 }',
        // The test's own log destination works only with the data plane on this thread.
        'workers: 1',
        'listen: { host: 127.0.0.1, port: 0 }',
        'admin: { host: 127.0.0.1, port: 0 }',
        'regions:',
        `  local: { location: [50.11, 8.68], zones: { az-1: { endpoints: ["${up.origin}"] } } }`,
        'health: { interval: 1h }',
        'shutdown: { drainDelay: 0 }',
        `accessLog: { mode: ${mode} }`,
        '',
      ].join('\n');
    await writeFile(file, yaml('off'));
    const started = await startMeridian(await loadConfigFile(file), { configPath: file, accessLog: log });
    cleanups.push(() => started.shutdown());
    const port = started.proxyAddress.port;

    await send(port, { path: '/before' });
    await writeFile(file, yaml('on'));
    expect(await started.runtime.reload()).toMatchObject({ ok: true });
    await send(port, { path: '/during' });
    await writeFile(file, yaml('off'));
    expect(await started.runtime.reload()).toMatchObject({ ok: true });
    await send(port, { path: '/after' });
    await until(() => started.runtime.summary.snapshot().zones[0]?.requests === 3, 'three requests');
    await endOfTurn();
    expect(log.lines.map((line) => line.path)).toEqual(['/during']);
  });
});
