// A full collection of this thread's heap, for the rare moment it has just let go of a large SharedArrayBuffer (a
// replaced geo database). Such a buffer's memory is returned only once every thread's wrapper objects for it have been
// collected, and V8 does not count shared memory toward starting a collection: the control plane allocates little,
// and a worker's wrappers sit in old space, so without this a database replaced daily stayed resident for days, one
// copy per reload (test/workers-memory.test.ts). It costs one pause of a few milliseconds per database replacement.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** V8's `gc()` with its options (--expose-gc); without them, one full collection. */
type Collect = (options?: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

let collect: Collect | undefined;

/** Collects this thread's garbage now, whatever flags node was started with. */
export function releaseMemory(): void {
  collect ??= exposedCollector();
  collect();
}

/**
 * Collects this thread's garbage as V8 does under memory pressure: several full collections that also compact the
 * heap and give back the young generation's pages, which loading a thread's modules grew and an idle thread never
 * shrinks again. For a thread that has just started and is about to serve: 10 to 14 MiB of a data-plane worker's
 * resident memory, for one pause of some tens of milliseconds before it accepts its first connection.
 */
export function releaseStartupMemory(): void {
  collect ??= exposedCollector();
  collect({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}

/**
 * V8 hands a context a `gc()` only while --expose-gc is set. The flag is process-wide and threads reach this at once,
 * so it is raised and never lowered: lowering it could land between another thread's raising it and making its
 * context. The only other effect is a global `gc` in the contexts made later, such as a replacement worker's.
 */
function exposedCollector(): Collect {
  const given = (globalThis as { gc?: Collect }).gc;
  if (typeof given === 'function') return given;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as Collect;
}
