import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { probeWebGpu } from '../../src/backend/webgpu.js';
import { compiledProgramCount, compileInParallel } from '../../src/backend/webgpu-kernels/compile.js';
import { flatDispatch } from '../../src/backend/webgpu-kernels/program.js';
import { averageAllInPlace, averageGroupSize, canUpdateInPlace, deviceSgdGroupSize, sgdGroupSize, sgdUpdateAllInPlace } from '../../src/backend/webgpu-kernels/sgd.js';
import { countBackendCalls } from '../../src/bench/gpu-counts.js';
import { buildModel } from '../../src/model/resnet.js';
import type { SampleMix } from '../../src/image/mix.js';
import { createTrainer } from '../../src/train/step.js';
import { expectClose, randomArray, useWebGpuInSuite } from './helpers.js';

describe('in-place SGD grouping (pure)', () => {
  it('updates as many tensors a dispatch as the storage-buffer limit allows at three buffers each, at most 8', () => {
    expect(sgdGroupSize()).toBe(2);
    expect(sgdGroupSize(8)).toBe(2);
    expect(sgdGroupSize(10)).toBe(3);
    expect(sgdGroupSize(16)).toBe(5);
    expect(sgdGroupSize(24)).toBe(8);
    expect(sgdGroupSize(3)).toBe(1);
    expect(sgdGroupSize(1)).toBe(1);
    expect(sgdGroupSize(1_000_000)).toBe(8);
  });

  it('averages as many tensors a dispatch as the limit allows at two buffers each, at most 8', () => {
    expect(averageGroupSize()).toBe(4);
    expect(averageGroupSize(16)).toBe(8);
    expect(averageGroupSize(10)).toBe(5);
    expect(averageGroupSize(3)).toBe(1);
    expect(averageGroupSize(1)).toBe(1);
  });
});

describe('in-place SGD dispatch grid (pure)', () => {
  it('covers every element with 256-wide workgroups, wrapping past 65,535 groups in x', () => {
    expect(flatDispatch(1)).toEqual([1, 1, 1]);
    expect(flatDispatch(257)).toEqual([2, 1, 1]);
    expect(flatDispatch(512 * 512 * 9)).toEqual([9216, 1, 1]);
    expect(flatDispatch(65535 * 256 + 1)).toEqual([65535, 2, 1]);
  });
});

const probe = await probeWebGpu();

/** v ← μv + g + λw; w ← w − lr(g + λw + μv), in plain JS. */
function reference(w: Float32Array, v: Float32Array, g: Float32Array, lr: number, mu: number, decay: number): [Float32Array, Float32Array] {
  const w2 = new Float32Array(w.length);
  const v2 = new Float32Array(v.length);
  for (let i = 0; i < w.length; i++) {
    const gi = g[i]! + decay * w[i]!;
    v2[i] = mu * v[i]! + gi;
    w2[i] = w[i]! - lr * (gi + mu * v2[i]!);
  }
  return [w2, v2];
}

