import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { foldModel } from '../../src/model/fold.js';
import { buildModel } from '../../src/model/resnet.js';
import { expectClose, randomArray } from '../backend/helpers.js';

beforeAll(async () => {
  await initBackend('wasm');
});

/** Gives every batch norm non-trivial statistics and affine weights, so folding has work to do. */
function randomiseBatchNorms(model: tf.LayersModel): void {
  let seed = 100;
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'CifarBatchNorm') continue;
    const c = layer.getWeights()[0]!.shape[0]!;
    const r = (): tf.Tensor => tf.tensor1d(randomArray(c, seed++));
    layer.setWeights([tf.add(1, tf.mul(0.5, r())), r(), tf.mul(0.3, r()), tf.add(1, tf.mul(0.5, r()))]);
  }
}

describe('foldModel', () => {
  it('gives the logits of model.predict with batch norms folded into the convolutions', async () => {
    const model = buildModel('resnet10-w8');
    randomiseBatchNorms(model);
    const x = tf.tensor4d(randomArray(4 * 32 * 32 * 3, 1), [4, 32, 32, 3]);
    const folded = foldModel(model);
    expect(folded).not.toBeNull();
    const expected = (await (model.predict(x) as tf.Tensor).data()) as Float32Array;
    const before = tf.memory().numTensors;
    const y = folded!.apply(x);
    expectClose((await y.data()) as Float32Array, expected, 1e-4, 'logits');
    y.dispose();
    expect(tf.memory().numTensors).toBe(before);
    // Its own copies of the weights: disposing it leaves the model usable, and the reverse.
    folded!.dispose();
    expect(() => (model.predict(x) as tf.Tensor).dispose()).not.toThrow();
    model.dispose();
    x.dispose();
  });

  it('returns null for a layer it does not know, so callers fall back to model.predict', () => {
    const input = tf.input({ shape: [8, 8, 3] });
    const pooled = tf.layers.maxPooling2d({ poolSize: 2 }).apply(input) as tf.SymbolicTensor;
    const out = tf.layers.dense({ units: 2 }).apply(tf.layers.flatten().apply(pooled)) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: out });
    expect(foldModel(model)).toBeNull();
    model.dispose();
  });
});
