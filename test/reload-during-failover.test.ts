// A reload that removes endpoints while a request is failing over: the retry must go to the endpoint its own
// snapshot named (never to whatever now sits at that endpoint number), the process must not crash, and the
// removed endpoints' pools close once the last exchange that could reach them has ended.
import { afterEach, expect, test } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { loadConfigFile } from '../src/config/load.ts';
import { startMeridian, type Meridian } from '../src/main.ts';
import { rawConfig, send, startUpstream, until, type Upstream } from './support/harness.ts';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

interface World {
  readonly meridian: Meridian;
  readonly local: Upstream;
  /** The two fallback regions' endpoints: `fallback-1` and `fallback-2` in the first config. */
  readonly near: Upstream;
  readonly far: Upstream;
  /** The connection near last served a request on: one of its pool's. */
  nearSocket(): Socket | undefined;
  /** The request the local endpoint holds, until the test resets it. */
  held(): ServerResponse | undefined;
  reloadTo(origins: string[]): Promise<void>;
}

async function world(): Promise<World> {
  let held: ServerResponse | undefined;
  const local = await startUpstream((_req, res) => {
    held = res;
  });
  let nearSocket: Socket | undefined;
  const near = await startUpstream((req, res) => {
    nearSocket = req.socket;
    res.end('near');
  });
  const far = await startUpstream((_req, res) => res.end('far'));
  for (const u of [local, near, far]) {
    // Only Meridian may close its pooled connections in these tests.
    u.server.keepAliveTimeout = 60_000;
    cleanup.push(() => u.close());
  }
  const dir = await mkdtemp(join(tmpdir(), 'meridian-reload-failover-'));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'meridian.json');
  const write = (origins: string[]) => writeFile(path, JSON.stringify(rawConfig(origins, { outlierDetection: { consecutiveFailures: 100 } })));
  await write([local.origin, near.origin, far.origin]);
  const meridian = await startMeridian(await loadConfigFile(path, {}), { configPath: path });
  cleanup.push(() => meridian.shutdown());
  return {
    meridian,
    local,
    near,
    far,
    held: () => held,
    nearSocket: () => nearSocket,
    reloadTo: async (origins) => {
      await write(origins);
      const result = await meridian.runtime.reload();
      expect(result.ok).toBe(true);
    },
  };
}

test('a retry after a reload that renumbered the endpoints goes to the endpoint its snapshot named', async () => {
  const w = await world();
  const reply = send(w.meridian.proxyAddress.port, { path: '/v1/storage/files' });
  const held = await until(() => w.held(), 'the local endpoint to hold the request');
  // fallback-1 goes away: far's endpoint number becomes the one near had.
  await w.reloadTo([w.local.origin, w.far.origin]);
  held.socket!.destroy();
  const answer = await reply;
  expect(answer.status).toBe(200);
  expect(answer.body.toString()).toBe('near');
  expect(w.far.requests).toBe(0);
});

test('a retry after a reload that removed its next endpoint does not crash and is served by it', async () => {
  const w = await world();
  const reply = send(w.meridian.proxyAddress.port, { path: '/v1/databases' });
  const held = await until(() => w.held(), 'the local endpoint to hold the request');
  await w.reloadTo([w.local.origin]);
  held.socket!.destroy();
  const answer = await reply;
  expect(answer.status).toBe(200);
  expect(answer.body.toString()).toBe('near');
  // The process is still serving, on the new snapshot.
  const after = send(w.meridian.proxyAddress.port, { path: '/next' });
  await until(() => w.held() !== held && w.held(), 'the next request to reach the local endpoint');
  w.held()!.end('local');
  expect((await after).body.toString()).toBe('local');
});

test('the pool of a removed endpoint closes once the last exchange that could use it has ended', async () => {
  const w = await world();
  // A keep-alive connection to near, then a request held by local while near is removed.
  await w.reloadTo([w.near.origin, w.local.origin]);
  expect((await send(w.meridian.proxyAddress.port)).body.toString()).toBe('near');
  const pooled = w.nearSocket()!;
  await w.reloadTo([w.local.origin, w.near.origin]);
  const reply = send(w.meridian.proxyAddress.port, { path: '/held' });
  const held = await until(() => w.held(), 'the local endpoint to hold the request');
  await w.reloadTo([w.local.origin]);
  // The held exchange could still fail over to near, so near's pool stays open for it.
  expect(pooled.closed).toBe(false);
  held.end('local');
  expect((await reply).body.toString()).toBe('local');
  // Well before undici's keep-alive timeout (30 s) would have closed it.
  await until(() => pooled.closed, "near's pool to close", 2_000);
});

test('an exchange in flight on an endpoint the reload removed finishes there, and new requests use the new list', async () => {
  const w = await world();
  const reply = send(w.meridian.proxyAddress.port, { path: '/v1/account' });
  const held = await until(() => w.held(), 'the local endpoint to hold the request');
  await w.reloadTo([w.near.origin, w.far.origin]);
  held.end('local');
  const answer = await reply;
  expect(answer.status).toBe(200);
  expect(answer.body.toString()).toBe('local');
  expect((await send(w.meridian.proxyAddress.port)).body.toString()).toBe('near');
});
