import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { wasmKernelNames } from '../../src/backend/wasm-kernels.js';
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
});
