/**
 * The float16 GEMMs checked against our float32 ones on the device itself, when the backend
 * starts with CIFAR_WEBGPU_MATMUL set: the three convolution kernels (forward, filter gradient,
 * input gradient) on two small ResNet-like shapes, in both modes, compared value by value.
 *
 * Why: the H100 run of 2026-11-27 (sixth session) compiled the tensor-core programs and their
 * forward convolutions agreed with float32 to 3e-4, but both gradients were off by 1.2-1.6 of
 * their largest value on every ResNet-18 shape (`docs/gpu/bench-gpu-h100-session6-tensor-cores.json`),
 * while the same programs with the subgroup-matrix operations written out (`emulated`) agree on
 * lavapipe. A training run asked to use the tensor cores would have learnt from wrong gradients,
 * silently. With this check such a device runs the float32 kernels, and the start line says why.
 */
import * as tf from '@tensorflow/tfjs';
import { mulberry32 } from '../../data/shuffle.js';
import { webGpuKernelSettings, withWebGpuKernels } from './settings.js';

/** float16 operands (11 significant bits) over these sums of up to 576 products stay well within this, relative to the largest value. */
export const MATRIX_CHECK_TOLERANCE = 2e-3;

export type CheckedKernel = 'forward' | 'filter gradient' | 'input gradient';

/** The largest disagreement of each kernel, relative to the largest float32 value, over the shapes checked. */
export type MatrixCheck = Record<CheckedKernel, number>;

interface CheckShape {
  x: [number, number, number, number];
  filter: [number, number, number, number];
  stride: number;
}

/** A 3 x 3 stride-1 convolution and a 1 x 1 stride-2 one, with ResNet's channel counts and K up to 576. */
const SHAPES: CheckShape[] = [
  { x: [4, 16, 16, 64], filter: [3, 3, 64, 64], stride: 1 },
  { x: [4, 16, 16, 32], filter: [1, 1, 32, 64], stride: 2 },
];

let last: MatrixCheck | undefined;

/** The last check's figures (for reports: `bench:gpu` records them); undefined before any, and after a start without float16 GEMMs asked for. */
export function matrixCheck(): MatrixCheck | undefined {
  return last;
}

/** Forgets the last check (a backend starting again). */
export function resetMatrixCheck(): void {
  last = undefined;
}

function values(size: number, random: () => number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = random() * 2 - 1;
  return out;
}

/**
 * max |a - b| / max |b|: the disagreement of `a` with the reference `b`, relative to its largest value
 * (Infinity for a NaN or an infinity).
 * @example relativeDisagreement(new Float32Array([1, 2.01]), new Float32Array([1, 2])) // 0.005 (to float32's rounding)
 */
export function relativeDisagreement(a: Float32Array, b: Float32Array): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (Number.isNaN(d)) return Infinity;
    err = Math.max(err, d);
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return Number.isFinite(err) ? err / Math.max(scale, 1e-30) : Infinity;
}

/** The first kernel over the tolerance and by how much, as the start line's reason; undefined when all agree. */
export function matrixCheckFailure(check: MatrixCheck): string | undefined {
  const bad = (Object.entries(check) as Array<[CheckedKernel, number]>).filter(([, e]) => !(e <= MATRIX_CHECK_TOLERANCE));
  if (bad.length === 0) return undefined;
  const worst = bad.map(([k, e]) => `${k} off by ${Number.isFinite(e) ? e.toPrecision(2) : e}`).join(', ');
  return `its convolutions disagree with the float32 kernels on this device (${worst} of the largest value; at most ${MATRIX_CHECK_TOLERANCE} allowed)`;
}

/**
 * What the check allows: float16 for all three kernels, for the forward convolutions only (the
 * gradients disagree; the H100 of 2026-11-27), or none (the forward disagrees), with the words
 * for the start line.
 */
export function matrixCheckVerdict(check: MatrixCheck): { scope: 'all' } | { scope: 'forward'; note: string } | { scope: 'none'; reason: string } {
  const failure = matrixCheckFailure(check);
  if (failure === undefined) return { scope: 'all' };
  if (check.forward <= MATRIX_CHECK_TOLERANCE) return { scope: 'forward', note: `for the forward convolutions only, the gradients in float32: ${failure}` };
  return { scope: 'none', reason: failure };
}

/**
 * A convolution's filter gradient, input gradient and forward pass (with `bias` and ReLU as
 * FusedConv2D, else plain Conv2D) through the kernels registered on the current backend, read back.
 */
export async function convKernelOutputs(x: tf.Tensor4D, dy: tf.Tensor4D, w: tf.Tensor4D, stride: number, bias?: tf.Tensor1D): Promise<Float32Array[]> {
  const attrs = { strides: stride, pad: 'same', dataFormat: 'NHWC' };
  const out = [
    tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: w.shape }) as tf.Tensor,
    tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, { ...attrs, inputShape: x.shape }) as tf.Tensor,
    bias === undefined ? tf.conv2d(x, w, stride, 'same') : tf.fused.conv2d({ x, filter: w, strides: stride, pad: 'same', bias, activation: 'relu' }),
  ];
  try {
    return await Promise.all(out.map(async (t) => (await t.data()) as Float32Array));
  } finally {
    tf.dispose(out);
  }
}

/**
 * Runs the check on the current backend (webgpu, our kernels registered) in the float16 mode set
 * now, against float32; restores the settings. Inputs are uniform in (-1, 1) from a fixed seed; dy
 * is scaled by 1e-4, as loss gradients are small (the float16 GEMMs scale it back up first).
 */
export async function runMatrixCheck(): Promise<MatrixCheck> {
  if (webGpuKernelSettings().matmul === 'f32') throw new Error('runMatrixCheck: the matmul setting is f32, nothing to check');
  const random = mulberry32(7);
  const check: MatrixCheck = { forward: 0, 'filter gradient': 0, 'input gradient': 0 };
  for (const { x: xs, filter, stride } of SHAPES) {
    const info = tf.backend_util.computeConv2DInfo(xs, filter, stride, 1, 'same');
    const dyShape: [number, number, number, number] = [xs[0], info.outHeight, info.outWidth, filter[3]];
    const size = (s: number[]): number => s.reduce((a, b) => a * b, 1);
    const x = tf.tensor4d(values(size(xs), random), xs);
    const dy = tf.tensor4d(values(size(dyShape), random).map((v) => v * 1e-4), dyShape);
    const w = tf.tensor4d(values(size(filter), random), filter);
    try {
      const reference = await withWebGpuKernels({ matmul: 'f32' }, () => convKernelOutputs(x, dy, w, stride));
      const ours = await convKernelOutputs(x, dy, w, stride);
      (['filter gradient', 'input gradient', 'forward'] as const).forEach((k, i) => {
        check[k] = Math.max(check[k], relativeDisagreement(ours[i]!, reference[i]!));
      });
    } finally {
      tf.dispose([x, dy, w]);
    }
  }
  last = check;
  return check;
}
