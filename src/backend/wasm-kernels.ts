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

type ConvInfo = ReturnType<typeof tf.backend_util.computeConv2DInfo>;

/** How the filter gradient of a convolution is computed; see `conv2DBackpropFilter`. */
export type FilterGradPlan = 'pointwise' | 'taps' | 'conv';

/**
 * Tuning of the filter-gradient plans, measured on a 2-core EPYC (see `filterGradPlan`).
 * - `maxGridRatio`: per-tap GEMMs run over the phase grid, so they also multiply its zero
 *   border; worth it while the grid is at most this much larger than the output (32x32 to 8x8
 *   maps with a 3x3 filter, not 4x4 ones, where the single large convolution wins).
 * - `chunkFloats`: XNNPACK's GEMM does not block the reduction dimension, so with K = every grid
 *   cell each row tile re-reads both operands from memory (ResNet-18's 64-channel layers ran at
 *   2.8x the forward convolution). Chunks of whole images with (ci + co) * K at most this many
 *   floats keep each GEMM in cache (1.5x).
 */
export const filterGradTuning = { maxGridRatio: 1.45, chunkFloats: 262_144 };

/**
 * The grid of `filterGradByTaps`: x padded at the bottom and right only, to Hp x Wp cells (a
 * multiple of the stride), then split into stride x stride phases of Hq x Wq cells. The padding
 * of the convolution is not laid out: a read above or left of an image wraps into the zero rows
 * and columns that end the previous image and row, so Hp >= h + top and Wp >= w + left.
 * Null when dy does not fit on the phase grid (then the plan is 'conv').
 */
export function phaseGrid(info: ConvInfo): { hq: number; wq: number } | null {
  const { top, left } = info.padInfo;
  const size = (inSize: number, out: number, stride: number, filter: number, before: number): number => {
    const lastRead = (out - 1) * stride + filter - 1 - before;
    return Math.ceil(Math.max(inSize + before, lastRead + 1) / stride);
  };
  const hq = size(info.inHeight, info.outHeight, info.strideHeight, info.filterHeight, top);
  const wq = size(info.inWidth, info.outWidth, info.strideWidth, info.filterWidth, left);
  return info.outHeight <= hq && info.outWidth <= wq ? { hq, wq } : null;
}

export function filterGradPlan(info: ConvInfo): FilterGradPlan {
  const { filterHeight: fh, filterWidth: fw, dilationHeight, dilationWidth } = info;
  const { top, left } = info.padInfo;
  if (fh === 1 && fw === 1 && top === 0 && left === 0) return 'pointwise';
  if (dilationHeight !== 1 || dilationWidth !== 1 || top < 0 || left < 0) return 'conv';
  const grid = phaseGrid(info);
  if (grid === null) return 'conv';
  return grid.hq * grid.wq <= filterGradTuning.maxGridRatio * info.outHeight * info.outWidth ? 'taps' : 'conv';
}

/** Floor division and remainder: (-1, 2) -> [-1, 1]. */
function divMod(a: number, b: number): [number, number] {
  const r = ((a % b) + b) % b;
  return [(a - r) / b, r];
}

/**
 * dW[kh,kw] = sum over n,oh,ow of x[n, oh*s+kh-top, ow*s+kw-left, :]^T dy[n, oh, ow, :].
 * Split x (on the grid of `phaseGrid`) into its s*s phases x[:, a::s, b::s] and transpose them
 * to channel rows [s, s, ci, P] over the phase grid, P = n*Hq*Wq cells; lay dy on that grid
 * (zeros where there is no output). Tap (kh, kw) reads one phase at (oh + dr, ow + dc): the same
 * rows shifted by dr*Wq + dc, so the left operand is a free view of xT at that offset. Reads
 * outside an image land on zeros (the ends of the previous row and image, or zero channels
 * added before the first and after the last channel), except where they pair with grid cells
 * that hold no output, where dy is zero. dy is the right operand of every tap, so XNNPACK packs
 * it once: one GEMM [ci, P] x [P, co] per tap, and no transpose of dy.
 */
