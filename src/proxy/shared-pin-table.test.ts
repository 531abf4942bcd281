// The shared pin table: keys to small numbers with expiry, bounded, in one SharedArrayBuffer; two real threads on one
// table never read a value that was not written for the key they read, and see each other's writes.
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { hashKey, PROBE_WINDOW, SharedPinTable } from './shared-pin-table.ts';
import type { Scenario, WorkerInput, WorkerResult } from '../../test/support/shared-pin-table-worker.ts';

const WORKER = new URL('../../test/support/shared-pin-table-worker.ts', import.meta.url);
/** Any instant on the callers' clock, in milliseconds. */
const T0 = 1_750_000_000_000;
const SECOND = 1_000;
const HOUR = 3_600_000;

/** `count` keys whose hash puts them in `home` of a table with `capacity` slots. */
function keysAt(home: number, capacity: number, count: number): string[] {
  const hash = new Uint32Array(2);
  const keys: string[] = [];
  for (let n = 0; keys.length < count; n++) {
    hashKey(`key-${n}`, hash);
    if ((hash[0] & (capacity - 1)) === home) keys.push(`key-${n}`);
  }
  return keys;
}

/** Both threads on the same memory; each attaches to what it is posted, as a data-plane worker will. */
async function twoThreads(scenario: Scenario): Promise<WorkerResult[]> {
  const control = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
  return Promise.all(
    ([0, 1] as const).map(async (thread) => {
      const input: WorkerInput = { thread, control, scenario };
      const worker = new Worker(WORKER, { workerData: input });
      // Listening for the exit first: a thread that ends right after posting delivers its message and exit together.
      const exited = once(worker, 'exit');
      // `once` rejects on the worker's 'error' event, so a thread that throws fails the test instead of hanging it.
      const [result] = (await once(worker, 'message')) as [WorkerResult];
      await exited;
      return result;
    }),
  );
}

