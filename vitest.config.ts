import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: tfjs and sharp tests are CPU-heavy, so run files two at a time.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
