import * as tf from '@tensorflow/tfjs';
import { IMAGE_SIZE } from '../image/preprocess.js';

/** Per-channel statistics of the training set, on a 0–1 scale (stats.json, metadata.json). */
export interface Normalization {
  mean: readonly number[];
  std: readonly number[];
}

export interface Normalizer {
  /** `count` HWC byte images → the network's input: (x/255 − mean) / std, on the backend. */
  apply(images: Uint8Array, count: number): tf.Tensor4D;
  dispose(): void;
}

/** The one input transform of training, evaluation and serving. */
export function createNormalizer(norm: Normalization): Normalizer {
  // Folding the 1/255 into the statistics saves a full-size multiply per batch.
  const mean = tf.tensor1d(norm.mean.map((m) => m * 255));
  const invStd = tf.tensor1d(norm.std.map((s) => 1 / (s * 255)));
  return {
    apply: (images, count) => tf.tidy(() => tf.tensor4d(images, [count, IMAGE_SIZE, IMAGE_SIZE, 3], 'int32').toFloat().sub(mean).mul(invStd)),
    dispose() {
      mean.dispose();
      invStd.dispose();
    },
  };
}
