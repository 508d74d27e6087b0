import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { probeWebGpu } from '../../src/backend/webgpu.js';
import { compiledProgramCount, compileInParallel } from '../../src/backend/webgpu-kernels/compile.js';
import { mulberry32 } from '../../src/data/shuffle.js';
import { IMAGE_BYTES } from '../../src/image/preprocess.js';
import { buildModel } from '../../src/model/resnet.js';
import { createTrainer } from '../../src/train/step.js';
import { compileEvaluation, evaluateModel } from '../../src/eval/evaluate.js';
import { predictorFromModel } from '../../src/model/predictor.js';

const probe = await probeWebGpu();
const OPTIONS = { momentum: 0.9, weightDecay: 5e-4, labelSmoothing: 0.1, mean: [0.49, 0.48, 0.45], std: [0.25, 0.24, 0.26], classes: 10, cutout: 8 };
const SIZE = 8;

async function snapshot(model: tf.LayersModel): Promise<Float32Array[]> {
  return Promise.all(model.weights.map(async (w) => (await w.read().data()) as Float32Array));
}

describe('compileInParallel on another backend', () => {
  it('runs nothing and reports no programs', async () => {
    await tf.setBackend('cpu');
    let ran = false;
    expect(await compileInParallel(() => void (ran = true))).toBe(0);
    expect(ran).toBe(false);
    expect(compiledProgramCount()).toBe(0);
  });
});

describe.skipIf(!probe.ok)('compiling a training step in parallel on webgpu', () => {
  beforeAll(async () => {
    expect((await initBackend('webgpu')).name).toBe('webgpu');
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('compiles all the programs of a step (its update included) and most of the test pass before they run, changes no weight or statistic, and both then give what they give without it', async () => {
    const random = mulberry32(7);
    const images = Uint8Array.from({ length: SIZE * IMAGE_BYTES }, () => Math.floor(random() * 256));
    const labels = Uint8Array.from({ length: SIZE }, () => Math.floor(random() * 10));
    const centres = { cy: Int32Array.from({ length: SIZE }, (_, i) => (i * 5) % 32), cx: Int32Array.from({ length: SIZE }, (_, i) => (i * 11) % 32) };
    // Two copies of one model, with an unusual width so that no earlier test compiled its programs.
    const config = { baseWidth: 5, blocks: [1, 1, 1, 1] as const };
    const [a, b] = [buildModel(config), buildModel(config)];
    b.setWeights(a.getWeights());
    const [ta, tb] = [createTrainer(a, OPTIONS), createTrainer(b, OPTIONS)];
    try {
      const before = await snapshot(a);
      const programs = await ta.precompile(SIZE);
      expect(programs).toBeGreaterThan(20);
      // Nothing ran: the weights and batch-norm statistics are as they were.
      expect(await snapshot(a)).toEqual(before);
      // The step itself then compiles no program (ours in place, the fused loss, SGD and batch
      // norm's, included: made synchronously after work was submitted, one held lavapipe's
      // JavaScript thread for the whole compilation of that work), and gives what the other
      // trainer's step gives.
      const count = compiledProgramCount();
      const out = ta.step({ images, labels, size: SIZE, cutout: centres }, 0.05);
      expect(compiledProgramCount() - count).toBe(0);
      const ref = tb.step({ images, labels, size: SIZE, cutout: centres }, 0.05);
      expect((await out.lossSum.data())[0]).toBeCloseTo((await ref.lossSum.data())[0]!, 5);
      const [wa, wb] = [await snapshot(a), await snapshot(b)];
      wa.forEach((w, i) => w.forEach((v, j) => expect(v).toBeCloseTo(wb[i]![j]!, 5)));
      tf.dispose([out.lossSum, out.correct, ref.lossSum, ref.correct]);

      // The test pass: its batches of 6 and the last one of 2 (14 images), folded batch norms.
      const test = { images: Uint8Array.from({ length: 14 * IMAGE_BYTES }, () => Math.floor(random() * 256)), labels: Uint8Array.from({ length: 14 }, (_, i) => i % 10), count: 14 };
      const evalPrograms = await compileEvaluation(a, OPTIONS, test.count, { batchSize: 6 });
      expect(evalPrograms).toBeGreaterThan(10);
      const atEval = compiledProgramCount();
      const ev = await evaluateModel(a, test, OPTIONS, { batchSize: 6 });
      expect(compiledProgramCount() - atEval).toBeLessThan(evalPrograms / 10);
      expect(ev.predictions).toEqual((await evaluateModel(b, test, OPTIONS, { batchSize: 6 })).predictions);

      // What cifar serve warms up: a predictor's passes of 1 and of 5 images.
      const predictor = predictorFromModel(a, OPTIONS, { name: 'a', version: 'x', classes: [...'0123456789'], backend: 'webgpu' });
      const predictPrograms = await predictor.compile!([1, 5]);
      expect(predictPrograms).toBeGreaterThan(0);
      const atPredict = compiledProgramCount();
      const probs = await predictor.predict(test.images.subarray(0, 5 * IMAGE_BYTES), 5);
      await predictor.predict(test.images.subarray(0, IMAGE_BYTES), 1);
      expect(compiledProgramCount() - atPredict).toBeLessThanOrEqual(2);
      expect(probs.length).toBe(50);
    } finally {
      ta.dispose();
      tb.dispose();
      a.dispose();
      b.dispose();
    }
  });
});
