import * as tf from '@tensorflow/tfjs';
import { countBackendCalls } from '../../src/bench/gpu-counts.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { probeWebGpu } from '../../src/backend/webgpu.js';
import { MAX_ROW_BLOCKS, REDUCE_THREADS, planReduce, runBatchNormGrad, runBatchNormStats, runStatsRow } from '../../src/backend/webgpu-kernels/batchnorm.js';
import { ensureOwnStorage } from '../../src/backend/webgpu-kernels/in-place.js';
import type { WebGpuBackendLike } from '../../src/backend/webgpu-kernels/program.js';
import { BatchNorm, trainingBatchNorm, useWebGpuBatchNorm } from '../../src/model/batchnorm.js';
import { expectClose, randomArray, read } from './helpers.js';

type Shape4 = [number, number, number, number];
const EPS = 1e-5;
const MOMENTUM = 0.8;

describe('webgpu batch-norm reduction plan (pure)', () => {
  it('reads whole rows of up to 256 channels per step, and tiles wider ones', () => {
    expect(planReduce(50, 3)).toMatchObject({ tileC: 3, rowsPerStep: 85, channelTiles: 1, blocks: 1 });
    expect(planReduce(324, 16)).toMatchObject({ tileC: 16, rowsPerStep: 16, rowsPerBlock: 128, blocks: 3 });
    expect(planReduce(30, 300)).toMatchObject({ tileC: 256, rowsPerStep: 1, channelTiles: 2 });
  });

  it('caps the partials per channel for a 256 x 32 x 32 batch and covers every row once', () => {
    for (const [m, c] of [[262_144, 64], [262_144, 3], [4096, 512], [65_536, 130]] as const) {
      const p = planReduce(m, c);
      expect(p.blocks).toBeLessThanOrEqual(MAX_ROW_BLOCKS);
      expect(p.rowsPerBlock * p.blocks).toBeGreaterThanOrEqual(m);
      expect(p.rowsPerBlock * (p.blocks - 1)).toBeLessThan(m);
      expect(p.rowsPerStep * p.tileC).toBeLessThanOrEqual(REDUCE_THREADS);
    }
    expect(planReduce(262_144, 64)).toMatchObject({ rowsPerStep: 4, steps: 128, blocks: 512 });
  });
});

const probe = await probeWebGpu();


interface Inputs {
  shape: Shape4;
  x: Float32Array;
  gamma: Float32Array;
  beta: Float32Array;
  r: Float32Array;
  movingMean: Float32Array;
  movingVariance: Float32Array;
}

function makeInputs(shape: Shape4, seed: number, offset = 0.5, scale = 2): Inputs {
  const c = shape[3];
  const size = shape.reduce((a, b) => a * b, 1);
  return {
    shape,
    x: randomArray(size, seed).map((v) => offset + scale * v),
    gamma: randomArray(c, seed + 1).map((v) => 1.5 + v),
    beta: randomArray(c, seed + 2),
    r: randomArray(size, seed + 3),
    movingMean: randomArray(c, seed + 4),
    movingVariance: randomArray(c, seed + 5).map((v) => 1.5 + v),
  };
}

/** y, mean, variance, dx, dgamma, dbeta of sum(y * r) in float64, from the definitions. */
function reference(v: Inputs): Float32Array[] {
  const c = v.shape[3];
  const m = v.x.length / c;
  const perChannel = (f: (i: number) => number): Float64Array => {
    const out = new Float64Array(c);
    v.x.forEach((_, i) => (out[i % c]! += f(i)));
    return out;
  };
  const mean = perChannel((i) => v.x[i]! / m);
  const variance = perChannel((i) => (v.x[i]! - mean[i % c]!) ** 2 / m);
  const xhat = (i: number): number => (v.x[i]! - mean[i % c]!) / Math.sqrt(variance[i % c]! + EPS);
  const dbeta = perChannel((i) => v.r[i]!);
  const dgamma = perChannel((i) => v.r[i]! * xhat(i));
  const y = v.x.map((_, i) => xhat(i) * v.gamma[i % c]! + v.beta[i % c]!);
  const dx = v.x.map((_, i) => {
    const ch = i % c;
    return ((v.gamma[ch]! / Math.sqrt(variance[ch]! + EPS)) * (m * v.r[i]! - dbeta[ch]! - xhat(i) * dgamma[ch]!)) / m;
  });
  return [y, Float32Array.from(mean), Float32Array.from(variance), dx, Float32Array.from(dgamma), Float32Array.from(dbeta)];
}

