// Counting usable CPUs: the cgroup quota texts as the kernel writes them, rounding, and the fallbacks when a file is
// missing or not understood.
import { describe, expect, test } from 'vitest';
import { availableParallelism } from 'node:os';
import { CGROUP_V1_CFS_PERIOD, CGROUP_V1_CFS_QUOTA, CGROUP_V2_CPU_MAX, cpusFromCfs, cpusFromCgroup, cpusFromCpuMax, cpusFromQuota, resolveWorkers, usableCpus } from './cpus.ts';

describe('cgroup v2 cpu.max', () => {
  test.each([
    ['no limit', 'max 100000\n', 8, 8],
    ['two CPUs', '200000 100000\n', 8, 2],
    ['1.5 CPUs round up to 2', '150000 100000\n', 8, 2],
    ['a sliver over one CPU rounds up to 2', '100001 100000\n', 8, 2],
    ['a quota under one CPU still gives 1', '50000 100000\n', 8, 1],
    ['a quota above the CPUs available gives those', '1600000 100000\n', 4, 4],
    ['another period', '300000 50000', 16, 6],
  ])('%s', (_name, text, available, expected) => {
    expect(cpusFromCpuMax(text, available)).toBe(expected);
  });

  test.each([[''], ['max'], ['150000'], ['abc 100000'], ['150000 0'], ['0 100000'], ['-1 100000'], ['1.5 1'], ['150000 100000 7']])(
    'malformed %j means no quota',
    (text) => {
      expect(cpusFromCpuMax(text, 8)).toBe(8);
    },
  );
});

describe('cgroup v1 cfs_quota_us and cfs_period_us', () => {
  test.each([
    ['-1 is no limit', '-1\n', '100000\n', 8, 8],
    ['two CPUs', '200000\n', '100000\n', 8, 2],
    ['2.5 CPUs round up to 3', '250000\n', '100000\n', 8, 3],
    ['a quota under one CPU still gives 1', '10000\n', '100000\n', 8, 1],
    ['a quota above the CPUs available gives those', '800000\n', '100000\n', 2, 2],
  ])('%s', (_name, quota, period, available, expected) => {
    expect(cpusFromCfs(quota, period, available)).toBe(expected);
  });

  test.each([
    ['', '100000'],
    ['lots', '100000'],
    ['200000', ''],
    ['200000', '0'],
    ['200000', '-100000'],
    ['0', '100000'],
  ])('malformed %j / %j means no quota', (quota, period) => {
    expect(cpusFromCfs(quota, period, 8)).toBe(8);
  });
});

test('cpusFromQuota never gives less than 1 nor more than available', () => {
  expect(cpusFromQuota(1, 100_000, 8)).toBe(1);
  expect(cpusFromQuota(100_000, 100_000, 8)).toBe(1);
  expect(cpusFromQuota(10_000_000, 100_000, 8)).toBe(8);
});

describe('cpusFromCgroup', () => {
  const files = (entries: Record<string, string>) => (path: string) => entries[path] ?? null;

  test('no cgroup files at all: the CPUs available', () => {
    expect(cpusFromCgroup(files({}), 6)).toBe(6);
  });

  test('a v2 host reads cpu.max', () => {
    expect(cpusFromCgroup(files({ [CGROUP_V2_CPU_MAX]: '150000 100000\n' }), 6)).toBe(2);
  });

  test('a v1 host reads the cfs pair, and needs both', () => {
    expect(cpusFromCgroup(files({ [CGROUP_V1_CFS_QUOTA]: '300000\n', [CGROUP_V1_CFS_PERIOD]: '100000\n' }), 6)).toBe(3);
    expect(cpusFromCgroup(files({ [CGROUP_V1_CFS_QUOTA]: '300000\n' }), 6)).toBe(6);
  });

  test('a malformed file is no quota', () => {
    expect(cpusFromCgroup(files({ [CGROUP_V2_CPU_MAX]: 'garbage' }), 6)).toBe(6);
  });
});

describe('usableCpus', () => {
  const files = (entries: Record<string, string>) => (path: string) => entries[path] ?? null;

  test('a container limited to 2 CPUs on a 64-core host gets 2 threads; 1.5 CPUs get 2, half a CPU gets 1', () => {
    expect(usableCpus(files({ [CGROUP_V2_CPU_MAX]: '200000 100000\n' }), 64)).toBe(2);
    expect(usableCpus(files({ [CGROUP_V2_CPU_MAX]: '150000 100000\n' }), 64)).toBe(2);
    expect(usableCpus(files({ [CGROUP_V1_CFS_QUOTA]: '50000\n', [CGROUP_V1_CFS_PERIOD]: '100000\n' }), 64)).toBe(1);
  });

  test('without a quota, the CPUs node may run on (its affinity mask)', () => {
    expect(usableCpus(files({ [CGROUP_V2_CPU_MAX]: 'max 100000\n' }), 6)).toBe(6);
    expect(usableCpus(files({}), 3)).toBe(3);
  });
});

describe('on this machine', () => {
  test('usableCpus is at least 1 and at most what node counts', () => {
    const cpus = usableCpus();
    expect(Number.isInteger(cpus)).toBe(true);
    expect(cpus).toBeGreaterThanOrEqual(1);
    expect(cpus).toBeLessThanOrEqual(availableParallelism());
  });

  test('resolveWorkers: auto is usableCpus, a number is itself', () => {
    expect(resolveWorkers('auto')).toBe(usableCpus());
    expect(resolveWorkers(3)).toBe(3);
    expect(resolveWorkers(1)).toBe(1);
  });
});
