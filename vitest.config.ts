import { configDefaults, defineConfig } from 'vitest/config';
import { LAVAPIPE_TIMEOUT_MS } from './test/helpers/lavapipe.js';

/** Runs alone, after everything else: its child process keeps lavapipe compiling on both cores for minutes. */
const TENSOR_CORES = 'test/backend/webgpu-tensor-cores.test.ts';
/** The files whose tests run WebGPU programs on lavapipe (when it is there): minutes of shader compiles each. */
const LAVAPIPE = ['test/backend/webgpu-*.test.ts', 'test/bench/bench-gpu.test.ts', 'test/cli/webgpu.test.ts', 'test/model/training-graph.test.ts'];
/** Slow-compiler limits for the lavapipe files (test/helpers/lavapipe.ts says why). */
const lavapipeLimits = { testTimeout: LAVAPIPE_TIMEOUT_MS, hookTimeout: LAVAPIPE_TIMEOUT_MS };

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: tfjs and sharp tests are CPU-heavy, so run files two at a time.
    maxWorkers: 2,
    minWorkers: 1,
    projects: [
      { extends: true, test: { name: 'main', include: ['test/**/*.test.ts'], exclude: [...configDefaults.exclude, ...LAVAPIPE], sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'webgpu', include: LAVAPIPE, exclude: [...configDefaults.exclude, TENSOR_CORES], ...lavapipeLimits, sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: 'tensor-cores', include: [TENSOR_CORES], ...lavapipeLimits, sequence: { groupOrder: 1 } } },
    ],
  },
});
