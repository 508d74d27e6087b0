import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { foldModel, inferencePass } from '../../src/model/fold.js';
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

  it('inferencePass runs the folded model where it folds, else model.predict on the whole batch', async () => {
    const input = tf.input({ shape: [8, 8, 3] });
    const pooled = tf.layers.maxPooling2d({ poolSize: 2 }).apply(input) as tf.SymbolicTensor;
    const out = tf.layers.dense({ units: 2 }).apply(tf.layers.flatten().apply(pooled)) as tf.SymbolicTensor;
    const plain = tf.model({ inputs: input, outputs: out });
    const x = tf.tensor4d(randomArray(40 * 8 * 8 * 3, 3), [40, 8, 8, 3]);
    const passes: number[] = [];
    const predict = plain.predict.bind(plain);
    plain.predict = (t, config) => (passes.push(config?.batchSize ?? 32), predict(t, config));
    const pass = inferencePass(plain);
    expectClose((await pass.apply(x).data()) as Float32Array, (await (predict(x) as tf.Tensor).data()) as Float32Array, 1e-6, 'logits');
    expect(passes).toEqual([40]);
    pass.dispose();
    plain.dispose();

    const resnet = buildModel('resnet10-w8');
    const folded = inferencePass(resnet);
    resnet.predict = () => {
      throw new Error('model.predict called for a model that folds');
    };
    const y = tf.tensor4d(randomArray(2 * 32 * 32 * 3, 4), [2, 32, 32, 3]);
    expect(folded.apply(y).shape).toEqual([2, 10]);
    folded.dispose();
    resnet.dispose();
    tf.dispose([x, y]);
  });
});
