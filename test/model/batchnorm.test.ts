import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { BatchNorm, trainingBatchNorm } from '../../src/model/batchnorm.js';
import { expectClose, randomArray } from '../backend/helpers.js';

beforeAll(async () => {
  await initBackend('wasm');
});

const shape: [number, number, number, number] = [3, 5, 4, 7];
const size = shape.reduce((a, b) => a * b);

describe('BatchNorm', () => {
  it('training-mode output and gradients match autodiff of the textbook formula', () => {
    const x = tf.tensor4d(randomArray(size, 1), shape).mul(3).add(1);
    const gamma = tf.tensor1d(randomArray(7, 2)).add(1.5);
    const beta = tf.tensor1d(randomArray(7, 3));
    const upstream = tf.tensor4d(randomArray(size, 4), shape); // makes the loss depend on every output
    const eps = 1e-5;
    const reference = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Scalar => {
      const { mean, variance } = tf.moments(a, [0, 1, 2]);
      const y = tf.add(tf.mul(tf.div(tf.sub(a, mean), tf.sqrt(tf.add(variance, eps))), g), b);
      return tf.sum(tf.mul(y, upstream));
    };
    const ours = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Scalar => {
      const { y, mean, variance } = trainingBatchNorm(a as tf.Tensor4D, g, b, eps);
      tf.dispose([mean, variance]);
      return tf.sum(tf.mul(y, upstream));
    };
    const want = tf.valueAndGrads(reference)([x, gamma, beta]);
    const got = tf.valueAndGrads(ours)([x, gamma, beta]);
    expectClose(got.value.dataSync() as Float32Array, want.value.dataSync() as Float32Array, 1e-4, 'value');
    ['dx', 'dgamma', 'dbeta'].forEach((label, i) =>
      expectClose(got.grads[i]?.dataSync() as Float32Array, want.grads[i]?.dataSync() as Float32Array, 1e-4, label));
  });

  it('updates the moving statistics in training and uses them in inference', () => {
    const layer = new BatchNorm({ momentum: 0.5 });
    const x = tf.tensor4d(randomArray(size, 9), shape).add(2);
    layer.apply(x, { training: true });
    const [, , movingMean] = layer.getWeights();
    const batchMean = tf.mean(x, [0, 1, 2]);
    expectClose(movingMean?.dataSync() as Float32Array, tf.mul(batchMean, 0.5).dataSync() as Float32Array, 1e-5, 'moving mean');
    const inference = layer.apply(x) as tf.Tensor;
    const expected = tf.batchNorm(x, layer.getWeights()[2] as tf.Tensor1D, layer.getWeights()[3] as tf.Tensor1D, undefined, undefined, 1e-5);
    expectClose(inference.dataSync() as Float32Array, expected.dataSync() as Float32Array, 1e-5, 'inference');
    expect(layer.getWeights().map((w) => w.shape)).toEqual([[7], [7], [7], [7]]);
  });
});
