// Preloaded by bench/memory.ts into the Meridian it measures (`node --expose-gc --import bench/heap-probe.mjs …`).
// Plain JavaScript on purpose: a TypeScript preload would load the type stripper into the process being measured.
// On SIGUSR2 it writes one JSON line to $MERIDIAN_HEAP_PROBE: the JS heap as it stands (what the load left
// committed), then after two full collections (what is really live). Nothing runs until the signal.
import { appendFileSync } from 'node:fs';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';

const MIB = 1024 * 1024;
const file = process.env.MERIDIAN_HEAP_PROBE;

function heap() {
  const stats = getHeapStatistics();
  const spaces = getHeapSpaceStatistics();
  const space = (name) => spaces.find((candidate) => candidate.space_name === name);
  return {
    usedMiB: stats.used_heap_size / MIB,
    committedMiB: stats.total_heap_size / MIB,
    youngCommittedMiB: (space('new_space')?.physical_space_size ?? 0) / MIB,
    // Objects that survived; code and its metadata (code, trusted) grow as the JIT optimizes, not with data.
    oldUsedMiB: (space('old_space')?.space_used_size ?? 0) / MIB,
  };
}

if (file !== undefined && typeof globalThis.gc === 'function') {
  process.on('SIGUSR2', () => {
    const before = heap();
    globalThis.gc();
    globalThis.gc();
    appendFileSync(file, `${JSON.stringify({ before, after: heap() })}\n`);
  });
}
