import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { buildModel } from '../../src/model/resnet.js';
import { expectClose, randomArray } from './helpers.js';

// A 6-channel first stage: channel counts that are not multiples of XNNPACK's SIMD width.
const config = { baseWidth: 6, blocks: [1, 1, 1, 1] as const };

beforeAll(async () => {
  await initBackend('wasm');
});

function lossFn(model: tf.LayersModel, x: tf.Tensor, y: tf.Tensor): () => tf.Scalar {
  return () => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor);
}

describe('training on wasm', () => {
  it('a full training step gives the same loss and gradients as the cpu backend', async () => {
    const batch = 3;
    const xs = randomArray(batch * 32 * 32 * 3, 11);
    const labels = [1, 7, 3];
    // Seeded: from unseeded weights a pre-activation could now and then fall within rounding of
    // zero, where the two backends' ReLUs disagree (one CI run failed so; 40 seeds all agree to 4e-6).
    const grads: Record<string, Float32Array[]> = {};
    let weights: tf.Tensor[] | undefined;
    for (const backend of ['cpu', 'wasm']) {
      await tf.setBackend(backend);
      const model = buildModel(config, { seed: 0 });
      if (weights) model.setWeights(weights);
      else weights = model.getWeights().map((w) => tf.keep(w.clone()));
      const x = tf.tensor4d(xs, [batch, 32, 32, 3]);
      const y = tf.oneHot(tf.tensor1d(labels, 'int32'), 10);
      const { value, grads: g } = tf.variableGrads(lossFn(model, x, y), model.trainableWeights.map((w) => w.read() as tf.Variable));
      grads[backend] = [value.dataSync() as Float32Array, ...Object.values(g).map((t) => t.dataSync() as Float32Array)];
      model.dispose();
    }
    const [cpu, wasm] = [grads['cpu'] ?? [], grads['wasm'] ?? []];
    expect(wasm.length).toBe(cpu.length);
    cpu.forEach((expected, i) => expectClose(wasm[i] ?? new Float32Array(), expected, 1e-3, `gradient ${i}`));
  });

  it('a tiny model learns a tiny synthetic dataset: the loss falls', async () => {
    await tf.setBackend('wasm');
    // Four classes, each a distinct mean colour plus noise: learnable in a few steps.
    const n = 32;
    const labels = Array.from({ length: n }, (_, i) => i % 4);
    const noise = randomArray(n * 32 * 32 * 3, 5);
    const x = tf.tidy(() => {
      const means = tf.tensor2d([[1, -1, 0], [-1, 1, 0], [0, 1, -1], [1, 0, 1]]);
      const perImage = tf.gather(means, tf.tensor1d(labels, 'int32')).reshape([n, 1, 1, 3]);
      return tf.add(tf.mul(tf.tensor4d(noise, [n, 32, 32, 3]), 0.5), perImage);
    });
    const y = tf.oneHot(tf.tensor1d(labels, 'int32'), 10);
    const model = buildModel({ baseWidth: 4, blocks: [1, 1, 1, 1] }, { seed: 0 });
    const optimizer = tf.train.adam(0.01);
    const losses: number[] = [];
    for (let step = 0; step < 12; step++) {
      const loss = optimizer.minimize(lossFn(model, x, y), true) as tf.Scalar;
      losses.push(loss.dataSync()[0] ?? NaN);
      loss.dispose();
    }
    const first = losses[0] ?? NaN;
    const last = losses[losses.length - 1] ?? NaN;
    expect(last, losses.map((l) => l.toFixed(3)).join(' ')).toBeLessThan(first * 0.5);
    model.dispose();
  });
});
