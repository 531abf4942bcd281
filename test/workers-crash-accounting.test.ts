// A worker that dies holding exchanges must not take process-wide capacity with it: the circuit-breaker slots and the
// in-flight counts it held live in shared memory, and the control plane gives them back once the thread has exited.
import type { ServerResponse } from 'node:http';
import { afterEach, expect, it } from 'vitest';
import { send, startProxy, startUpstream, until, type RunningProxy, type Upstream } from './support/harness.ts';

const LIMIT = 4;
const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Status {
  readonly traffic: { readonly inflight: number };
  readonly topology: { readonly regions: readonly { readonly zones: readonly { readonly endpoints: readonly { readonly inflight: number }[] }[] }[] };
  readonly workers: { readonly restarts: number; readonly threads: readonly { readonly slot: number; readonly listening: boolean; readonly requests: number }[] };
}

async function status(proxy: RunningProxy): Promise<Status> {
  const response = await fetch(`http://127.0.0.1:${proxy.adminPort}/status`);
  return (await response.json()) as Status;
}

const endpointInflight = (s: Status): number => s.topology.regions[0].zones[0].endpoints[0].inflight;

/** An upstream that holds every request open until the test lets go; `held` are those still open. */
async function holdingUpstream(): Promise<{ upstream: Upstream; held: Set<ServerResponse> }> {
  const held = new Set<ServerResponse>();
  const upstream = await startUpstream((req, res) => {
    req.resume();
    held.add(res);
    res.on('close', () => held.delete(res));
  });
  return { upstream, held };
}

it('a worker that dies holding exchanges gives their circuit slots and in-flight counts back to the process', async () => {
  const { upstream, held } = await holdingUpstream();
  cleanups.push(() => upstream.close());
  const proxy = await startProxy([upstream.origin], { circuitBreaker: { maxRequests: LIMIT } }, { workers: 2, start: { testHooks: true } });
  cleanups.push(() => proxy.shutdown());
  cleanups.push(async () => {
    for (const res of held) res.end('released');
  });

  // Fill the endpoint's limit from fresh connections, which the kernel spreads over both workers.
  const first = Array.from({ length: LIMIT }, () => send(proxy.port).catch((err: Error) => err));
  await until(() => held.size === LIMIT, 'the upstream to hold the limit');
  const before = await status(proxy);
  expect(endpointInflight(before)).toBe(LIMIT);
  expect(before.traffic.inflight).toBe(LIMIT);
  // The worker holding the most dies; the other's exchanges stay open.
  const victim = [...before.workers.threads].sort((a, b) => b.requests - a.requests)[0];
  const kept = LIMIT - victim.requests;
  proxy.meridian.supervisor!.poke(victim.slot, { kind: 'crash' });

  await until(async () => (await status(proxy)).workers.restarts === 1, 'the crashed worker to be counted');
  // Its upstream connections closed with it; the counts follow what is really still open.
  await until(() => held.size === kept, "the dead worker's upstream requests to close");
  const after = await until(async () => {
    const s = await status(proxy);
    return s.workers.threads.every((t) => t.listening) ? s : null;
  }, 'the replacement to listen');
  expect(endpointInflight(after)).toBe(kept);
  expect(after.traffic.inflight).toBe(kept);

  // The freed slots are usable again: exactly the victim's share more goes through, and the next one is refused.
  const refill = Array.from({ length: victim.requests }, () => send(proxy.port).catch((err: Error) => err));
  await until(() => held.size === LIMIT, 'the freed slots to be taken again');
  const over = await send(proxy.port);
  expect(over.status).toBe(503);
  expect(JSON.parse(over.body.toString()).type).toBe('meridian_upstream_overloaded');

  for (const res of held) res.end('released');
  const answers = await Promise.all([...first, ...refill]);
  // The victim's own clients lost their connection with it; every other exchange completes.
  expect(answers.filter((a) => !(a instanceof Error) && a.status === 200)).toHaveLength(kept + victim.requests);
}, 20_000);
