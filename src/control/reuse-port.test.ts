// Where the system cannot share a port among listeners, one data-plane thread serves whatever `workers` asks for, and
// the log says why at startup; where it can, the count asked for is kept.
import { afterEach, describe, expect, test, vi } from 'vitest';
import { chooseWorkerCount, reusePortWorks } from './reuse-port.ts';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('chooseWorkerCount', () => {
  test('a system without SO_REUSEPORT gets one thread instead of four, and one startup line saying so', async () => {
    const log = vi.spyOn(console, 'error').mockImplementation(() => {});
    expect(await chooseWorkerCount(4, async () => false)).toBe(1);
    expect(log.mock.calls).toEqual([['meridian: this system cannot share a port among listeners (SO_REUSEPORT), so one data-plane thread serves instead of 4']]);
  });

  test('a system that shares ports keeps the count, silently', async () => {
    const log = vi.spyOn(console, 'error').mockImplementation(() => {});
    expect(await chooseWorkerCount(4, async () => true)).toBe(4);
    expect(log).not.toHaveBeenCalled();
  });

  test('one thread needs no shared port: the check is not even made', async () => {
    const check = vi.fn(async () => false);
    expect(await chooseWorkerCount(1, check)).toBe(1);
    expect(check).not.toHaveBeenCalled();
  });
});

test.runIf(process.platform === 'linux')('on Linux two listeners share one port, so workers run', async () => {
  expect(await reusePortWorks()).toBe(true);
});