const OUTPUTS = ['y', 'mean', 'variance', 'dx', 'dgamma', 'dbeta', 'layer y', 'layer dgamma', 'layer dbeta', 'moving mean', 'moving variance'] as const;

/**
 * Everything the training path produces on `backend`: trainingBatchNorm's y and statistics, its
 * gradients through tf.grads of sum(y * r), and through the BatchNorm layer under
 * tf.variableGrads (as in the training step) the gradients of gamma and beta and the moving statistics.
 */
async function compute(backend: string, v: Inputs): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const [x, g, b, r] = [tf.tensor4d(v.x, v.shape), tf.tensor1d(v.gamma), tf.tensor1d(v.beta), tf.tensor4d(v.r, v.shape)];
  const direct = await read(() => {
    const { y, mean, variance } = trainingBatchNorm(x, g, b, EPS);
    const loss = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor): tf.Tensor => {
      const out = trainingBatchNorm(xi as tf.Tensor4D, gi, bi, EPS);
      tf.dispose([out.mean, out.variance]);
      return tf.sum(tf.mul(out.y, r));
    };
    return [y, mean, variance, ...tf.grads(loss as (...a: tf.Tensor[]) => tf.Tensor)([x, g, b])];
  });
  const layer = new BatchNorm({ momentum: MOMENTUM, epsilon: EPS });
  layer.build(v.shape);
  const moving = [tf.tensor1d(v.movingMean), tf.tensor1d(v.movingVariance)];
  layer.setWeights([g, b, ...moving]);
  const viaLayer = await read(() => {
    let y: tf.Tensor | undefined;
    const vars = layer.trainableWeights.map((w) => w.read() as tf.Variable);
    const { grads } = tf.variableGrads(() => {
      y = tf.keep(layer.apply(x, { training: true }) as tf.Tensor);
      return tf.sum(tf.mul(y, r));
    }, vars);
    const [, , mm, mv] = layer.getWeights();
    return [y!, ...vars.map((w) => grads[w.name]!), mm!.clone(), mv!.clone()];
  });
  layer.weights.forEach((w) => w.dispose()); // built by hand, so Layer.dispose refuses
  tf.dispose([x, g, b, r, ...moving]);
  return [...direct, ...viaLayer];
}

interface ErrorScopes {
  pushErrorScope(filter: 'validation'): void;
  popErrorScope(): Promise<{ message: string } | null>;
}

/**
 * `compute` on webgpu, failing on any WebGPU validation error: tfjs installs no error scope, so a
 * shader that does not compile or a binding that does not match only leaves the output zero.
 */
async function computeOnGpu(v: Inputs): Promise<Float32Array[]> {
  await tf.setBackend('webgpu');
  const device = (tf.backend() as unknown as { device: ErrorScopes }).device;
  device.pushErrorScope('validation');
  const out = await compute('webgpu', v);
  expect((await device.popErrorScope())?.message).toBeUndefined();
  return out;
}

async function compareWithCpu(v: Inputs, tol = 1e-4): Promise<void> {
  const gpu = await computeOnGpu(v);
  const cpu = await compute('cpu', v);
  OUTPUTS.forEach((label, i) => expectClose(gpu[i]!, cpu[i]!, tol, label));
}

