import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { smoothedCrossEntropy, stepLoss } from '../../src/train/step.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('label-smoothed cross-entropy', () => {
  const logits = [
    [2.0, -1.0, 0.5],
    [0.1, 0.2, 3.0],
    [-2.0, 1.5, 1.5],
    [0.0, 0.0, 0.0],
  ];
  const labels = [0, 2, 1, 1];
  const [n, k, s] = [4, 3, 0.1];
  /** The targets (1 − s + s/k on the label, s/k elsewhere) and softmax, in plain JS. */
  const target = (i: number, j: number) => (j === labels[i] ? 1 - s + s / k : s / k);
  const softmax = logits.map((row) => {
    const e = row.map((v) => Math.exp(v - Math.max(...row)));
    const z = e.reduce((a, b) => a + b);
    return e.map((v) => v / z);
  });

  it('is the batch mean of −Σ target · log softmax', async () => {
    let expected = 0;
    softmax.forEach((row, i) => row.forEach((p, j) => (expected -= target(i, j) * Math.log(p))));
    expected /= n;
    const loss = smoothedCrossEntropy(tf.tensor2d(logits), tf.tensor1d(labels, 'int32'), k, s);
    expect(loss.shape).toEqual([]);
    expect((await loss.data())[0]).toBeCloseTo(expected, 5);
  });

  it('has the gradient (softmax − target) / n with respect to the logits', async () => {
    const grad = tf.grad((x: tf.Tensor) => smoothedCrossEntropy(x as tf.Tensor2D, tf.tensor1d(labels, 'int32'), k, s))(tf.tensor2d(logits));
    const got = await grad.array();
    softmax.forEach((row, i) => row.forEach((p, j) => expect((got as number[][])[i]![j]).toBeCloseTo((p - target(i, j)) / n, 6)));
  });

  describe('in a mixed batch (λ below 1)', () => {
    const lambda = 0.7;
    // The partner of row i is row n − 1 − i: its target weighs 1 − λ.
    const mixed = (i: number, j: number) => lambda * target(i, j) + (1 - lambda) * target(n - 1 - i, j);

    it('targets λ·own smoothed label + (1 − λ)·the partner\'s (the batch read backwards)', async () => {
      let expected = 0;
      softmax.forEach((row, i) => row.forEach((p, j) => (expected -= mixed(i, j) * Math.log(p))));
      expected /= n;
      const loss = smoothedCrossEntropy(tf.tensor2d(logits), tf.tensor1d(labels, 'int32'), k, s, lambda);
      expect((await loss.data())[0]).toBeCloseTo(expected, 5);
    });

    it('has the gradient (softmax − mixed target) / n', async () => {
      const grad = tf.grad((x: tf.Tensor) => smoothedCrossEntropy(x as tf.Tensor2D, tf.tensor1d(labels, 'int32'), k, s, lambda))(tf.tensor2d(logits));
      const got = (await grad.array()) as number[][];
      softmax.forEach((row, i) => row.forEach((p, j) => expect(got[i]![j]).toBeCloseTo((p - mixed(i, j)) / n, 6)));
    });

    it('counts a row λ when it answers its own label and 1 − λ when it answers its partner\'s', async () => {
      // Answers (first largest logit): 0, 2, 1, 0. Own labels 0, 2, 1, 1; partners' 1, 1, 2, 0.
      const { correct } = stepLoss(tf.tensor2d(logits), tf.tensor1d(labels, 'int32'), k, s, lambda);
      expect((await correct.data())[0]).toBeCloseTo(3 * lambda + 1 * (1 - lambda), 5);
      const plain = stepLoss(tf.tensor2d(logits), tf.tensor1d(labels, 'int32'), k, s);
      expect((await plain.correct.data())[0]).toBe(3);
    });
  });
});
