import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { filterGradPlan, filterGradTuning, phaseGrid as filterGradPlanGrid, wasmKernelNames } from '../../src/backend/wasm-kernels.js';
import { expectClose, onBackend, randomArray } from './helpers.js';

type Shape4 = [number, number, number, number];
const cases: Array<{ x: Shape4; k: number; stride: number; pad: 'same' | 'valid' }> = [];
for (const x of [[2, 7, 9, 5], [3, 8, 8, 3]] as Shape4[]) {
  for (const k of [1, 3]) for (const stride of [1, 2]) for (const pad of ['same', 'valid'] as const) cases.push({ x, k, stride, pad });
}
const outChannels = 6;

beforeAll(async () => {
  await initBackend('wasm');
});

describe('wasm convolution gradient kernels', () => {
  it('registers Conv2DBackpropFilter and Conv2DBackpropInput for wasm', () => {
    for (const name of wasmKernelNames) expect(tf.getKernel(name, 'wasm'), name).toBeDefined();
    expect(wasmKernelNames).toEqual(expect.arrayContaining(['Conv2DBackpropFilter', 'Conv2DBackpropInput']));
  });

  it.each(cases)('Conv2DBackpropFilter matches cpu: x $x, $k x $k, stride $stride, $pad', async ({ x, k, stride, pad }) => {
    const filterShape: Shape4 = [k, k, x[3], outChannels];
    const info = tf.backend_util.computeConv2DInfo(x, filterShape, stride, 1, pad);
    const dyShape = info.outShape;
    const xs = randomArray(x.reduce((a, b) => a * b), 1);
    const dys = randomArray(dyShape.reduce((a, b) => a * b), 2);
    const run = (): tf.Tensor =>
      tf.engine().runKernel('Conv2DBackpropFilter', { x: tf.tensor4d(xs, x), dy: tf.tensor4d(dys, dyShape) },
        { strides: stride, pad, dataFormat: 'NHWC', filterShape }) as tf.Tensor;
    const expected = await onBackend('cpu', run);
    const actual = await onBackend('wasm', run);
    expectClose(actual, expected, 1e-4, 'dW');
  });

  it.each(cases)('Conv2DBackpropInput matches cpu: x $x, $k x $k, stride $stride, $pad', async ({ x, k, stride, pad }) => {
    const filterShape: Shape4 = [k, k, x[3], outChannels];
    const info = tf.backend_util.computeConv2DInfo(x, filterShape, stride, 1, pad);
    const dyShape = info.outShape;
    const ws = randomArray(filterShape.reduce((a, b) => a * b), 3);
    const dys = randomArray(dyShape.reduce((a, b) => a * b), 4);
    const run = (): tf.Tensor =>
      tf.engine().runKernel('Conv2DBackpropInput', { dy: tf.tensor4d(dys, dyShape), filter: tf.tensor4d(ws, filterShape) },
        { strides: stride, pad, dataFormat: 'NHWC', inputShape: x }) as tf.Tensor;
    const expected = await onBackend('cpu', run);
    const actual = await onBackend('wasm', run);
    expectClose(actual, expected, 1e-4, 'dx');
  });

  it('frees every intermediate it allocates', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor4d(randomArray(2 * 8 * 8 * 5, 5), [2, 8, 8, 5]);
    const w = tf.tensor4d(randomArray(3 * 3 * 5 * 6, 6), [3, 3, 5, 6]);
    const grad = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same').sum());
    grad([x, w]).forEach((g) => g.dispose()); // warm-up: kernels may cache
    const before = tf.memory().numTensors;
    const backendBefore = tf.engine().backend.numDataIds();
    grad([x, w]).forEach((g) => g.dispose());
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.engine().backend.numDataIds()).toBe(backendBefore);
  });

  // Shapes whose padded phase grid is small enough for the per-tap GEMM plan, with chunks of
  // two images (so 5 images exercise a padded last chunk): stride 1 and 2, same and valid.
  const tapCases: Array<{ x: Shape4; stride: number; pad: 'same' | 'valid' }> = [
    { x: [5, 12, 12, 4], stride: 1, pad: 'same' },
    { x: [4, 8, 8, 6], stride: 1, pad: 'same' },
    { x: [3, 20, 18, 5], stride: 1, pad: 'valid' },
    { x: [5, 16, 16, 4], stride: 2, pad: 'same' },
    { x: [3, 15, 15, 3], stride: 2, pad: 'same' },
    { x: [2, 17, 17, 4], stride: 2, pad: 'valid' },
  ];

  it.each(tapCases)('Conv2DBackpropFilter per-tap GEMMs match cpu: x $x, 3 x 3, stride $stride, $pad', async ({ x, stride, pad }) => {
    const filterShape: Shape4 = [3, 3, x[3], outChannels];
    const info = tf.backend_util.computeConv2DInfo(x, filterShape, stride, 1, pad);
    expect(filterGradPlan(info)).toBe('taps');
    const dys = randomArray(info.outShape.reduce((a, b) => a * b), 8);
    const xs = randomArray(x.reduce((a, b) => a * b), 7);
    const run = (): tf.Tensor =>
      tf.engine().runKernel('Conv2DBackpropFilter', { x: tf.tensor4d(xs, x), dy: tf.tensor4d(dys, info.outShape) },
        { strides: stride, pad, dataFormat: 'NHWC', filterShape }) as tf.Tensor;
    const expected = await onBackend('cpu', run);
    const saved = filterGradTuning.chunkFloats;
    const grid = (filterGradPlanGrid(info)?.hq ?? 0) * (filterGradPlanGrid(info)?.wq ?? 0);
    try {
      for (const imagesPerChunk of [2, x[0]]) {
        filterGradTuning.chunkFloats = (x[3] + outChannels) * grid * imagesPerChunk;
        expectClose(await onBackend('wasm', run), expected, 1e-4, `dW, ${imagesPerChunk} images per chunk`);
      }
    } finally {
      filterGradTuning.chunkFloats = saved;
    }
  });

  it('plans: pointwise for 1x1, taps down to 8x8 maps, one convolution for 4x4 ones', () => {
    const plan = (x: Shape4, k: number, stride: number): string =>
      filterGradPlan(tf.backend_util.computeConv2DInfo(x, [k, k, x[3], 8], stride, 1, 'same'));
    expect(plan([8, 32, 32, 16], 1, 2)).toBe('pointwise');
    expect(plan([8, 32, 32, 16], 3, 1)).toBe('taps');
    expect(plan([8, 32, 32, 16], 3, 2)).toBe('taps');
    expect(plan([8, 8, 8, 16], 3, 1)).toBe('taps');
    expect(plan([8, 4, 4, 16], 3, 1)).toBe('conv');
  });

  it('frees the aliases of the per-tap plan', async () => {
    await tf.setBackend('wasm');
    const x = tf.tensor4d(randomArray(3 * 12 * 12 * 4, 9), [3, 12, 12, 4]);
    const dy = tf.tensor4d(randomArray(3 * 12 * 12 * 6, 10), [3, 12, 12, 6]);
    const run = (): void => (tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 4, 6] }) as tf.Tensor).dispose();
    run();
    const before = tf.engine().backend.numDataIds();
    run();
    expect(tf.engine().backend.numDataIds()).toBe(before);
    tf.dispose([x, dy]);
  });
});
