import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { probeWebGpu } from '../../src/backend/webgpu.js';
import { flatDispatch } from '../../src/backend/webgpu-kernels/program.js';
import { unregisterWebGpuKernels, registerWebGpuKernels } from '../../src/backend/webgpu-kernels/register.js';
import { countBackendCalls } from '../../src/bench/gpu-counts.js';
import { randomArray, useWebGpuInSuite } from './helpers.js';

describe('ReLU gradient dispatch grid (pure)', () => {
  it('covers every group of four elements with 256-wide workgroups, wrapping past 65,535 groups in x', () => {
    expect(flatDispatch(1)).toEqual([1, 1, 1]);
    expect(flatDispatch(257)).toEqual([2, 1, 1]);
    // ResNet-18's largest activation at batch 256: 256 x 32 x 32 x 64 elements, four an invocation.
    expect(flatDispatch((256 * 32 * 32 * 64) / 4)).toEqual([16384, 1, 1]);
    expect(flatDispatch(65535 * 256 + 1)).toEqual([65535, 2, 1]);
  });
});

/** dx of relu at x for the upstream gradient dy, on the active backend. */
async function reluGradOf(x: Float32Array, dy: Float32Array, shape: number[]): Promise<Float32Array> {
  const g = tf.tidy(() => tf.grad((t: tf.Tensor) => tf.relu(t))(tf.tensor(x, shape), tf.tensor(dy, shape)));
  const values = (await g.data()) as Float32Array;
  g.dispose();
  return values;
}

const probe = await probeWebGpu();

describe.skipIf(!probe.ok)('ReLU gradient on webgpu (CifarReluGrad)', () => {
  useWebGpuInSuite();

  for (const shape of [[2, 8, 8, 16], [3, 5, 7], [1]]) {
    it(`gives exactly the cpu backend's dy · step(x) for shape ${shape.join('x')}: 0 at x = 0, NaN at NaN`, async () => {
      const n = shape.reduce((a, b) => a * b, 1);
      const x = randomArray(n, 11);
      const dy = randomArray(n, 12);
      x[0] = 0;
      if (n > 2) x[1] = Number.NaN;
      if (n > 3) x[2] = -0;
      const gpu = await reluGradOf(x, dy, shape);
      await tf.setBackend('cpu');
      const cpu = await reluGradOf(x, dy, shape);
      await tf.setBackend('webgpu');
      expect(gpu).toEqual(cpu);
      expect(Math.abs(gpu[0]!)).toBe(0);
      if (n > 2) expect(gpu[1]).toBeNaN();
    });
  }

  it('takes one dispatch where tfjs\' Step and Multiply take two', async () => {
    const x = tf.tensor(randomArray(1024, 3), [4, 16, 16]);
    const dy = tf.tensor(randomArray(1024, 4), [4, 16, 16]);
    await x.data();
    await dy.data();
    const gradOfRelu = async () => {
      const g = tf.grad((t: tf.Tensor) => tf.relu(t))(x, dy);
      await g.data();
      g.dispose();
    };
    await gradOfRelu(); // the programs compile once, outside the counts
    const ours = await countBackendCalls(gradOfRelu);
    unregisterWebGpuKernels();
    await gradOfRelu();
    const stock = await countBackendCalls(gradOfRelu);
    registerWebGpuKernels();
    // The forward Relu, then the gradient.
    expect(ours!.dispatches).toBe(2);
    expect(stock!.dispatches).toBe(3);
    tf.dispose([x, dy]);
  });
});
