import { defineConfig } from 'vitest/config';

// Tests open real sockets and child processes; forks keep a crashed server from taking the runner down.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
