import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { IMAGE_BYTES } from '../../src/image/preprocess.js';
import { useUnfusedConvolutions } from '../../src/model/conv-gradients.js';
import { buildModel } from '../../src/model/resnet.js';
import { createTrainer } from '../../src/train/step.js';

const CONFIG = { baseWidth: 4, blocks: [1, 1, 1, 1] as const };

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** Loss, gradients (in variable order) and the kernels the pass ran, for one batch. */
async function gradientPass(model: tf.LayersModel): Promise<{ values: Float32Array[]; kernels: { name: string; shape: number[] }[] }> {
  const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 3);
  const y = tf.oneHot(tf.tensor1d([1, 7], 'int32'), 10);
  let values: Float32Array[] = [];
  const profile = await tf.profile(() => {
    const { value, grads } = tf.variableGrads(
      () => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor),
      model.trainableWeights.map((w) => w.read() as tf.Variable),
    );
    values = [value, ...Object.values(grads)].map((t) => t.dataSync() as Float32Array);
    tf.dispose([value, ...Object.values(grads)]);
  });
  tf.dispose([x, y]);
  return { values, kernels: profile.kernels.map((k) => ({ name: k.name, shape: (k.outputShapes[0] ?? []) as number[] })) };
}

/** Input gradients that land on the image itself (3 channels): work nobody reads. */
const imageGradients = (kernels: { name: string; shape: number[] }[]) => kernels.filter((k) => k.name === 'Conv2DBackpropInput' && k.shape[3] === 3);

describe('useUnfusedConvolutions', () => {
  it('skips the stem convolution\'s input gradient and leaves the loss and every gradient unchanged', async () => {
    const model = buildModel(CONFIG, { seed: 1 });
    const fused = await gradientPass(model);
    // The fused op's gradient computes the image's gradient although no variable needs it.
    expect(imageGradients(fused.kernels)).toHaveLength(1);
    const restore = useUnfusedConvolutions(model);
    const lazy = await gradientPass(model);
    restore();
    expect(imageGradients(lazy.kernels)).toHaveLength(0);
    // Every other convolution still gets its input gradient: one fewer in all.
    const count = (k: { name: string }[]) => k.filter((x) => x.name === 'Conv2DBackpropInput').length;
    expect(count(lazy.kernels)).toBe(count(fused.kernels) - 1);
    expect(lazy.values).toHaveLength(fused.values.length);
    fused.values.forEach((expected, i) => expect(Array.from(lazy.values[i]!)).toEqual(Array.from(expected)));
    model.dispose();
  });

  it('puts the layers\' own call back: the model runs the fused op again afterwards', async () => {
    const model = buildModel(CONFIG, { seed: 2 });
    const restore = useUnfusedConvolutions(model);
    const convs = model.layers.filter((l) => l.getClassName() === 'Conv2D');
    expect(convs.every((l) => Object.prototype.hasOwnProperty.call(l, 'call'))).toBe(true);
    restore();
    expect(convs.some((l) => Object.prototype.hasOwnProperty.call(l, 'call'))).toBe(false);
    expect(imageGradients((await gradientPass(model)).kernels)).toHaveLength(1);
    model.dispose();
  });

  it('leaves convolutions with a bias or an activation to tfjs-layers', () => {
    const input = tf.input({ shape: [8, 8, 3] });
    const biased = tf.layers.conv2d({ filters: 2, kernelSize: 3, padding: 'same', useBias: true });
    const activated = tf.layers.conv2d({ filters: 2, kernelSize: 3, padding: 'same', useBias: false, activation: 'relu' });
    const model = tf.model({ inputs: input, outputs: activated.apply(biased.apply(input)) as tf.SymbolicTensor });
    const restore = useUnfusedConvolutions(model);
    expect([biased, activated].some((l) => Object.prototype.hasOwnProperty.call(l, 'call'))).toBe(false);
    restore();
    model.dispose();
  });
});

describe('the trainer', () => {
  it('computes no gradient for the images in a training step, and leaves no layer changed once disposed', async () => {
    const model = buildModel(CONFIG, { seed: 3 });
    const trainer = createTrainer(model, { momentum: 0.9, weightDecay: 5e-4, labelSmoothing: 0.1, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], classes: 10 });
    const profile = await tf.profile(() => {
      const out = trainer.step(new Uint8Array(2 * IMAGE_BYTES).fill(90), Uint8Array.from([3, 4]), 2, 0.1);
      tf.dispose([out.lossSum, out.correct]);
    });
    const kernels = profile.kernels.map((k) => ({ name: k.name, shape: (k.outputShapes[0] ?? []) as number[] }));
    expect(kernels.some((k) => k.name === 'Conv2DBackpropFilter')).toBe(true);
    expect(imageGradients(kernels)).toHaveLength(0);
    trainer.dispose();
    expect(model.layers.some((l) => Object.prototype.hasOwnProperty.call(l, 'call'))).toBe(false);
    model.dispose();
  });
});
