/**
 * What the float16 GEMM suites share: the convolution cases (emulated subgroup matrices in
 * webgpu-matrix.test.ts, real ones in webgpu-tensor-cores.test.ts), their inputs, the four
 * convolutions each runs, and float16's rounding for the cpu backend's reference.
 */
import * as tf from '@tensorflow/tfjs';
import { randomArray } from '../backend/helpers.js';

export type Shape4 = [number, number, number, number];

/** Rounds to 11 significant bits, as float16 does in its normal range (which the scaled dy is in). */
export function roundToHalfPrecision(values: Float32Array): Float32Array {
  const out = new Float32Array(values);
  const bits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i]!;
    // Round to nearest even on the 13 mantissa bits float16 does not keep.
    const rounded = b + 0x0fff + ((b >>> 13) & 1);
    bits[i] = rounded & ~0x1fff;
  }
  return out;
}

export interface Float16Case {
  x: Shape4;
  f: number;
  co: number;
  s: number;
  pad: 'same' | 'valid';
  tile: 64 | 128;
  wide: boolean;
}

export interface Float16Run extends Float16Case {
  prefetch: boolean;
  depth: 16 | 32;
}

const CASES: Float16Case[] = [
  { x: [2, 8, 8, 5], f: 3, co: 7, s: 1, pad: 'same', tile: 64, wide: false },
  { x: [3, 9, 9, 6], f: 3, co: 70, s: 2, pad: 'same', tile: 128, wide: false },
  { x: [1, 7, 7, 33], f: 3, co: 5, s: 1, pad: 'valid', tile: 64, wide: false },
  { x: [4, 6, 6, 68], f: 1, co: 72, s: 1, pad: 'same', tile: 128, wide: true },
  { x: [4, 8, 8, 64], f: 3, co: 128, s: 2, pad: 'same', tile: 128, wide: true },
  { x: [8, 16, 16, 4], f: 3, co: 8, s: 1, pad: 'same', tile: 128, wide: true }, // split-K dW
  { x: [2, 7, 7, 4], f: 1, co: 8, s: 2, pad: 'valid', tile: 64, wide: true },
];

/**
 * Each case 16 deep; three with prefetch (scalar and vec4 loads, split-K) and two 32 deep (two
 * subgroup-matrix steps per tile), with and without prefetch. lavapipe runs each program on the CPU: few but varied.
 */
export const FLOAT16_RUNS: Float16Run[] = [
  ...CASES.map((c) => ({ ...c, prefetch: false, depth: 16 as const })),
  ...[CASES[1]!, CASES[4]!, CASES[5]!].map((c) => ({ ...c, prefetch: true, depth: 16 as const })),
  ...[CASES[1]!, CASES[4]!].map((c, i) => ({ ...c, prefetch: i === 0, depth: 32 as const })),
];

/** A run as a test name. */
export function float16RunName(r: Float16Run): string {
  return `${r.f}x${r.f} stride ${r.s} ${r.pad}, x ${r.x.join('x')}, ${r.co} filters, tiles up to ${r.tile}${r.wide ? ', vec4 loads' : ''}${r.prefetch ? ', prefetch' : ''}, ${r.depth} deep`;
}

/** A run's shapes and its inputs x, dy, w and the bias (seeded: the same every time). */
export function float16Inputs(r: Float16Run): { filter: Shape4; dyShape: Shape4; x: Float32Array; dy: Float32Array; w: Float32Array; b: Float32Array } {
  const filter: Shape4 = [r.f, r.f, r.x[3], r.co];
  const info = tf.backend_util.computeConv2DInfo(r.x, filter, r.s, 1, r.pad);
  const dyShape: Shape4 = [r.x[0], info.outHeight, info.outWidth, r.co];
  const [x, dy, w, b] = [r.x, dyShape, filter, [r.co]].map((shape, i) => randomArray(shape.reduce((a, v) => a * v, 1), 41 + i));
  return { filter, dyShape, x: x!, dy: dy!, w: w!, b: b! };
}

/** dW, dx, conv2d and the fused conv2d (bias, relu) of one convolution. */
export function float16Convs(x: tf.Tensor4D, dy: tf.Tensor4D, w: tf.Tensor4D, s: number, pad: 'same' | 'valid', b: tf.Tensor1D): tf.Tensor[] {
  const attrs = { strides: s, pad, dataFormat: 'NHWC' };
  return [
    tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: w.shape }) as tf.Tensor,
    tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, { ...attrs, inputShape: x.shape }) as tf.Tensor,
    tf.conv2d(x, w, s, pad),
    tf.fused.conv2d({ x, filter: w, strides: s, pad, bias: b, activation: 'relu' }),
  ];
}

/** The cpu backend's four convolutions of a run on float16-rounded x, dy and w (the backend must be cpu). */
export async function float16Reference(r: Float16Run, inputs: ReturnType<typeof float16Inputs>): Promise<Float32Array[]> {
  const [hx, hdy, hw] = [inputs.x, inputs.dy, inputs.w].map(roundToHalfPrecision);
  const ts = tf.tidy(() => float16Convs(tf.tensor4d(hx!, r.x), tf.tensor4d(hdy!, inputs.dyShape), tf.tensor4d(hw!, inputs.filter), r.s, r.pad, tf.tensor1d(inputs.b)));
  const out = await Promise.all(ts.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose(ts);
  return out;
}
