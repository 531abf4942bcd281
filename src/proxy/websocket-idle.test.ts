// The idle sweep behind open tunnels' idle timeouts: one interval cuts what sat quiet for its limit, never what moved.
import { expect, test } from 'vitest';
import { IdleSweep, type IdleWatched } from './websocket-idle.ts';

const PERIOD_MS = 20;

class Item implements IdleWatched {
  quietMs = 0;
  readonly idleLimitMs: number;
  cutAt = -1;
  readonly #startedAt = performance.now();
  constructor(limitMs: number) {
    this.idleLimitMs = limitMs;
  }
  cutIdle(): void {
    this.cutAt = performance.now() - this.#startedAt;
  }
}

async function until(done: () => boolean, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (!done() && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
}

test('a quiet item is cut once, after its limit and within a few periods of it; a busy one is not', async () => {
  const sweep = new IdleSweep<Item>(PERIOD_MS);
  const quiet = new Item(100);
  const busy = new Item(100);
  sweep.add(quiet);
  sweep.add(busy);
  // Bytes keep moving through `busy`, as the data path resets its count on every chunk.
  const traffic = setInterval(() => (busy.quietMs = 0), 5);
  try {
    await until(() => quiet.cutAt !== -1, 2_000);
    expect(quiet.cutAt).toBeGreaterThanOrEqual(100 - 1);
    // Timers run late on a busy machine, never early; the bound only catches a sweep that stopped counting.
    expect(quiet.cutAt).toBeLessThan(1_000);
    await until(() => false, 200);
    expect(busy.cutAt).toBe(-1);
    expect(sweep.size).toBe(1);
  } finally {
    clearInterval(traffic);
    sweep.delete(busy);
  }
  expect(sweep.size).toBe(0);
});

test('an item deleted before its limit (its tunnel closed) is never cut', async () => {
  const sweep = new IdleSweep<Item>(PERIOD_MS);
  const closed = new Item(60);
  const other = new Item(60);
  sweep.add(closed);
  sweep.add(other);
  sweep.delete(closed);
  await until(() => other.cutAt !== -1, 2_000);
  expect(other.cutAt).not.toBe(-1);
  expect(closed.cutAt).toBe(-1);
});

test('one pass ages every item by a period and cuts exactly those at their limit', () => {
  const sweep = new IdleSweep<Item>(1_000);
  const items = [new Item(3_000), new Item(2_000), new Item(1_000)];
  for (const item of items) sweep.add(item);
  sweep.tick();
  expect(items.map((item) => item.cutAt !== -1)).toEqual([false, false, true]);
  items[0].quietMs = 0;
  sweep.tick();
  expect(items.map((item) => item.cutAt !== -1)).toEqual([false, true, true]);
  expect(items[0].quietMs).toBe(1_000);
  expect(sweep.size).toBe(1);
  sweep.delete(items[0]);
});
