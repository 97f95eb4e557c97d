import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: keep file-level parallelism modest so server-backed suites do not starve.
    maxWorkers: 2,
  },
});
