/**
 * Convolution gradients for tfjs-backend-wasm, expressed as forward convolutions so that the
 * work runs in XNNPACK (the wasm backend's fast path) instead of naive loops:
 * - `Conv2DBackpropFilter` is missing from tfjs-backend-wasm 4.22, so training fails without it;
 * - `Conv2DBackpropInput` exists but is a scalar loop (see wasm-conv-input.ts).
 */
import * as tf from '@tensorflow/tfjs';
import type { TensorInfo } from '@tensorflow/tfjs';
import { conv2DBackpropInput } from './wasm-conv-input.js';
import { type ConvGradAttrs, type KernelArgs, type Pad, type Shape4, Scratch, checkNHWC } from './wasm-scratch.js';

/**
 * dW[kh,kw,ci,co] = sum over n,oh,ow of x[n, oh*s+kh-pad, ow*s+kw-pad, ci] * dy[n,oh,ow,co].
 * With ci as the batch, n as the input channels and dy as the filter, that is a stride-1
 * convolution dilated by the forward stride: one XNNPACK call instead of a JS im2col.
 */
function conv2DBackpropFilter(args: KernelArgs): TensorInfo {
  const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
  const attrs = args.attrs as unknown as ConvGradAttrs & { filterShape: Shape4 };
  checkNHWC(attrs);
  const s = new Scratch(args.backend);
  const info = tf.backend_util.computeConv2DInfo(x.shape as Shape4, attrs.filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode);
  const { batchSize: n, inChannels: ci, outChannels: co, filterHeight: fh, filterWidth: fw } = info;
  const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw } = info;
  const { top, left } = info.padInfo;

  if (fh === 1 && fw === 1 && top === 0 && left === 0) {
    // Pointwise: only every s-th pixel of x is read, so subsample it first (s*s less to
    // transpose), then dW = x_sub^T dy as a 2D matmul on XNNPACK's fully-connected path.
    const end = [n, (oh - 1) * sh + 1, (ow - 1) * sw + 1, ci];
    const xs = sh > 1 || sw > 1
      ? s.run('StridedSlice', { x }, { begin: [0, 0, 0, 0], end, strides: [1, sh, sw, 1], beginMask: 0, endMask: 0, ellipsisMask: 0, newAxisMask: 0, shrinkAxisMask: 0 })
      : x;
    const m = n * oh * ow;
    const xT = s.transpose(s.reshape(xs, [m, ci]), [1, 0]);
    const prod = s.run('BatchMatMul', { a: s.reshape(xT, [1, ci, m]), b: s.reshape(dy, [1, m, co]) }, { transposeA: false, transposeB: false });
    return s.finish(s.reshape(prod, [1, 1, ci, co]));
  }

  // Rows of x beyond the last one any output reads are cropped instead of negatively padded.
  const needH = (oh - 1) * sh + fh - top;
  const needW = (ow - 1) * sw + fw - left;
  const xc = s.fitHW(x, Math.min(needH, x.shape[1] ?? 0), Math.min(needW, x.shape[2] ?? 0));
  const [, xh, xw] = xc.shape as Shape4;
  const xT = s.transpose(xc, [3, 1, 2, 0]); // [ci, h, w, n]
  const dyT = s.transpose(dy, [1, 2, 0, 3]); // [oh, ow, n, co]
  const pad: Pad = [[0, 0], [top, needH - xh], [left, needW - xw], [0, 0]];
  const g = s.conv(xT, dyT, pad, [sh, sw]); // [ci, fh, fw, co]
  return s.finish(s.transpose(g, [1, 2, 0, 3]));
}

const KERNELS: Array<{ kernelName: string; kernelFunc: (args: KernelArgs) => TensorInfo }> = [
  { kernelName: 'Conv2DBackpropFilter', kernelFunc: conv2DBackpropFilter },
  { kernelName: 'Conv2DBackpropInput', kernelFunc: conv2DBackpropInput },
];

/**
 * Registers (or replaces) our convolution gradient kernels for the wasm backend.
 * Safe to call more than once; unregisters first so tfjs does not warn on stderr.
 */
export function registerWasmKernels(): void {
  for (const { kernelName, kernelFunc } of KERNELS) {
    if (tf.getKernel(kernelName, 'wasm') !== undefined) tf.unregisterKernel(kernelName, 'wasm');
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
  }
}

/** Names of the wasm kernels this module provides, for tests and diagnostics. */
export const wasmKernelNames: readonly string[] = KERNELS.map((k) => k.kernelName);
