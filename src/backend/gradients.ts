/**
 * Cheaper gradients for Mean, Sum and Relu, registered for every backend.
 *
 * tfjs-core's versions compute `dy * ones(x.shape)`: `ones` fills a full-size typed array in
 * JavaScript and uploads it on every step (5.7 s of a 14 s WebGPU step in our profile). The
 * obvious replacement, `broadcastTo`, runs wasm's Tile kernel, which is slower still (~100 ms
 * for a 2M-element tensor). Broadcasting over a contiguous block of axes is an outer product
 * with a ones vector, a K=1 matmul that XNNPACK (and every other backend) does at memory speed.
 */
import * as tf from '@tensorflow/tfjs';
import type { GradConfig, NamedAttrMap, Tensor } from '@tensorflow/tfjs';
import { RELU_GRAD } from './webgpu-kernels/relu-grad.js';

/**
 * Broadcasts `small` (`shape` without `axes`, or with them set to 1) to `shape`, times `scale`
 * (a fill value, so no scalar is uploaded for it).
 * @example broadcastAxes(tf.ones([2, 1, 1, 3]), [2, 4, 4, 3], [1, 2]) // shape [2, 4, 4, 3]
 */
export function broadcastAxes(small: Tensor, shape: number[], axes: number[], scale = 1): Tensor {
  const sorted = [...axes].sort((a, b) => a - b);
  const first = sorted[0];
  const last = sorted[sorted.length - 1];
  if (first === undefined || last === undefined) return scale === 1 ? tf.reshape(small, shape) : tf.mul(tf.reshape(small, shape), tf.fill(shape, scale, 'float32'));
  const contiguous = last - first + 1 === sorted.length;
  if (!contiguous) {
    const kept = shape.map((d, i) => (axes.includes(i) ? 1 : d));
    return tf.mul(tf.reshape(small, kept), tf.fill(shape, scale, 'float32'));
  }
  const size = (from: number, to: number): number => shape.slice(from, to).reduce((n, d) => n * d, 1);
  const outer = size(0, first);
  const reduced = size(first, last + 1);
  const inner = size(last + 1, shape.length);
  const ones = tf.fill([outer, reduced, 1], scale, 'float32');
  return tf.reshape(tf.matMul(ones, tf.reshape(small, [outer, 1, inner])), shape);
}

function reductionGrad(kernelName: 'Mean' | 'Sum'): GradConfig {
  return {
    kernelName,
    inputsToSave: ['x'],
    gradFunc: (dy: Tensor | Tensor[], saved: Tensor[], attrs: NamedAttrMap) => {
      const x = saved[0];
      if (x === undefined || Array.isArray(dy)) throw new Error(`${kernelName} gradient: unexpected inputs`);
      const axes = tf.util.parseAxisParam(attrs['axis'] as number | number[], x.shape);
      const count = axes.reduce((n, a) => n * (x.shape[a] ?? 1), 1);
      return {
        x: () => {
          const g = tf.cast(dy, 'float32');
          // Mean's 1/count rides in the broadcast's fill value: no scalar upload, no extra pass.
          return broadcastAxes(g, x.shape, axes, kernelName === 'Mean' ? 1 / count : 1);
        },
      };
    },
  };
}

/**
 * ReLU's gradient, dy · step(x) (x: its input, or its output, which is above 0 in the same
 * places): one dispatch of our `CifarReluGrad` where the active backend has it (webgpu),
 * tfjs-core's Step and Multiply elsewhere.
 */
export function reluGradient(dy: Tensor, x: Tensor): Tensor {
  return tf.getKernel(RELU_GRAD, tf.getBackend()) !== undefined && x.dtype === 'float32' && dy.dtype === 'float32'
    ? (tf.engine().runKernel(RELU_GRAD, { dy, x }) as Tensor)
    : tf.mul(dy, tf.cast(tf.step(x), 'float32'));
}

const reluGrad: GradConfig = {
  kernelName: 'Relu',
  inputsToSave: ['x'],
  gradFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => {
    const x = saved[0];
    if (x === undefined || Array.isArray(dy)) throw new Error('Relu gradient: unexpected inputs');
    return { x: () => reluGradient(dy, x) };
  },
};

let registered = false;

/** Replaces tfjs-core's Mean and Sum gradients with ones that build no JS-side arrays, and Relu's with one dispatch on webgpu (idempotent). */
export function registerFastGradients(): void {
  if (registered) return;
  tf.registerGradient(reductionGrad('Mean'));
  tf.registerGradient(reductionGrad('Sum'));
  tf.registerGradient(reluGrad);
  registered = true;
}
