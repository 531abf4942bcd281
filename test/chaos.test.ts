// Chaos under load (DESIGN.md §11, failover goal): autocannon drives GETs through Meridian over two regions while the
// local zone is killed and restarted twice. No idempotent request may fail, traffic must move to the sibling zone at
// once, and it must come back within about one health interval plus rise × the unhealthy interval.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { setTimeout as pace } from 'node:timers/promises';
import autocannon from 'autocannon';
import { exchangeEnd } from '../src/proxy/events.ts';
import type { ExchangeRecord } from '../src/proxy/record.ts';
import { startWorld, type Backend, type World } from './support/zones.ts';

const INTERVAL_MS = 200;
const UNHEALTHY_INTERVAL_MS = 100;
const RISE = 2;
const HEALTH = { interval: `${INTERVAL_MS}ms`, unhealthyInterval: `${UNHEALTHY_INTERVAL_MS}ms`, timeout: '150ms', rise: RISE, fall: 2 };
/** One health interval plus rise × the unhealthy interval, and half again for timer jitter on a loaded test machine. */
const SWITCH_BACK_BOUND_MS = (INTERVAL_MS + RISE * UNHEALTHY_INTERVAL_MS) * 1.5;
const DURATION_S = 9;

let w: World;
/** Meridian's own view of every failed exchange, to say why if the client saw a failure. */
const failures = new Map<string, number>();
const onEnd = (message: unknown): void => {
  const { status, errorCode } = message as ExchangeRecord;
  if (status < 500) return;
  const key = `${status} ${errorCode ?? ''}`;
  failures.set(key, (failures.get(key) ?? 0) + 1);
};

beforeAll(async () => {
  // This instance is eu-central/az-1, which has two endpoints; its sibling zone has one, the next region two.
  w = await startWorld(
    {
      'eu-central': { location: [50.11, 8.68], zones: { 'az-1': ['local-a', 'local-b'], 'az-2': ['sibling'] } },
      'eu-west': { location: [48.86, 2.35], zones: { 'az-1': ['west-a'], 'az-2': ['west-b'] } },
    },
    { region: 'eu-central', zone: 'az-1' },
    { health: HEALTH },
  );
  exchangeEnd.subscribe(onEnd);
});

afterAll(async () => {
  exchangeEnd.unsubscribe(onEnd);
  await w?.close();
});

/** performance.now() of the first request `backends` served at or after `since`, or null. */
function firstServed(backends: Backend[], since: number): number | null {
  const times = backends.flatMap((b) => b.servedAt.filter((t) => t >= since));
  return times.length === 0 ? null : Math.min(...times);
}

test('killing and restarting the local zone twice under load fails no GET, and traffic moves away and back', async () => {
  const local = [w.backends['local-a'], w.backends['local-b']];
  const sibling = w.backends['sibling'];
  const load = autocannon({ url: `http://127.0.0.1:${w.port}/v1/databases/main/documents`, connections: 20, duration: DURATION_S });

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

  const switches = rounds.map(({ killedAt, restartedAt }) => {
    const away = firstServed([sibling], killedAt);
    const back = firstServed(local, restartedAt);
    return { awayMs: away === null ? null : away - killedAt, backMs: back === null ? null : back - restartedAt };
  });
  const served = Object.values(w.backends).map((b) => `${b.name} ${b.servedAt.length}`);
  console.log(
    `chaos: ${result.requests.total} GETs in ${result.duration} s (${result['2xx']} 2xx, ${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts); ` +
      `served: ${served.join(', ')}; Meridian failures: ${JSON.stringify(Object.fromEntries(failures))}`,
  );
  switches.forEach(({ awayMs, backMs }, i) =>
    console.log(`chaos round ${i + 1}: kill → first request served by the sibling zone ${awayMs?.toFixed(1)} ms; restart → first request served locally again ${backMs?.toFixed(1)} ms`),
  );

  expect({ non2xx: result.non2xx, errors: result.errors, timeouts: result.timeouts, meridianFailures: Object.fromEntries(failures) }).toEqual({
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
});