describe.skipIf(!probe.ok)('in-place SGD update on webgpu', () => {
  useWebGpuInSuite();

  it('is available on webgpu only', async () => {
    expect(canUpdateInPlace()).toBe(true);
    await tf.setBackend('cpu');
    expect(canUpdateInPlace()).toBe(false);
    await tf.setBackend('webgpu');
  });

  it('while tfjs only compiles, compiles its program and changes nothing; the update then runs without compiling', async () => {
    const [w, v] = [tf.variable(tf.tensor1d([1, 2, 3])), tf.variable(tf.tensor1d([0.5, 0, -0.5]))];
    const g = tf.tensor1d([1, 1, 1]);
    const items = [{ weights: w, velocity: v, grad: g, weightDecay: 0 }];
    try {
      await compileInParallel(() => sgdUpdateAllInPlace(items, { lr: 0.1, momentum: 0.9 }));
      expect(Array.from(await w.data())).toEqual([1, 2, 3]);
      expect(Array.from(await v.data())).toEqual([0.5, 0, -0.5]);
      const programs = compiledProgramCount();
      sgdUpdateAllInPlace(items, { lr: 0.1, momentum: 0.9 });
      expect(compiledProgramCount()).toBe(programs);
      // v = 0.9·v + g; w = w − 0.1·(g + 0.9·v)
      expectClose((await v.data()) as Float32Array, Float32Array.from([1.45, 1, 0.55]), 1e-6, 'velocity');
      expectClose((await w.data()) as Float32Array, Float32Array.from([1 - 0.1 * (1 + 0.9 * 1.45), 2 - 0.1 * 1.9, 3 - 0.1 * (1 + 0.9 * 0.55)]), 1e-6, 'weights');
    } finally {
      tf.dispose([w, v, g]);
    }
  });

  for (const decay of [0, 5e-4]) {
    it(`updates weights and velocity in place, ordered after the ops that made the gradient (decay ${decay})`, async () => {
      const n = 1000;
      const [wv, vv, gv] = [1, 2, 3].map((s) => randomArray(n, s));
      // Made on the GPU (a kernel's output), as a trained model's weights are.
      const w = tf.variable(tf.tidy(() => tf.mul(tf.tensor1d(wv!), 1)));
      const v = tf.variable(tf.tidy(() => tf.mul(tf.tensor1d(vv!), 1)));
      const ids = [w.dataId, v.dataId];
      // Read them first: the backend then keeps a CPU copy, which the update must not leave stale.
      expect((await w.data())[0]).toBe(wv![0]);
      expect((await v.data())[0]).toBe(vv![0]);
      const half = tf.tensor1d(gv!.map((x) => x / 2));
      const g = tf.mul(half, 2); // computed on the GPU just before the update, still unsubmitted
      sgdUpdateAllInPlace([{ weights: w, velocity: v, grad: g, weightDecay: decay }], { lr: 0.1, momentum: 0.9 });
      tf.dispose([g, half]); // disposal waits for the submission
      const [ew, ev] = reference(wv!, vv!, gv!, 0.1, 0.9, decay);
      expectClose((await w.data()) as Float32Array, ew, 1e-6, 'w');
      expectClose((await v.data()) as Float32Array, ev, 1e-6, 'v');
      expect([w.dataId, v.dataId]).toEqual(ids);
      tf.dispose([w, v]);
    });
  }

  it('asks the device for the adapter\'s storage buffers a stage, up to 24, and groups the update by them', async () => {
    const adapter = await (globalThis as unknown as { navigator: { gpu: { requestAdapter(): Promise<{ limits: { maxStorageBuffersPerShaderStage: number } }> } } }).navigator.gpu.requestAdapter();
    const offered = adapter.limits.maxStorageBuffersPerShaderStage;
    const device = (tf.backend() as unknown as { device: { limits: { maxStorageBuffersPerShaderStage: number } } }).device;
    expect(offered).toBeGreaterThan(8); // lavapipe offers 16: the check below is not WebGPU's default
    expect(device.limits.maxStorageBuffersPerShaderStage).toBe(Math.min(offered, 24));
    expect(deviceSgdGroupSize()).toBe(sgdGroupSize(Math.min(offered, 24)));
  });

  it('updates many tensors of different sizes and decays, several a dispatch, each as alone', async () => {
    // More tensors than one group holds (5 on lavapipe), so that a group boundary is crossed.
    const sizes = [1000, 3, 257, 64, 5, 1, 300];
    const decays = [5e-4, 0, 5e-4, 0, 1e-2, 5e-4, 0];
    const made = sizes.map((n, j) => {
      const [wv, vv, gv] = [1, 2, 3].map((s) => randomArray(n, 10 * j + s)) as [Float32Array, Float32Array, Float32Array];
      const w = tf.variable(tf.tidy(() => tf.mul(tf.tensor1d(wv), 1)));
      const v = tf.variable(tf.tidy(() => tf.mul(tf.tensor1d(vv), 1)));
      return { wv, vv, gv, w, v, g: tf.tensor1d(gv) };
    });
    const counts = await countBackendCalls(async () => {
      sgdUpdateAllInPlace(made.map((m, j) => ({ weights: m.w, velocity: m.v, grad: m.g, weightDecay: decays[j]! })), { lr: 0.1, momentum: 0.9 });
      await made[0]!.w.data();
    });
    expect(deviceSgdGroupSize()).toBeGreaterThan(2);
    expect(deviceSgdGroupSize()).toBeLessThan(sizes.length);
    expect(counts!.dispatches).toBe(Math.ceil(sizes.length / deviceSgdGroupSize()));
    for (const [j, m] of made.entries()) {
      const [ew, ev] = reference(m.wv, m.vv, m.gv, 0.1, 0.9, decays[j]!);
      expectClose((await m.w.data()) as Float32Array, ew, 1e-6, `w${j}`);
      expectClose((await m.v.data()) as Float32Array, ev, 1e-6, `v${j}`);
      tf.dispose([m.w, m.v, m.g]);
    }
  });

  it('averages many tensors of different sizes in place, several a dispatch: a ← d·a + (1 − d)·x', async () => {
    // More tensors than one group holds (8 on lavapipe), so that a group boundary is crossed.
    const sizes = [1000, 3, 257, 64, 5, 1, 300, 17, 2, 4096];
    const made = sizes.map((n, j) => {
      const [av, xv] = [1, 2].map((s) => randomArray(n, 10 * j + s)) as [Float32Array, Float32Array];
      const a = tf.variable(tf.tidy(() => tf.mul(tf.tensor1d(av), 1)));
      return { av, xv, a, id: a.dataId, x: tf.tidy(() => tf.mul(tf.tensor1d(xv), 1)) };
    });
    await made[0]!.a.data(); // a CPU copy the update must not leave stale
    const group = averageGroupSize((tf.backend() as unknown as { device: { limits: { maxStorageBuffersPerShaderStage: number } } }).device.limits.maxStorageBuffersPerShaderStage);
    expect(group).toBeLessThan(sizes.length);
    const counts = await countBackendCalls(async () => {
      averageAllInPlace(made.map((m) => ({ average: m.a, value: m.x })), 0.9);
      await made[0]!.a.data();
    });
    expect(counts!.dispatches).toBe(Math.ceil(sizes.length / group));
    for (const [j, m] of made.entries()) {
      expectClose((await m.a.data()) as Float32Array, m.av.map((a, i) => 0.9 * a + 0.1 * m.xv[i]!), 1e-6, `average ${j}`);
      expect(m.a.dataId).toBe(m.id);
      tf.dispose([m.a, m.x]);
    }
  });

  it('a training step matches the cpu backend over two steps, with several parameter tensors a dispatch and no upload for them', async () => {
    const batch = 4;
    const images = Uint8Array.from(randomArray(batch * 3072, 7), (x) => Math.floor((x + 1) * 127.5));
    const labels = Uint8Array.from([1, 5, 9, 0]);
    const options = { momentum: 0.9, weightDecay: 5e-4, labelSmoothing: 0.1, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], classes: 10 };
    await tf.setBackend('cpu');
    // Deterministic weights (He-uniform kernels, stock batch-norm values), so that the comparison
    // below checks the same numbers on every run.
    const init = buildModel('resnet10-w8').getWeights().map((t, i) => {
      if (t.shape.length === 1) return { shape: t.shape, values: t.dataSync() as Float32Array };
      const fanIn = t.shape.slice(0, -1).reduce((a, b) => a * b, 1);
      return { shape: t.shape, values: randomArray(t.size, 100 + i).map((v) => v * Math.sqrt(6 / fanIn)) };
    });

    let group = 0;
    const train = async (backend: string, fusedUpdate = true): Promise<{ weights: Float32Array[]; params: number; decayed: number; counts: Awaited<ReturnType<typeof countBackendCalls>> }> => {
      await tf.setBackend(backend);
      if (backend === 'webgpu') group = deviceSgdGroupSize();
      const model = buildModel('resnet10-w8');
      model.setWeights(init.map((w) => tf.tensor(w.values, w.shape)));
      const trainer = createTrainer(model, { ...options, fusedUpdate });
      // As \`cifar train\` does: compiled first, in parallel (on lavapipe, a step that compiled its
      // own programs held the JavaScript thread for over a minute).
      await trainer.precompile(batch);
      const step = async (): Promise<void> => {
        const { lossSum, correct } = trainer.step({ images, labels, size: batch }, 0.05);
        await lossSum.data();
        tf.dispose([lossSum, correct]);
      };
      await step();
      // Read everything between the steps, as a checkpoint does (a stale CPU copy would then show).
      await Promise.all(trainer.stateTensors().map((t) => t.data()));
      const counts = await countBackendCalls(step);
      const weights = await Promise.all(model.getWeights().map(async (t) => (await t.data()) as Float32Array));
      const params = model.trainableWeights.length;
      const decayed = model.trainableWeights.filter((w) => /kernel$/.test(w.originalName)).length;
      trainer.dispose();
      model.dispose();
      return { weights, params, decayed, counts };
    };
    const gpu = await train('webgpu');
    const ops = await train('webgpu', false);
    const cpu = await train('cpu');
    gpu.weights.forEach((w, i) => expectClose(w, cpu.weights[i]!, 1e-3, `weight ${i}`));
    ops.weights.forEach((w, i) => expectClose(w, cpu.weights[i]!, 1e-3, `weight ${i} (tfjs ops)`));
    // tfjs ops: 6 dispatches and 3 scalar uploads per parameter tensor (lr, momentum twice), 2 and
    // 1 more for weight decay on kernels; fused: one dispatch per group of tensors (5 with
    // lavapipe's 16 storage buffers a stage), no upload.
    expect(gpu.decayed).toBeGreaterThan(5);
    expect(group).toBeGreaterThan(2);
    expect(ops.counts!.uploads - gpu.counts!.uploads).toBe(3 * gpu.params + gpu.decayed);
    expect(ops.counts!.dispatches - gpu.counts!.dispatches).toBe(6 * gpu.params + 2 * gpu.decayed - Math.ceil(gpu.params / group));
  });

  it('a step on a mixed batch (cutmix after crops, or mixup) matches the cpu backend: the input dispatch and the fused loss mix as the ops do', async () => {
    const batch = 4;
    const images = Uint8Array.from({ length: batch * 3072 }, (_, i) => (i * 53 + (i >> 9)) % 256);
    const labels = Uint8Array.from([2, 7, 7, 3]);
    const crops = { dy: Int32Array.of(-2, 0, 3, 1), dx: Int32Array.of(4, -1, 0, -3), mirror: Int32Array.of(1, 0, 0, 1) };
    const mixes: SampleMix[] = [
      { kind: 'cutmix', lambda: 0.75, box: { top: 4, bottom: 20, left: 10, right: 26 } },
      { kind: 'mixup', lambda: 0.35, box: { top: 0, bottom: 0, left: 0, right: 0 } },
    ];
    const options = { momentum: 0.9, weightDecay: 5e-4, labelSmoothing: 0.1, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], classes: 10, crops: true, mix: true };
    const stepOn = async (backend: string, mix: SampleMix) => {
      await tf.setBackend(backend);
      const model = buildModel('resnet10-w8', { seed: 9 });
      const trainer = createTrainer(model, options);
      await trainer.precompile(batch);
      const { lossSum, correct } = trainer.step({ images, labels, size: batch, crops, mix }, 0.05);
      const figures = [(await lossSum.data())[0]!, (await correct.data())[0]!];
      tf.dispose([lossSum, correct]);
      const weights = await Promise.all(model.getWeights().map(async (t) => (await t.data()) as Float32Array));
      trainer.dispose();
      model.dispose();
      return { figures, weights };
    };
    for (const mix of mixes) {
      const gpu = await stepOn('webgpu', mix);
      const cpu = await stepOn('cpu', mix);
      expect(gpu.figures[0]).toBeCloseTo(cpu.figures[0]!, 3);
      expect(gpu.figures[1]).toBeCloseTo(cpu.figures[1]!, 5);
      gpu.weights.forEach((w, i) => expectClose(w, cpu.weights[i]!, 1e-3, `${mix.kind}: weight ${i}`));
      // The mix changed the step: a plain batch's step ends elsewhere.
      const plain = await stepOn('cpu', { ...mix, kind: 'mixup', lambda: 1 });
      expect(Math.max(...plain.weights[0]!.map((v, j) => Math.abs(v - cpu.weights[0]![j]!)))).toBeGreaterThan(1e-4);
    }
    await tf.setBackend('webgpu');
  });

  it('a step with a weight average keeps it in place as the tfjs ops do, the batch-norm statistics included', async () => {
    const batch = 4;
    const images = Uint8Array.from({ length: batch * 3072 }, (_, i) => (i * 37) % 251);
    const labels = Uint8Array.from([1, 5, 9, 0]);
    const options = { momentum: 0.9, weightDecay: 5e-4, labelSmoothing: 0.1, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], classes: 10, ema: 0.5 };
    const run = async (fusedUpdate: boolean) => {
      const model = buildModel('resnet10-w8', { seed: 5 });
      const trainer = createTrainer(model, { ...options, fusedUpdate });
      await trainer.precompile(batch);
      for (let s = 0; s < 2; s++) {
        const { lossSum, correct } = trainer.step({ images, labels, size: batch }, 0.05);
        await lossSum.data();
        tf.dispose([lossSum, correct]);
      }
      const read = async () => Promise.all(model.weights.map(async (w) => (await w.read().data()) as Float32Array));
      const live = await read();
      const averaged = await trainer.withAverage(read);
      trainer.dispose();
      model.dispose();
      return { live, averaged, names: model.weights.map((w) => w.name) };
    };
    const fused = await run(true);
    const ops = await run(false);
    fused.averaged.forEach((a, i) => expectClose(a, ops.averaged[i]!, 1e-4, `average ${fused.names[i]}`));
    const movingVariance = fused.names.findIndex((n) => /moving_variance/.test(n));
    expect(fused.averaged[movingVariance]).not.toEqual(fused.live[movingVariance]);
  });
});
