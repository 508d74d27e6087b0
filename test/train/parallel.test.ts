import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { evaluateModel } from '../../src/eval/evaluate.js';
import { datasetPath, loadSplit } from '../../src/data/cifar-binary.js';
import { loadModel } from '../../src/model/store.js';
import { IMAGE_BYTES } from '../../src/image/preprocess.js';
import { buildModel } from '../../src/model/resnet.js';
import { parseTrainConfig, type TrainConfig } from '../../src/train/config.js';
import { createParallelEvaluator, createParallelTrainer, evaluationThreads, shareBounds, shareOf, trainingThreads } from '../../src/train/parallel.js';
import { createTrainer, type StepBatch, type TrainerOptions } from '../../src/train/step.js';
import { trainModel } from '../../src/train/train.js';
import { benchmarkTraining, formatTrainBench } from '../../src/train/bench.js';
import { tempDir, writeLearnableDataset } from '../helpers/fixtures.js';

describe('sharing a batch between training threads', () => {
  it('splits a batch as evenly as it can, the larger shares first', () => {
    expect(shareBounds(128, 2)).toEqual([[0, 64], [64, 128]]);
    expect(shareBounds(50, 3)).toEqual([[0, 17], [17, 34], [34, 50]]);
    expect(shareBounds(16, 1)).toEqual([[0, 16]]);
  });

  it('gives a share its images, labels and draws, as views or as copies of their own', () => {
    const n = 4;
    const batch: StepBatch = {
      images: Uint8Array.from({ length: n * IMAGE_BYTES }, (_, i) => Math.floor(i / IMAGE_BYTES)),
      labels: Uint8Array.from([5, 6, 7, 8]),
      size: n,
      cutout: { cy: Int32Array.from([1, 2, 3, 4]), cx: Int32Array.from([5, 6, 7, 8]) },
      crops: { dy: Int32Array.from([0, 1, 2, 3]), dx: Int32Array.from([3, 2, 1, 0]), mirror: Int32Array.from([1, 0, 1, 0]) },
      mix: { kind: 'mixup', lambda: 0.3, box: { top: 0, bottom: 0, left: 0, right: 0 } },
    };
    for (const copy of [false, true]) {
      const share = shareOf(batch, 1, 3, copy);
      expect(share.size).toBe(2);
      expect([share.images[0], share.images[IMAGE_BYTES], share.images.length]).toEqual([1, 2, 2 * IMAGE_BYTES]);
      expect([...share.labels]).toEqual([6, 7]);
      expect(share.cutout).toEqual({ cy: Int32Array.from([2, 3]), cx: Int32Array.from([6, 7]) });
      expect(share.crops).toEqual({ dy: Int32Array.from([1, 2]), dx: Int32Array.from([2, 1]), mirror: Int32Array.from([0, 1]) });
      expect(share.mix).toBe(batch.mix);
      // A copy owns a buffer of its share's size (posting a view would send the whole batch).
      expect(share.images.buffer === batch.images.buffer).toBe(!copy);
      if (copy) expect(share.images.buffer.byteLength).toBe(2 * IMAGE_BYTES);
    }
  });

  it('trains in one thread per core on wasm and cpu, one elsewhere, never under 16 images a share', () => {
    expect(trainingThreads('auto', 'wasm', 128, 8)).toBe(8);
    expect(trainingThreads('auto', 'cpu', 128, 2)).toBe(2);
    expect(trainingThreads('auto', 'wasm', 40, 8)).toBe(2);
    expect(trainingThreads('auto', 'wasm', 16, 8)).toBe(1);
    expect(trainingThreads(3, 'wasm', 128, 2)).toBe(3);
    expect(trainingThreads('auto', 'webgpu', 256, 16)).toBe(1);
    expect(trainingThreads(1, 'tensorflow', 256, 16)).toBe(1);
    expect(() => trainingThreads(4, 'webgpu', 256, 16)).toThrow(expect.objectContaining({ code: 'USAGE', message: expect.stringMatching(/^--workers 4: .*wasm and cpu/) }));
  });

  it('evaluates in one thread per core on wasm and cpu, at least 250 images a thread', () => {
    expect(evaluationThreads('auto', 'wasm', 10_000, 8)).toBe(8);
    expect(evaluationThreads('auto', 'wasm', 600, 8)).toBe(3);
    expect(evaluationThreads(2, 'wasm', 100, 8)).toBe(1);
    expect(evaluationThreads('auto', 'webgpu', 10_000, 8)).toBe(1);
    expect(() => evaluationThreads(2, 'webgpu', 10_000, 8)).toThrow(expect.objectContaining({ code: 'USAGE', message: expect.stringMatching(/^--workers 2: evaluation threads are for the wasm and cpu backends/) }));
  });

  it('config: "workers" is auto by default, or a whole number of threads', () => {
    expect(parseTrainConfig({}).workers).toBe('auto');
    expect(parseTrainConfig({ workers: 3 }).workers).toBe(3);
    expect(() => parseTrainConfig({ workers: 0 })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => parseTrainConfig({ workers: 'many' })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

describe('data-parallel training steps (wasm, 2 threads)', () => {
  beforeAll(async () => {
    await initBackend('wasm');
  });

  const options: TrainerOptions = { momentum: 0.9, weightDecay: 5e-4, labelSmoothing: 0.1, mean: [120, 115, 100], std: [60, 60, 60], classes: 10 };
  /** `n` images and labels drawn from `seed`. */
  function batchOf(n: number, seed: number): StepBatch {
    const images = Uint8Array.from({ length: n * IMAGE_BYTES }, (_, i) => (i * 7919 + seed * 104729) % 251);
    const labels = Uint8Array.from({ length: n }, (_, i) => (i * 3 + seed) % 10);
    return { images, labels, size: n };
  }
  /** Two batches back to back. */
  function joined(a: StepBatch, b: StepBatch): StepBatch {
    const images = new Uint8Array([...a.images, ...b.images]);
    return { images, labels: new Uint8Array([...a.labels, ...b.labels]), size: a.size + b.size };
  }
  const weightsOf = (t: { stateTensors(): tf.Tensor[] }) => t.stateTensors().map((w) => Float32Array.from(w.dataSync()));

  it('each thread trains its share and all make the same update: two copies of one share train exactly as one thread on it', async () => {
    const one = buildModel('resnet10-w8', { seed: 3 });
    const two = buildModel('resnet10-w8', { seed: 3 });
    const single = createTrainer(one, options);
    const parallel = createParallelTrainer(two, options, { ranks: 2, backend: 'wasm', model: 'resnet10-w8', seed: 3 });
    try {
      for (const seed of [1, 2, 3]) {
        const share = batchOf(16, seed);
        const a = single.step(share, 0.05);
        const b = parallel.step(joined(share, share), 0.05);
        // The figures are the whole batch's: twice the share's.
        expect(b.lossSum.dataSync()[0]).toBeCloseTo(2 * a.lossSum.dataSync()[0]!, 3);
        expect(b.correct.dataSync()[0]).toBe(2 * a.correct.dataSync()[0]!);
        tf.dispose([a.lossSum, a.correct, b.lossSum, b.correct]);
      }
      // Bit for bit, after three steps: the worker's copy took every update this thread took.
      expect(weightsOf(parallel)).toEqual(weightsOf(single));
      // A test pass shared between the threads (17 and 16 images) gives this thread's alone.
      const test = batchOf(33, 9);
      const data = { images: test.images, labels: test.labels, count: 33 };
      const [shared, alone] = [await parallel.evaluate(data, options), await evaluateModel(two, data, options)];
      expect(shared.predictions).toEqual(alone.predictions);
      expect(shared.accuracy).toBe(alone.accuracy);
      expect(shared.loss).toBeCloseTo(alone.loss, 5);
    } finally {
      single.dispose();
      parallel.dispose();
      one.dispose();
      two.dispose();
    }
  });

  it('the update is the whole batch\'s: the shares\' gradients weighted by their images (17 and 16)', async () => {
    // Plain gradient descent (no momentum or decay): a step moves the weights by −lr × the gradient.
    const plain: TrainerOptions = { ...options, momentum: 0, weightDecay: 0 };
    const [a, b] = [batchOf(17, 4), batchOf(16, 5)];
    const moved = (train: (t: { step: typeof single.step }) => void, trainer: { step: typeof single.step; stateTensors(): tf.Tensor[] }) => {
      const before = weightsOf(trainer);
      train(trainer);
      return weightsOf(trainer).map((w, i) => w.map((v, j) => v - before[i]![j]!));
    };
    const models = [0, 1, 2].map(() => buildModel('resnet10-w8', { seed: 7 }));
    const single = createTrainer(models[0]!, plain);
    const other = createTrainer(models[1]!, plain);
    const parallel = createParallelTrainer(models[2]!, plain, { ranks: 2, backend: 'wasm', model: 'resnet10-w8', seed: 7 });
    try {
      const step = (batch: StepBatch) => (t: { step: typeof single.step }) => tf.dispose(Object.values(t.step(batch, 0.1)));
      const [da, db, dab] = [moved(step(a), single), moved(step(b), other), moved(step(joined(a, b)), parallel)];
      const params = models[0]!.trainableWeights.length;
      let worst = 0;
      for (let i = 0; i < params; i++) {
        const expected = da[i]!.map((v, j) => (17 * v + 16 * db[i]![j]!) / 33);
        const scale = Math.max(...expected.map(Math.abs));
        expected.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - dab[i]![j]!) / scale)));
      }
      expect(worst).toBeLessThan(1e-4);
    } finally {
      [single, other, parallel].forEach((t) => t.dispose());
      models.forEach((m) => m.dispose());
    }
  });

  it('cifar eval\'s threads (createParallelEvaluator) answer as one thread does, with and without flip TTA', async () => {
    const model = buildModel('resnet10-w8', { seed: 5 });
    const evaluator = createParallelEvaluator(model, { ranks: 2, backend: 'wasm', model: 'resnet10-w8' });
    try {
      const test = batchOf(41, 11);
      const data = { images: test.images, labels: test.labels, count: 41 };
      for (const tta of [false, true]) {
        const [shared, alone] = [await evaluator.evaluate(data, options, { tta, batchSize: 8 }), await evaluateModel(model, data, options, { tta })];
        expect(shared.predictions).toEqual(alone.predictions);
        expect(shared).toMatchObject({ accuracy: alone.accuracy, tta });
        expect(shared.loss).toBeCloseTo(alone.loss, 5);
      }
    } finally {
      evaluator.dispose();
      model.dispose();
    }
  });

  it('a thread that fails stops the step with a one-line error instead of leaving the others waiting', async () => {
    // The worker builds another preset than this thread's model: the state it is sent does not fit it.
    const model = buildModel('resnet10-w8', { seed: 1 });
    const parallel = createParallelTrainer(model, options, { ranks: 2, backend: 'wasm', model: 'resnet18-w4', seed: 1 });
    try {
      expect(() => parallel.step(batchOf(32, 1), 0.05)).toThrow(expect.objectContaining({ code: 'BACKEND_FAILED', message: expect.stringMatching(/^a training thread stopped: worker 1: checkpoint holds 100 tensors, the model needs 164$/) }));
    } finally {
      parallel.dispose();
      model.dispose();
    }
  });
});

describe('cifar training in two threads (trainModel, wasm)', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    await writeLearnableDataset(join(dir, 'data', 'cifar-10-batches-bin'), 32);
  });
  afterAll(() => cleanup());
  // 160 images in batches of 32: 5 steps an epoch, two shares of 16.
  const config = (out: string, extra: Partial<TrainConfig> = {}): TrainConfig =>
    parseTrainConfig({ model: 'resnet10-w8', epochs: 3, batchSize: 32, lr: 0.05, backend: 'wasm', workers: 2, data: join(dir, 'data'), out: join(dir, out), ...extra });

  it('lowers the loss, says so in its backend line, and resumed after an interruption ends with the uninterrupted run\'s weights', async () => {
    let threads = 0;
    const full = await trainModel(config('two'), { onStart: (info) => (threads = info.threads) });
    expect(threads).toBe(2);
    expect(full.metadata.backendDetail).toMatch(/^wasm \(.+\): requested; 2 training threads$/);
    expect(full.history[2]!.trainLoss).toBeLessThan(full.history[0]!.trainLoss * 0.9);
    // Its test passes were shared between the threads: the saved model, evaluated alone, scores the same.
    const { model: saved, metadata } = await loadModel(join(dir, 'two'));
    const test = await loadSplit(datasetPath(join(dir, 'data')), 'test');
    expect((await evaluateModel(saved, test, metadata.normalization)).accuracy).toBe(metadata.testAccuracy);
    expect(full.history[2]!.testAccuracy).toBe(metadata.testAccuracy);
    saved.dispose();
    // Interrupted mid-epoch 2: the resumed call sends the checkpoint's state to its new worker.
    await expect(trainModel(config('split'), { maxSteps: 7 })).rejects.toMatchObject({ code: 'ABORTED' });
    const resumed = await trainModel(config('split'), { resume: true });
    expect(resumed.metadata.version).toBe(full.metadata.version);
    // Not the one-thread run: its batch norms saw each share's statistics.
    const one = await trainModel(config('one', { workers: 1 }));
    expect(one.metadata.version).not.toBe(full.metadata.version);
    expect(one.metadata.backendDetail).not.toMatch(/training threads/);
    expect(JSON.parse(await readFile(join(dir, 'two', 'metadata.json'), 'utf8')).config).toMatchObject({ workers: 2 });
  });
});

describe('npm run bench:train (benchmarkTraining)', () => {
  it('measures the trainer in one thread and in those asked for, with the speed-up over one thread from the same run', async () => {
    const result = await benchmarkTraining({ backend: 'wasm', presets: ['resnet10-w8'], batch: 32, threads: [2, 4], minSeconds: 0.05 });
    // 4 threads would leave shares of 8 images: not measured.
    expect(result.rows.map((r) => [r.preset, r.threads, r.batch])).toEqual([['resnet10-w8', 1, 32], ['resnet10-w8', 2, 32]]);
    const [one, two] = result.rows;
    expect(one!.speedup).toBe(1);
    expect(two!.speedup).toBeCloseTo(two!.imagesPerSecond / one!.imagesPerSecond, 10);
    expect(two!.imagesPerSecond).toBeCloseTo((32 * 1000) / two!.msPerStep, 6);
    expect(formatTrainBench(result)).toMatch(/^resnet10-w8 +2 +32 +[\d.]+ +[\d.]+ +[\d.]+x$/m);
  });
});