// lavapipe: this checks the shaders' arithmetic and the engine bookkeeping, not their speed.
describe.skipIf(!probe.ok)('webgpu batch norm vs the cpu backend', () => {
  beforeAll(async () => {
    expect((await initBackend('webgpu')).name).toBe('webgpu');
  });

  afterAll(async () => {
    useWebGpuBatchNorm(true);
    await tf.setBackend('cpu');
  });

  const cases: Array<{ shape: Shape4; why: string }> = [
    { shape: [2, 5, 5, 3], why: 'one row block, most threads without rows' },
    { shape: [4, 9, 9, 16], why: 'M = 324: three row blocks, the last short' },
    { shape: [3, 7, 9, 64], why: 'M = 189 over 32-row blocks' },
    { shape: [2, 5, 7, 130], why: 'one row per step, half the threads idle' },
    { shape: [6, 10, 10, 130], why: '75 row blocks: more partials than final-reduction threads' },
    { shape: [1, 6, 5, 300], why: 'two channel tiles, the second partial' },
  ];
  for (const { shape, why } of cases) {
    it(`x ${shape.join('x')} (${why}): y, statistics, moving statistics and gradients within 1e-4`, async () => {
      await compareWithCpu(makeInputs(shape, shape[3]));
    });
  }

  it('keeps the statistics and gradients accurate when the mean is large relative to the spread (1000 + U(-1, 1))', async () => {
    // Against float64 arithmetic on the same float32 inputs, not the cpu backend: its plain-sum
    // mean is itself off by ~1e-4 of the spread here, which moves dgamma by about as much.
    const v = makeInputs([4, 9, 9, 16], 7, 1000, 1);
    const want = reference(v);
    const got = await computeOnGpu(v);
    (['y', 'mean', 'variance', 'dx', 'dgamma', 'dbeta'] as const).forEach((label, i) => expectClose(got[i]!, want[i]!, 1e-4, `${label} vs float64`));
  });

  it('leaks no tensors or GPU buffers over forward, backward and the moving update', async () => {
    await tf.setBackend('webgpu');
    const v = makeInputs([3, 7, 9, 64], 3);
    await compute('webgpu', v); // warm-up: compiles, first uploads
    const tensors = tf.memory().numTensors;
    const dataIds = tf.engine().backend.numDataIds();
    await compute('webgpu', v);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(tf.engine().backend.numDataIds()).toBe(dataIds);
  });

  /**
   * One training forward + backward of the layer: the forward, the moving-average update and the
   * gradients, with dy given so that no loss ops are counted. Warmed up first, then counted.
   */
  async function countLayerStep(): Promise<{ dispatches: number; uploads: number }> {
    const shape: Shape4 = [2, 6, 6, 16];
    const v = makeInputs(shape, 5);
    const [x, dy] = [tf.tensor4d(v.x, shape), tf.tensor4d(v.r, shape)];
    const layer = new BatchNorm({ momentum: MOMENTUM });
    const step = (): tf.Tensor[] => tf.grads((xi: tf.Tensor) => layer.apply(xi, { training: true }) as tf.Tensor)([x], dy);
    await read(step);
    // Every dispatch, tfjs programs and our in-place ones alike (one bind group each).
    const counts = await countBackendCalls(async () => {
      const [dx] = tf.tidy(step);
      await dx!.data();
      dx!.dispose();
    });
    layer.dispose();
    tf.dispose([x, dy]);
    return { dispatches: counts!.dispatches, uploads: counts!.uploads };
  }

  it('takes 6 dispatches per layer and training step (3 forward with the moving averages in place, 3 backward) and uploads nothing', async () => {
    await tf.setBackend('webgpu');
    useWebGpuBatchNorm(false);
    const before = await countLayerStep();
    useWebGpuBatchNorm(true);
    const after = await countLayerStep();
    console.log(`batch norm layer, forward + backward + moving update: ${before.dispatches} dispatches and ${before.uploads} uploads op by op, ${after.dispatches} and ${after.uploads} with the programs`);
    expect(after).toEqual({ dispatches: 6, uploads: 0 });
    expect(before.dispatches).toBeGreaterThan(after.dispatches);
  });

  it('trainingBatchNorm alone: 5 forward (2 for mean and variance as [C] tensors), 3 backward', async () => {
    await tf.setBackend('webgpu');
    const shape: Shape4 = [2, 6, 6, 16];
    const v = makeInputs(shape, 6);
    const [x, g, b, dy] = [tf.tensor4d(v.x, shape), tf.tensor1d(v.gamma), tf.tensor1d(v.beta), tf.tensor4d(v.r, shape)];
    const f = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor): tf.Tensor => {
      const { y, mean, variance } = trainingBatchNorm(xi as tf.Tensor4D, gi, bi, EPS);
      tf.dispose([mean, variance]);
      return y;
    };
    const step = (): tf.Tensor[] => tf.grads(f as (...a: tf.Tensor[]) => tf.Tensor)([x, g, b], dy);
    await read(step);
    // Every dispatch, tfjs programs and our in-place ones alike (one bind group each).
    const counts = await countBackendCalls(() => read(step).then(() => undefined));
    tf.dispose([x, g, b, dy]);
    expect({ dispatches: counts!.dispatches, uploads: counts!.uploads }).toEqual({ dispatches: 8, uploads: 0 });
  });

  it('the in-place dispatches give the same numbers as the programs they replace: statistics, moving averages, dbeta and dgamma', async () => {
    await tf.setBackend('webgpu');
    const backend = tf.backend() as unknown as WebGpuBackendLike;
    // 75 row blocks: more partials than the final reduction's threads.
    const shape: Shape4 = [6, 10, 10, 130];
    const v = makeInputs(shape, 8);
    const [x, g, dy] = [tf.tensor4d(v.x, shape), tf.tensor1d(v.gamma), tf.tensor4d(v.r, shape)];
    const track = (info: tf.TensorInfo): tf.Tensor => tf.engine().makeTensorFromTensorInfo(info);
    // Programs: the statistics, then each moving average blended by a program of its own.
    const [mean0, variance0] = [tf.variable(tf.tensor1d(v.movingMean)), tf.variable(tf.tensor1d(v.movingVariance))];
    const stats0 = track(runBatchNormStats(backend, x));
    const blended = [track(runStatsRow(backend, stats0, 0, mean0, MOMENTUM)), track(runStatsRow(backend, stats0, 1, variance0, MOMENTUM))];
    const grads0 = runBatchNormGrad(backend, dy, x, stats0, g, EPS, false);
    // In place: the moving averages in the statistics' dispatch, both parameter gradients in one.
    const [mean1, variance1] = [tf.variable(tf.tensor1d(v.movingMean)), tf.variable(tf.tensor1d(v.movingVariance))];
    ensureOwnStorage(mean1);
    ensureOwnStorage(variance1);
    const stats1 = track(runBatchNormStats(backend, x, { mean: mean1, variance: variance1, momentum: MOMENTUM }));
    const grads1 = runBatchNormGrad(backend, dy, x, stats1, g, EPS, true);
    const pairs: Array<[string, tf.Tensor, tf.Tensor]> = [
      ['stats', stats0, stats1],
      ['moving mean', blended[0]!, mean1],
      ['moving variance', blended[1]!, variance1],
      ['dbeta', track(grads0.dBeta), track(grads1.dBeta)],
      ['dgamma', track(grads0.dGamma), track(grads1.dGamma)],
      ['dx', track(grads0.dx), track(grads1.dx)],
    ];
    for (const [label, want, got] of pairs) expect(Array.from(await got.data()), label).toEqual(Array.from(await want.data()));
    // And both against float64: the in-place path is not merely equal to a wrong program.
    const [, rMean, rVariance, , rDgamma, rDbeta] = reference(v);
    const stats = (await stats1.data()) as Float32Array;
    expectClose(stats.subarray(0, 130), rMean!, 1e-4, 'mean');
    expectClose(stats.subarray(130), rVariance!, 1e-4, 'variance');
    expectClose((await pairs[4]![2].data()) as Float32Array, rDgamma!, 1e-4, 'dgamma');
    expectClose((await pairs[3]![2].data()) as Float32Array, rDbeta!, 1e-4, 'dbeta');
    const movingWant = v.movingMean.map((m0, i) => MOMENTUM * m0 + (1 - MOMENTUM) * rMean![i]!);
    expectClose((await mean1.data()) as Float32Array, movingWant, 1e-4, 'moving mean vs float64');
    tf.dispose([x, g, dy, mean0, variance0, mean1, variance1, ...blended, ...pairs.flatMap(([, a, b]) => [a, b])]);
  });
});
