// One of two threads on the same pin table (src/proxy/shared-pin-table.test.ts, src/proxy/upload-pins.test.ts): it
// attaches to the memory it was posted, meets its twin, runs the scenario and posts back what it saw.
import { parentPort, workerData } from 'node:worker_threads';
import { SharedPinTable, type PinTableDescriptor } from '../../src/proxy/shared-pin-table.ts';
import { UploadPins, uploadKey, type UploadPinsMemory } from '../../src/proxy/upload-pins.ts';

/** Values name their key: `key * VALUES_PER_KEY + variant`, so a value read under another key shows a torn slot. */
export const VALUES_PER_KEY = 64;

export type Scenario =
  /** `operations` gets, sets, adds and deletes of keys `key-0` to `key-{keys - 1}` picked at random, both threads at once. */
  | { readonly kind: 'overlap'; readonly table: PinTableDescriptor; readonly keys: number; readonly operations: number; readonly now: number }
  /** Each thread sets `keys` keys of its own, then reads its twin's. */
  | { readonly kind: 'handoff'; readonly table: PinTableDescriptor; readonly keys: number; readonly now: number }
  /** Each thread pins `uploads` uploads of its own to the regions in turn, in opposite orders, then reads its twin's. */
  | { readonly kind: 'upload-pins'; readonly pins: UploadPinsMemory; readonly uploads: number; readonly regions: readonly string[] };

export interface WorkerInput {
  readonly thread: 0 | 1;
  /** Int32 slot 0: threads arrived at barriers so far. */
  readonly control: SharedArrayBuffer;
  readonly scenario: Scenario;
}

export interface WorkerResult {
  /** Reads that returned a value never written for the key read, and the first of them. */
  readonly torn: number;
  readonly firstTorn: string | null;
  readonly hits: number;
  readonly misses: number;
  /** Reads of the twin's keys that found a wrong value or none. */
  readonly wrong: number;
}

const ARRIVED = 0;
const THREADS = 2;
const TTL_MS = 3_600_000;

const { thread, control: controlBuffer, scenario } = workerData as WorkerInput;
const control = new Int32Array(controlBuffer);

/** The `round`th meeting of both threads: spin, so both leave within nanoseconds of each other. */
function barrier(round: number): void {
  Atomics.add(control, ARRIVED, 1);
  while (Atomics.load(control, ARRIVED) < THREADS * (round + 1));
}

function overlap(table: SharedPinTable, keys: number, operations: number, now: number): WorkerResult {
  const names = Array.from({ length: keys }, (_, k) => `key-${k}`);
  // Each thread writes its own half of a key's values, so a value also tells which thread wrote it.
  const variants = VALUES_PER_KEY / THREADS;
  let seed = 0x9e3779b9 ^ (thread + 1);
  let torn = 0;
  let firstTorn: string | null = null;
  let hits = 0;
  let misses = 0;
  const check = (key: number, value: number, how: string): void => {
    if (value === -1) {
      misses++;
    } else if (Math.floor(value / VALUES_PER_KEY) === key) {
      hits++;
    } else {
      torn++;
      firstTorn ??= `${how}(key-${key}) returned ${value}, a value of key-${Math.floor(value / VALUES_PER_KEY)}`;
    }
  };
  barrier(0);
  for (let op = 0; op < operations; op++) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    const random = seed >>> 0;
    const key = random % keys;
    const value = key * VALUES_PER_KEY + thread * variants + (op % variants);
    switch ((random >>> 16) % 10) {
      case 0:
        table.delete(names[key]);
        break;
      case 1:
        check(key, table.add(names[key], value, now, TTL_MS), 'add');
        break;
      case 2:
      case 3:
      case 4:
        table.set(names[key], value, now, TTL_MS);
        break;
      default:
        check(key, table.get(names[key], now, TTL_MS), 'get');
    }
  }
  return { torn, firstTorn, hits, misses, wrong: 0 };
}

function handoff(table: SharedPinTable, keys: number, now: number): WorkerResult {
  for (let k = 0; k < keys; k++) table.set(`thread-${thread}-${k}`, k, now, TTL_MS);
  barrier(0);
  let hits = 0;
  let wrong = 0;
  for (let k = 0; k < keys; k++) {
    if (table.get(`thread-${1 - thread}-${k}`, now) === k) hits++;
    else wrong++;
  }
  return { torn: 0, firstTorn: null, hits, misses: 0, wrong };
}

function uploadPins(memory: UploadPinsMemory, uploads: number, regions: readonly string[]): WorkerResult {
  const pins = new UploadPins(memory);
  const order = (t: number): readonly string[] => (t === 0 ? regions : [...regions].reverse());
  const key = (t: number, n: number): string => uploadKey('shop', `thread-${t}-upload-${n}`);
  barrier(0);
  for (let n = 0; n < uploads; n++) pins.pin(key(thread, n), order(thread)[n % regions.length]);
  barrier(1);
  const twin = 1 - thread;
  let hits = 0;
  let wrong = 0;
  for (let n = 0; n < uploads; n++) {
    if (pins.regionFor(key(twin, n)) === order(twin)[n % regions.length]) hits++;
    else wrong++;
  }
  return { torn: 0, firstTorn: null, hits, misses: 0, wrong };
}

function run(): WorkerResult {
  switch (scenario.kind) {
    case 'overlap':
      return overlap(SharedPinTable.attach(scenario.table), scenario.keys, scenario.operations, scenario.now);
    case 'handoff':
      return handoff(SharedPinTable.attach(scenario.table), scenario.keys, scenario.now);
    case 'upload-pins':
      return uploadPins(scenario.pins, scenario.uploads, scenario.regions);
  }
}

parentPort!.postMessage(run());