function filterGradByTaps(s: Scratch, x: TensorInfo, dy: TensorInfo, info: ConvInfo): TensorInfo {
  const { batchSize: n, inChannels: ci, outChannels: co, filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw } = info;
  const { top, left } = info.padInfo;
  const grid = phaseGrid(info);
  if (grid === null) throw new Error('filterGradByTaps: dy does not fit the phase grid');
  const { hq, wq } = grid;
  const c2 = ci + 2; // a zero channel before and after
  // As few chunks as the budget allows, balanced so the last one pads the fewest images.
  const chunks = Math.ceil(n / Math.max(1, Math.floor(filterGradTuning.chunkFloats / ((ci + co) * hq * wq))));
  const perChunk = Math.ceil(n / chunks);
  const pc = perChunk * hq * wq; // grid cells per chunk
  const xe = s.run('PadV2', { x }, {
    paddings: [[0, chunks * perChunk - n], [0, hq * sh - info.inHeight], [0, wq * sw - info.inWidth], [1, 1]],
    constantValue: 0,
  });
  // [chunk, perChunk*Hq, sh, Wq*sw*c2] -> [chunk, sh, sw, c2, Pc] in two cheap steps (wasm's
  // rank-5 transpose is a generic loop, 60x slower): move whole rows of phase a, then transpose
  // each [Pc, sw*c2] plane.
  const rows = sh > 1 ? s.transpose(s.reshape(xe, [chunks, perChunk * hq, sh, wq * sw * c2]), [0, 2, 1, 3]) : xe;
  const xT = s.transpose(s.reshape(rows, [chunks * sh, pc, sw * c2]), [0, 2, 1]);
  const dyg = s.run('PadV2', { x: dy }, {
    paddings: [[0, chunks * perChunk - n], [0, hq - info.outHeight], [0, wq - info.outWidth], [0, 0]],
    constantValue: 0,
  });
  const taps: TensorInfo[] = [];
  for (let j = 0; j < chunks; j++) {
    const b = s.view(dyg, j * pc * co, [1, pc, co]); // packed once, shared by the chunk's taps
    for (let kh = 0; kh < fh; kh++) {
      const [dr, ph] = divMod(kh - top, sh);
      for (let kw = 0; kw < fw; kw++) {
        const [dc, pw] = divMod(kw - left, sw);
        const firstRow = (j * sh * sw + ph * sw + pw) * c2 + 1;
        const a = s.view(xT, firstRow * pc + dr * wq + dc, [1, ci, pc]);
        taps.push(s.run('BatchMatMul', { a, b }, { transposeA: false, transposeB: false }));
      }
    }
  }
  const all = taps.length === 1 ? taps[0]! : s.run('Concat', taps as unknown as tf.NamedTensorInfoMap, { axis: 0 });
  const sum = chunks === 1 ? all : s.run('Sum', { x: s.reshape(all, [chunks, fh * fw * ci * co]) }, { axis: [0], keepDims: false });
  return s.reshape(sum, [fh, fw, ci, co]);
}

/**
 * Pointwise: only every s-th pixel of x is read. Subsample it with an identity 1x1 convolution of
 * that stride (exact, and XNNPACK; wasm's StridedSlice is a scalar loop, 40 ms on 2M floats),
 * then dW = x_sub^T dy as a 2D matmul on XNNPACK's fully-connected path.
 */
function filterGradPointwise(s: Scratch, x: TensorInfo, dy: TensorInfo, info: ConvInfo): TensorInfo {
  const { batchSize: n, inChannels: ci, outChannels: co, outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw } = info;
  let xs = x;
  if (sh > 1 || sw > 1) {
    const eye = new Float32Array(ci * ci);
    for (let i = 0; i < ci; i++) eye[i * ci + i] = 1;
    const filter = s.constant(eye, [1, 1, ci, ci]);
    xs = s.run('Conv2D', { x, filter }, { strides: [sh, sw], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1], dimRoundingMode: 'floor' });
    xs = s.fitHW(xs, oh, ow);
  }
  const m = n * oh * ow;
  const xT = s.transpose(s.reshape(xs, [m, ci]), [1, 0]);
  const prod = s.run('BatchMatMul', { a: s.reshape(xT, [1, ci, m]), b: s.reshape(dy, [1, m, co]) }, { transposeA: false, transposeB: false });
  return s.reshape(prod, [1, 1, ci, co]);
}

/**
 * dW[kh,kw,ci,co] = sum over n,oh,ow of x[n, oh*s+kh-pad, ow*s+kw-pad, ci] * dy[n,oh,ow,co].
 * With ci as the batch, n as the input channels and dy as the filter, that is a stride-1
 * convolution dilated by the forward stride: one XNNPACK call instead of a JS im2col.
 */
function filterGradByConv(s: Scratch, x: TensorInfo, dy: TensorInfo, info: ConvInfo): TensorInfo {
  const { outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw, filterHeight: fh, filterWidth: fw } = info;
  const { top, left } = info.padInfo;
  // Rows of x beyond the last one any output reads are cropped instead of negatively padded.
  const needH = (oh - 1) * sh + fh - top;
  const needW = (ow - 1) * sw + fw - left;
  const xc = s.fitHW(x, Math.min(needH, x.shape[1] ?? 0), Math.min(needW, x.shape[2] ?? 0));
  const [, xh, xw] = xc.shape as Shape4;
  const xT = s.transpose(xc, [3, 1, 2, 0]); // [ci, h, w, n]
  const dyT = s.transpose(dy, [1, 2, 0, 3]); // [oh, ow, n, co]
  const pad: Pad = [[0, 0], [top, needH - xh], [left, needW - xw], [0, 0]];
  const g = s.conv(xT, dyT, pad, [sh, sw]); // [ci, fh, fw, co]
  return s.transpose(g, [1, 2, 0, 3]);
}

const FILTER_GRADS: Record<FilterGradPlan, (s: Scratch, x: TensorInfo, dy: TensorInfo, info: ConvInfo) => TensorInfo> = {
  pointwise: filterGradPointwise,
  taps: filterGradByTaps,
  conv: filterGradByConv,
};

/** Conv2DBackpropFilter for wasm (missing from tfjs-backend-wasm 4.22) on XNNPACK work only. */
function conv2DBackpropFilter(args: KernelArgs): TensorInfo {
  const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
  const attrs = args.attrs as unknown as ConvGradAttrs & { filterShape: Shape4 };
  checkNHWC(attrs);
  const s = new Scratch(args.backend);
  const info = tf.backend_util.computeConv2DInfo(x.shape as Shape4, attrs.filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode);
  return s.finish(FILTER_GRADS[filterGradPlan(info)](s, x, dy, info));
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