describe('SharedPinTable', () => {
  it.each([
    { maxEntries: 1, capacity: 2 },
    { maxEntries: 3, capacity: 8 },
    { maxEntries: 8, capacity: 16 },
    { maxEntries: 100_000, capacity: 262_144 },
  ])('holds $maxEntries entries in $capacity slots, the next power of two at least twice as many', ({ maxEntries, capacity }) => {
    expect(SharedPinTable.create(maxEntries, T0).descriptor.capacity).toBe(capacity);
  });

  it('reads back what was set, the latest value after another set, and -1 for a key never set', () => {
    const table = SharedPinTable.create(100, T0);
    expect(table.set('upload-1', 3, T0, HOUR)).toBe(true);
    table.set('upload-2', 0xffff, T0, HOUR);
    expect([table.get('upload-1', T0), table.get('upload-2', T0), table.get('upload-3', T0)]).toEqual([3, 0xffff, -1]);
    table.set('upload-1', 7, T0, HOUR);
    expect(table.get('upload-1', T0)).toBe(7);
    expect(table.size).toBe(2);
  });

  it('add keeps a live value and returns it, and sets a key that is new or expired', () => {
    const table = SharedPinTable.create(100, T0);
    expect(table.add('upload-1', 3, T0, SECOND)).toBe(3);
    expect(table.add('upload-1', 5, T0, SECOND)).toBe(3);
    expect(table.add('upload-1', 5, T0 + 2 * SECOND, SECOND)).toBe(5);
    expect(table.size).toBe(1);
  });

  it.each([1, 999, 1_000, 1_500, HOUR])('a %i ms entry lives at least its ttl and less than a second longer', (ttl) => {
    const table = SharedPinTable.create(100, T0);
    const at = T0 + 300;
    table.set('upload-1', 1, at, ttl);
    expect(table.get('upload-1', at + ttl - 1)).toBe(1);
    expect(table.get('upload-1', at + ttl + SECOND)).toBe(-1);
  });

  it('a read with a refresh keeps an entry alive; a plain read does not', () => {
    const table = SharedPinTable.create(100, T0);
    table.set('busy', 1, T0, 10 * SECOND);
    table.set('idle', 2, T0, 10 * SECOND);
    for (let t = T0; t <= T0 + 30 * SECOND; t += 5 * SECOND) {
      expect(table.get('busy', t, 10 * SECOND)).toBe(1);
      table.get('idle', t);
    }
    expect(table.get('idle', T0 + 30 * SECOND)).toBe(-1);
  });

  it('an expired entry gives its slot to the next write, so the count does not grow', () => {
    const table = SharedPinTable.create(100, T0);
    const [first, second] = keysAt(5, 256, 2);
    table.set(first, 1, T0, SECOND);
    table.set(second, 2, T0 + 5 * SECOND, SECOND);
    expect(table.size).toBe(1);
    expect([table.get(first, T0 + 5 * SECOND), table.get(second, T0 + 5 * SECOND)]).toEqual([-1, 2]);
  });

  it('past maxEntries it evicts the least recently used of the entries expiring soonest', () => {
    const table = SharedPinTable.create(4, T0);
    for (const [value, key] of ['a', 'b', 'c', 'd'].entries()) table.set(key, value, T0, HOUR);
    // Read with a refresh, "a" is now the most recently used: "b" goes first.
    table.get('a', T0, HOUR);
    table.set('e', 4, T0, HOUR);
    expect(['a', 'b', 'c', 'd', 'e'].map((key) => table.get(key, T0))).toEqual([0, -1, 2, 3, 4]);
    expect(table.size).toBe(4);
  });

  it('past maxEntries an entry expiring sooner goes first, however recently it was used', () => {
    const table = SharedPinTable.create(4, T0);
    table.set('a', 0, T0, HOUR);
    table.set('b', 1, T0, HOUR);
    table.set('short', 2, T0, 10 * SECOND);
    table.set('c', 3, T0, HOUR);
    table.get('short', T0, 10 * SECOND);
    table.set('d', 4, T0, HOUR);
    expect(['a', 'b', 'short', 'c', 'd'].map((key) => table.get(key, T0))).toEqual([0, 1, -1, 3, 4]);
  });

  it('keys sharing a home slot are kept apart, and deleting one leaves the others reachable', () => {
    const table = SharedPinTable.create(512, T0);
    const keys = keysAt(1_023, 1_024, 3);
    keys.forEach((key, value) => table.set(key, value, T0, HOUR));
    expect(keys.map((key) => table.get(key, T0))).toEqual([0, 1, 2]);
    expect(table.delete(keys[0])).toBe(true);
    expect(keys.map((key) => table.get(key, T0))).toEqual([-1, 1, 2]);
    table.set(keys[0], 9, T0, HOUR);
    expect(keys.map((key) => table.get(key, T0))).toEqual([9, 1, 2]);
    expect(table.size).toBe(3);
  });

  it('a probe window full of live entries makes room by evicting its soonest-expiring entry, below maxEntries too', () => {
    const table = SharedPinTable.create(512, T0);
    const keys = keysAt(7, 1_024, PROBE_WINDOW + 1);
    keys.slice(0, PROBE_WINDOW).forEach((key, value) => table.set(key, value, T0, value === 3 ? HOUR - 10 * SECOND : HOUR));
    table.set(keys[PROBE_WINDOW], PROBE_WINDOW, T0, HOUR);
    const found = keys.map((key) => table.get(key, T0));
    expect(found.filter((value) => value === -1)).toHaveLength(1);
    expect(found[3]).toBe(-1);
    expect(table.size).toBe(PROBE_WINDOW);
  });

  it('delete counts the entry out; deleting a key never set, or deleted already, is false', () => {
    const table = SharedPinTable.create(100, T0);
    table.set('upload-1', 1, T0, HOUR);
    expect([table.delete('upload-1'), table.delete('upload-1'), table.delete('upload-2')]).toEqual([true, false, false]);
    expect([table.get('upload-1', T0), table.size]).toEqual([-1, 0]);
  });

  it('copyTo keeps the most recently used when the new table is smaller, and moves expiries by the change of ttl', () => {
    const table = SharedPinTable.create(8, T0);
    for (const [value, key] of ['a', 'b', 'c', 'd'].entries()) table.set(key, value, T0, HOUR);
    table.get('a', T0, HOUR);
    const smaller = SharedPinTable.create(2, T0 + SECOND);
    table.copyTo(smaller, T0 + SECOND, HOUR);
    expect(['a', 'b', 'c', 'd'].map((key) => smaller.get(key, T0 + SECOND))).toEqual([0, -1, -1, 3]);
    expect(smaller.get('a', T0 + 2 * HOUR - SECOND)).toBe(0);
    expect(smaller.get('a', T0 + 2 * HOUR + SECOND)).toBe(-1);
    // A shorter ttl drops the entries it leaves already expired.
    const shorter = SharedPinTable.create(8, T0 + 30 * 60 * SECOND);
    table.copyTo(shorter, T0 + 30 * 60 * SECOND, -HOUR / 2);
    expect(shorter.size).toBe(0);
  });

  it('values are whole numbers from 0 to 65535', () => {
    const table = SharedPinTable.create(100, T0);
    for (const value of [-1, 0x10000, 1.5, Number.NaN]) expect(() => table.set('k', value, T0, HOUR)).toThrow(RangeError);
  });

  it('a table attached from its descriptor, or from a structured clone of it, is the same memory', () => {
    const table = SharedPinTable.create(100, T0);
    SharedPinTable.attach(structuredClone(table.descriptor)).set('upload-1', 4, T0, HOUR);
    expect(table.get('upload-1', T0)).toBe(4);
    const { buffer } = SharedPinTable.create(10, T0).descriptor;
    expect(() => SharedPinTable.attach({ ...table.descriptor, buffer })).toThrow(/does not hold 256 slots/);
  });
});

describe('across two threads', () => {
  it('no read returns a value that was not written for its key, while both threads write over each other', async () => {
    // 64 keys through 16 slots: nearly every write evicts, and both threads often go for the same slot.
    const table = SharedPinTable.create(8, T0);
    const results = await twoThreads({ kind: 'overlap', table: table.descriptor, keys: 64, operations: 2_000_000, now: T0 });
    expect(results.map((r) => r.firstTorn)).toEqual([null, null]);
    expect(results.map((r) => r.torn)).toEqual([0, 0]);
    // Reads found entries, or the test proved nothing.
    for (const r of results) expect(r.hits).toBeGreaterThan(10_000);
    // Every slot was filled by one writer at a time, so the count of entries held is exact: deleting every key empties it.
    for (let key = 0; key < 64; key++) table.delete(`key-${key}`);
    expect(table.size).toBe(0);
  });

  it('an entry set in one thread is read in the other', async () => {
    const table = SharedPinTable.create(10_000, T0);
    const results = await twoThreads({ kind: 'handoff', table: table.descriptor, keys: 4_000, now: T0 });
    expect(results.map((r) => [r.hits, r.wrong])).toEqual([
      [4_000, 0],
      [4_000, 0],
    ]);
    expect(table.size).toBe(8_000);
  });
});
