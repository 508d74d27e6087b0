import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { broadcastAxes } from '../../src/backend/gradients.js';
import { expectClose, randomArray } from './helpers.js';

beforeAll(async () => {
  await initBackend('wasm');
});

describe('Mean and Sum gradients without JS-side ones()', () => {
  it.each([
    { shape: [4, 5, 6, 3], axis: [0, 1, 2] },
    { shape: [4, 5, 6, 3], axis: [1, 2] },
    { shape: [4, 5, 6, 3], axis: [3] },
    { shape: [4, 5, 6, 3], axis: [0, 2] },
  ])('match the analytic gradient for shape $shape, axes $axis', ({ shape, axis }) => {
    const size = shape.reduce((a, b) => a * b);
    const x = tf.tensor(randomArray(size, 7), shape);
    const count = axis.reduce((n, a) => n * (shape[a] ?? 1), 1);
    const w = tf.tensor(randomArray(size / count, 8));
    // d/dx sum(w * mean(x)) = w broadcast / count; same for sum without the division.
    const gMean = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.reshape(tf.mean(v, axis), w.shape), w)))(x);
    const gSum = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.reshape(tf.sum(v, axis), w.shape), w)))(x);
    const kept = shape.map((d, i) => (axis.includes(i) ? 1 : d));
    const expected = tf.mul(tf.reshape(w, kept), tf.ones(shape));
    expectClose(gSum.dataSync() as Float32Array, expected.dataSync() as Float32Array, 1e-6, 'sum');
    expectClose(gMean.dataSync() as Float32Array, tf.div(expected, count).dataSync() as Float32Array, 1e-6, 'mean');
  });

  it('broadcastAxes broadcasts over leading, middle and trailing axes', () => {
    const small = tf.tensor([1, 2, 3], [1, 1, 3]);
    expect(broadcastAxes(small, [2, 2, 3], [0, 1]).arraySync()).toEqual([[[1, 2, 3], [1, 2, 3]], [[1, 2, 3], [1, 2, 3]]]);
    expect(broadcastAxes(tf.tensor([1, 2], [2, 1]), [2, 3], [1]).arraySync()).toEqual([[1, 1, 1], [2, 2, 2]]);
    // With a scale (Mean's 1/count), on the contiguous, non-contiguous and no-axis paths.
    expect(broadcastAxes(small, [2, 2, 3], [0, 1], 0.5).arraySync()).toEqual([[[0.5, 1, 1.5], [0.5, 1, 1.5]], [[0.5, 1, 1.5], [0.5, 1, 1.5]]]);
    expect(broadcastAxes(tf.tensor([1, 2], [1, 2, 1]), [2, 2, 2], [0, 2], 0.25).arraySync()).toEqual([[[0.25, 0.25], [0.5, 0.5]], [[0.25, 0.25], [0.5, 0.5]]]);
    expect(broadcastAxes(tf.tensor([4, 8], [2]), [2], [], 0.25).arraySync()).toEqual([1, 2]);
  });
});
