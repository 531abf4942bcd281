// How many CPUs this process may use, for `workers: auto`: the CPUs it may run on, further limited by a cgroup CPU
// quota (a container's `--cpus`, a Kubernetes CPU limit), so a 2-CPU pod on a 64-core node starts 2 threads, not 64.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** cgroup v2: `$MAX $PERIOD`, or `max $PERIOD` for no limit. */
export const CGROUP_V2_CPU_MAX = '/sys/fs/cgroup/cpu.max';
/** cgroup v1: the quota in µs per period (`-1` for no limit), and the period in µs. */
export const CGROUP_V1_CFS_QUOTA = '/sys/fs/cgroup/cpu/cpu.cfs_quota_us';
export const CGROUP_V1_CFS_PERIOD = '/sys/fs/cgroup/cpu/cpu.cfs_period_us';

/**
 * `available` limited by a quota of `quota` µs of CPU time per `period` µs: a fractional quota is rounded up (1.5
 * CPUs gives 2 threads, which the kernel throttles to 1.5 CPUs between them), and a quota under one CPU still gives 1.
 */
export function cpusFromQuota(quota: number, period: number, available: number): number {
  return Math.max(1, Math.min(available, Math.ceil(quota / period)));
}

/** From the text of cgroup v2's `cpu.max`; `available` when there is no limit or the text is not understood. */
export function cpusFromCpuMax(text: string, available: number): number {
  const match = /^(max|\d+)\s+(\d+)$/.exec(text.trim());
  if (match === null || match[1] === 'max') return available;
  const quota = Number(match[1]);
  const period = Number(match[2]);
  return quota > 0 && period > 0 ? cpusFromQuota(quota, period, available) : available;
}

/** From the texts of cgroup v1's `cpu.cfs_quota_us` and `cpu.cfs_period_us`; `available` for `-1` or text not understood. */
export function cpusFromCfs(quotaText: string, periodText: string, available: number): number {
  const quota = /^\d+$/.test(quotaText.trim()) ? Number(quotaText.trim()) : NaN;
  const period = /^\d+$/.test(periodText.trim()) ? Number(periodText.trim()) : NaN;
  return quota > 0 && period > 0 ? cpusFromQuota(quota, period, available) : available;
}

/**
 * `available` limited by whichever cgroup quota `read` finds (it returns a file's text, or null when the file cannot
 * be read). Both versions are tried: a host has one, and a file that is missing or malformed means no quota.
 */
export function cpusFromCgroup(read: (path: string) => string | null, available: number): number {
  const cpuMax = read(CGROUP_V2_CPU_MAX);
  const cfsQuota = read(CGROUP_V1_CFS_QUOTA);
  const cfsPeriod = read(CGROUP_V1_CFS_PERIOD);
  const v2 = cpuMax === null ? available : cpusFromCpuMax(cpuMax, available);
  const v1 = cfsQuota === null || cfsPeriod === null ? available : cpusFromCfs(cfsQuota, cfsPeriod, available);
  return Math.min(v2, v1);
}

/**
 * The CPUs this process may use. `os.availableParallelism()` honours the CPU affinity mask; with libuv 1.49 or
 * newer (Node 22 and later) it also counts a cgroup quota of at least one CPU, rounded down, so there a 1.5-CPU quota
 * gives 1. Taking the smaller of the two never starts more threads than Node itself counts.
 *
 * The files are read synchronously: this runs once at startup, before any listener exists, so nothing waits on the
 * event loop meanwhile. Tests pass their own `read` and `available` to play a host with a quota.
 */
export function usableCpus(read: (path: string) => string | null = readOrNull, available = availableParallelism()): number {
  return cpusFromCgroup(read, available);
}

/** The number of data-plane threads a `workers` setting asks for. */
export function resolveWorkers(setting: 'auto' | number): number {
  return setting === 'auto' ? usableCpus() : setting;
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}
