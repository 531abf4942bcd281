// Chaos under load (DESIGN.md §11, failover goal): autocannon drives GETs through Meridian over two regions while the
// local zone is killed and restarted twice. No idempotent request may fail, traffic must move to the sibling zone at
// once, and it must come back within about one health interval plus rise × the unhealthy interval. The scenario runs
// with the data plane on the test's thread, where Meridian's own events explain a failure, and in two worker threads,
// where the health checks run on another thread than the routing they steer.
import { afterEach, expect, test } from 'vitest';
import { setTimeout as pace } from 'node:timers/promises';
import autocannon from 'autocannon';
import { exchangeEnd } from '../src/proxy/events.ts';
import type { ExchangeRecord } from '../src/proxy/record.ts';
import { send } from './support/harness.ts';
import { startWorld, type Backend, type World } from './support/zones.ts';

const INTERVAL_MS = 200;
const UNHEALTHY_INTERVAL_MS = 100;
const RISE = 2;
const HEALTH = { interval: `${INTERVAL_MS}ms`, unhealthyInterval: `${UNHEALTHY_INTERVAL_MS}ms`, timeout: '150ms', rise: RISE, fall: 2 };
/** One health interval plus rise × the unhealthy interval, and half again for timer jitter on a loaded test machine. */
const SWITCH_BACK_BOUND_MS = (INTERVAL_MS + RISE * UNHEALTHY_INTERVAL_MS) * 1.5;
const DURATION_S = 9;
const CONNECTIONS = 20;

const worlds: World[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.close();
});

/** This instance is eu-central/az-1, which has two endpoints; its sibling zone has one, the next region two. */
async function startChaosWorld(workers: number): Promise<World> {
  const w = await startWorld(
    {
      'eu-central': { location: [50.11, 8.68], zones: { 'az-1': ['local-a', 'local-b'], 'az-2': ['sibling'] } },
      'eu-west': { location: [48.86, 2.35], zones: { 'az-1': ['west-a'], 'az-2': ['west-b'] } },
    },
    { region: 'eu-central', zone: 'az-1' },
    { health: HEALTH },
    workers,
  );
  worlds.push(w);
  return w;
}

/** performance.now() of the first request `backends` served at or after `since`, or null. */
function firstServed(backends: Backend[], since: number): number | null {
  const times = backends.flatMap((b) => b.servedAt.filter((t) => t >= since));
  return times.length === 0 ? null : Math.min(...times);
}

/**
 * The scenario both variants run, and what it promises however the data plane runs. `meridianFailures` is Meridian's
 * own count of exchanges that ended in a 5xx, by cause, read once the load is over: it says why if the client saw a
 * failure, and must be empty too. Returns autocannon's result for the variant's own checks.
 */
async function killLocalZoneTwiceUnderLoad(w: World, variant: string, meridianFailures: () => Promise<Record<string, number>>): Promise<autocannon.Result> {
  const local = [w.backends['local-a'], w.backends['local-b']];
  const sibling = w.backends['sibling'];
  const load = autocannon({ url: `http://127.0.0.1:${w.port}/v1/databases/main/documents`, connections: CONNECTIONS, duration: DURATION_S });

  const rounds: { killedAt: number; restartedAt: number }[] = [];
  await pace(1_000);
  for (let round = 0; round < 2; round++) {
    const killedAt = performance.now();
    await Promise.all(local.map((b) => b.kill()));
    await pace(1_500);
    const restartedAt = performance.now();
    await Promise.all(local.map((b) => b.restart()));
    rounds.push({ killedAt, restartedAt });
    await pace(2_000);
  }
  const result = await load;
  const failures = await meridianFailures();

  const switches = rounds.map(({ killedAt, restartedAt }) => {
    const away = firstServed([sibling], killedAt);
    const back = firstServed(local, restartedAt);
    return { awayMs: away === null ? null : away - killedAt, backMs: back === null ? null : back - restartedAt };
  });
  const served = Object.values(w.backends).map((b) => `${b.name} ${b.servedAt.length}`);
  console.log(
    `chaos (${variant}): ${result.requests.total} GETs in ${result.duration} s (${result['2xx']} 2xx, ${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts); ` +
      `served: ${served.join(', ')}; Meridian failures: ${JSON.stringify(failures)}`,
  );
  switches.forEach(({ awayMs, backMs }, i) =>
    console.log(
      `chaos (${variant}) round ${i + 1}: kill → first request served by the sibling zone ${awayMs?.toFixed(1)} ms; restart → first request served locally again ${backMs?.toFixed(1)} ms`,
    ),
  );

  expect({ non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts, meridianFailures: failures }).toEqual({
    non2xx: 0,
    errors: 0,
    timeouts: 0,
    meridianFailures: {},
  });
  expect(result['2xx']).toBeGreaterThan(1_000);
  for (const { awayMs, backMs } of switches) {
    // The sibling takes over with the first request after the kill: a refused connect fails over at once.
    expect(awayMs).not.toBeNull();
    expect(awayMs!).toBeLessThan(INTERVAL_MS);
    expect(backMs).not.toBeNull();
    expect(backMs!).toBeLessThan(SWITCH_BACK_BOUND_MS);
  }
  return result;
}

