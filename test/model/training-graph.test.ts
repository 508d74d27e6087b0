import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { probeWebGpu } from '../../src/backend/webgpu.js';
import { countBackendCalls } from '../../src/bench/gpu-counts.js';
import { IMAGE_BYTES } from '../../src/image/preprocess.js';
import { BatchNorm } from '../../src/model/batchnorm.js';
import { prepareForTraining, useFusedAddRelu, useFusedBatchNormRelu, useUnfusedConvolutions } from '../../src/model/training-graph.js';
import { useWebGpuInSuite } from '../backend/helpers.js';
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
      const out = trainer.step({ images: new Uint8Array(2 * IMAGE_BYTES).fill(90), labels: Uint8Array.from([3, 4]), size: 2 }, 0.1);
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

describe('useFusedBatchNormRelu (the graph)', () => {
  it('fuses the ReLU after the stem\'s and each block\'s first batch norm, not those that feed the residual add, and undoes it', () => {
    const model = buildModel('resnet18', { seed: 1 });
    const restore = useFusedBatchNormRelu(model);
    const fused = model.layers.filter((l) => l instanceof BatchNorm && l.fuseRelu).map((l) => l.name);
    expect(fused).toEqual(['stem_bn', 's1b1_bn1', 's1b2_bn1', 's2b1_bn1', 's2b2_bn1', 's3b1_bn1', 's3b2_bn1', 's4b1_bn1', 's4b2_bn1']);
    const passing = model.layers.filter((l) => l.getClassName() === 'ReLU' && Object.prototype.hasOwnProperty.call(l, 'call')).map((l) => l.name);
    expect(passing).toEqual(fused.map((n) => n.replace('_bn1', '_relu1').replace('stem_bn', 'stem_relu')));
    restore();
    expect(model.layers.some((l) => (l instanceof BatchNorm && l.fuseRelu) || Object.prototype.hasOwnProperty.call(l, 'call'))).toBe(false);
    model.dispose();
  });
});

describe('useFusedAddRelu (the graph)', () => {
  it('fuses the ReLU after each residual add of ResNet-18 (8), and undoes it', () => {
    const model = buildModel('resnet18', { seed: 1 });
    const restore = useFusedAddRelu(model);
    const patched = model.layers.filter((l) => Object.prototype.hasOwnProperty.call(l, 'call')).map((l) => l.name);
    const blocks = ['s1b1', 's1b2', 's2b1', 's2b2', 's3b1', 's3b2', 's4b1', 's4b2'];
    expect(patched.sort()).toEqual(blocks.flatMap((b) => [`${b}_add`, `${b}_out`]).sort());
    restore();
    expect(model.layers.some((l) => Object.prototype.hasOwnProperty.call(l, 'call'))).toBe(false);
    model.dispose();
  });

  it('changes nothing on cpu, where the WebGPU programs do not run, with every rewrite of the trainer (prepareForTraining): the ReLU and Add layers still run', async () => {
    const model = buildModel(CONFIG, { seed: 5 });
    const plain = await gradientPass(model);
    const restore = prepareForTraining(model);
    const rewritten = await gradientPass(model);
    restore();
    for (const name of ['Relu', 'Add']) expect(rewritten.kernels.filter((k) => k.name === name)).toHaveLength(plain.kernels.filter((k) => k.name === name).length);
    plain.values.forEach((v, i) => expect(Array.from(rewritten.values[i]!)).toEqual(Array.from(v)));
    model.dispose();
  });
});

const probe = await probeWebGpu();

describe.skipIf(!probe.ok)('the training-graph rewrites on webgpu', () => {
  useWebGpuInSuite();

  /** Loss, gradients and moving statistics after one training pass, and the pass's dispatch count. */
  async function pass(model: tf.LayersModel): Promise<{ values: Float32Array[]; dispatches: number }> {
    const x = tf.randomNormal([3, 32, 32, 3], 0, 1, 'float32', 5);
    const y = tf.oneHot(tf.tensor1d([1, 7, 3], 'int32'), 10);
    let values: Float32Array[] = [];
    const counts = await countBackendCalls(async () => {
      const { value, grads } = tf.variableGrads(
        () => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor),
        model.trainableWeights.map((w) => w.read() as tf.Variable),
      );
      values = await Promise.all([value, ...Object.values(grads), ...model.nonTrainableWeights.map((w) => w.read())].map(async (t) => (await t.data()) as Float32Array));
      tf.dispose([value, ...Object.values(grads)]);
    });
    tf.dispose([x, y]);
    return { values, dispatches: counts!.dispatches };
  }

  /**
   * One training pass of two copies of resnet10-w8 (the same weights), the second under
   * `rewrite`, after one warm-up pass each (both models' moving statistics take the same first
   * update): their results, whether they predict the same, and the rewritten model.
   */
  async function compareRewrite(rewrite: (m: tf.LayersModel) => () => void, seed: number, check: (plain: Awaited<ReturnType<typeof pass>>, fused: Awaited<ReturnType<typeof pass>>, rewritten: tf.LayersModel) => void): Promise<void> {
    const weights = buildModel('resnet10-w8', { seed }).getWeights();
    const [a, b] = [0, 1].map(() => {
      const m = buildModel('resnet10-w8');
      m.setWeights(weights);
      return m;
    }) as [tf.LayersModel, tf.LayersModel];
    await pass(a);
    const restore = rewrite(b);
    await pass(b);
    const plain = await pass(a);
    const fused = await pass(b);
    check(plain, fused, b);
    expect(fused.values).toHaveLength(plain.values.length);
    plain.values.forEach((v, i) => expect(Array.from(fused.values[i]!), `tensor ${i}`).toEqual(Array.from(v)));
    // Inference is untouched: the ReLU layers apply.
    const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', seed);
    const [pa, pb] = [a.predict(x) as tf.Tensor, b.predict(x) as tf.Tensor];
    expect(Array.from(await pb.data())).toEqual(Array.from(await pa.data()));
    restore();
    tf.dispose([x, pa, pb, ...weights]);
    a.dispose();
    b.dispose();
  }

  it('useFusedAddRelu: the same loss, gradients and predictions with one dispatch fewer per residual add', async () => {
    await compareRewrite(useFusedAddRelu, 7, (plain, fused) => {
      // resnet10-w8: 4 blocks, 4 residual adds; Add and Relu become one program, the gradient stays one.
      expect(plain.dispatches - fused.dispatches).toBe(4);
    });
  });

  it('useFusedBatchNormRelu: the same loss, gradients, moving statistics and predictions with two dispatches fewer per fused pair', async () => {
    await compareRewrite(useFusedBatchNormRelu, 6, (plain, fused, rewritten) => {
      const pairs = rewritten.layers.filter((l) => l instanceof BatchNorm && l.fuseRelu).length;
      expect(pairs).toBe(5); // resnet10-w8: the stem and each of its 4 blocks
      // A ReLU and its gradient (CifarReluGrad) a pair: both folded into the batch norm's programs.
      expect(plain.dispatches - fused.dispatches).toBe(2 * pairs);
    });
  });
});
