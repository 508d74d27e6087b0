import { configDefaults, defineConfig } from 'vitest/config';

/** Runs alone, after everything else: its child process keeps lavapipe compiling on both cores for minutes. */
const TENSOR_CORES = 'test/backend/webgpu-tensor-cores.test.ts';

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: tfjs and sharp tests are CPU-heavy, so run files two at a time.
    maxWorkers: 2,
    minWorkers: 1,
    projects: [
      { extends: true, test: { name: 'main', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, TENSOR_CORES], sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'tensor-cores', include: [TENSOR_CORES], sequence: { groupOrder: 1 } } },
    ],
  },
});