/** `name{labels} value` lines of one metric, by their label text. */
function samples(body: string, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of body.split('\n')) {
    const match = /^(\w+)(\{.*\})? (\S+)$/.exec(line);
    if (match !== null && match[1] === name) out[match[2] ?? ''] = Number(match[3]);
  }
  return out;
}

test('killing and restarting the local zone twice under load fails no GET, and traffic moves away and back', async () => {
  const w = await startChaosWorld(1);
  // In-process, every exchange's record is published on this thread: Meridian's own view of each failed one.
  const failures = new Map<string, number>();
  const onEnd = (message: unknown): void => {
    const { status, errorCode } = message as ExchangeRecord;
    if (status < 500) return;
    const key = `${status} ${errorCode ?? ''}`;
    failures.set(key, (failures.get(key) ?? 0) + 1);
  };
  exchangeEnd.subscribe(onEnd);
  try {
    await killLocalZoneTwiceUnderLoad(w, 'in-process', async () => Object.fromEntries(failures));
  } finally {
    exchangeEnd.unsubscribe(onEnd);
  }
});

test('with two worker threads, killing and restarting the local zone twice under load fails no GET either, and both workers serve', async () => {
  const w = await startChaosWorld(2);
  // The records are published in the workers, out of this thread's sight; the shared metric tables count every 5xx
  // the clients got, whichever worker served it, by the zone whose failure it was.
  const result = await killLocalZoneTwiceUnderLoad(w, 'two workers', async () => {
    const metrics = (await send(w.adminPort, { path: '/metrics' })).body.toString();
    const requests = samples(metrics, 'meridian_requests_total');
    return Object.fromEntries(Object.entries(requests).filter(([labels, n]) => labels.includes('code="5xx"') && n > 0));
  });

  // The kernel spread autocannon's connections over both listeners, so both workers failed over on their own. Each
  // counts the exchanges it started: together every answered GET, and at most one unanswered per connection when the
  // load stopped.
  const status = JSON.parse((await send(w.adminPort, { path: '/status' })).body.toString()) as {
    workers: { mode: string; restarts: number; threads: { slot: number; requests: number }[] };
  };
  const { mode, restarts, threads } = status.workers;
  console.log(`chaos (two workers): requests by worker ${threads.map((t) => `${t.slot}: ${t.requests}`).join(', ')}`);
  expect({ mode, restarts, threads: threads.length }).toEqual({ mode: 'workers', restarts: 0, threads: 2 });
  for (const thread of threads) expect(thread.requests, `worker ${thread.slot}`).toBeGreaterThan(100);
  const started = threads.reduce((sum, t) => sum + t.requests, 0);
  expect(started).toBeGreaterThanOrEqual(result.requests.total);
  expect(started).toBeLessThanOrEqual(result.requests.total + CONNECTIONS);
});
