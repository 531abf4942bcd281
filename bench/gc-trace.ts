// What V8's `--trace-gc-nvp` lines say about a window of a process's life: scavenges and full collections, their pauses,
// and the bytes the JavaScript heap allocated (each line's `allocated=` counts what was allocated since the last GC).

export interface GcSummary {
  readonly scavenges: number;
  readonly scavengeMeanMs: number;
  readonly scavengeMaxMs: number;
  /** Mark-compact (full) collections, and their longest pause. */
  readonly fullGcs: number;
  readonly fullMaxMs: number;
  /** Total pause of every kind, ms. */
  readonly pauseTotalMs: number;
  /** Bytes allocated on the JS heap over the window (off-heap Buffer contents are not counted). */
  readonly allocatedBytes: number;
  /** Bytes promoted from the young generation to the old one. */
  readonly promotedBytes: number;
}

const FIELD = /(?:^|\s)(pause|gc|allocated|promoted)=(\S+)/g;

export function summarizeGc(output: string): GcSummary {
  const scavengePauses: number[] = [];
  let fullGcs = 0;
  let fullMaxMs = 0;
  let pauseTotalMs = 0;
  let allocatedBytes = 0;
  let promotedBytes = 0;
  for (const line of output.split('\n')) {
    if (!line.includes(' gc=')) continue;
    const fields: Record<string, string> = {};
    for (const match of line.matchAll(FIELD)) fields[match[1]] = match[2];
    const pause = Number(fields.pause ?? 0);
    pauseTotalMs += pause;
    allocatedBytes += Number(fields.allocated ?? 0);
    promotedBytes += Number(fields.promoted ?? 0);
    // `s` is a scavenge, `mmc` a minor mark-compact (the other young-generation collector); `mc` and `ms` are full.
    if (fields.gc === 's' || fields.gc === 'mmc') scavengePauses.push(pause);
    else {
      fullGcs++;
      fullMaxMs = Math.max(fullMaxMs, pause);
    }
  }
  const sum = scavengePauses.reduce((a, b) => a + b, 0);
  return {
    scavenges: scavengePauses.length,
    scavengeMeanMs: scavengePauses.length === 0 ? 0 : sum / scavengePauses.length,
    scavengeMaxMs: scavengePauses.length === 0 ? 0 : Math.max(...scavengePauses),
    fullGcs,
    fullMaxMs,
    pauseTotalMs,
    allocatedBytes,
    promotedBytes,
  };
}
