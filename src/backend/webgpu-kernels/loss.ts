/**
 * A training step's loss in two WebGPU dispatches: the label-smoothed cross-entropy's mean and
 * sum over the batch and the count of right answers in one (forward), its gradient in one
 * (backward).
 *
 * Written with tfjs ops (train/step.ts' `smoothedCrossEntropy`, plus arg max, equal and sum for
 * the right answers, and the sum as mean × n), the loss takes about 20 dispatches forward and 8
 * backward, each as costly on the CPU as a convolution's, for [batch, 10] numbers. Here one
 * workgroup walks the rows (arg max, log-sum-exp, the smoothed target's dot product) and reduces
 * them; the gradient is (softmax − target) · dy / n per element, recomputing its row's
 * log-sum-exp (ten values). The forward writes three scalars in place (`dispatchInPlace`: a tfjs
 * program has one output), so it runs where in-place dispatches do (`canUpdateInPlace`: on
 * webgpu, compiling only included); the trainer falls back to the ops elsewhere.
 */
import * as tf from '@tensorflow/tfjs';
import type { Scalar, Tensor, Tensor1D, Tensor2D } from '@tensorflow/tfjs';
import { dispatchInPlace } from './in-place.js';
import { type GpuProgram, type ProgramUniform, type WebGpuBackendLike, trackInfo } from './program.js';

/** Threads of the forward's one workgroup (rows t, t + 256, ...). */
const THREADS = 256;

/** The smoothed target: `on` more at the label, `off` everywhere (on = 1 − s, off = s / k). */
function targetWeights(classes: number, smoothing: number): { on: number; off: number } {
  return { on: 1 - smoothing, off: smoothing / classes };
}

const FORWARD_WGSL = `
struct Hyper { n : u32, k : u32, on : f32, off : f32, lambda : f32 };
@group(0) @binding(0) var<storage, read> logits : array<f32>;
@group(0) @binding(1) var<storage, read> labels : array<i32>;
@group(0) @binding(2) var<storage, read_write> meanLoss : array<f32>;
@group(0) @binding(3) var<storage, read_write> lossSum : array<f32>;
@group(0) @binding(4) var<storage, read_write> correct : array<f32>;
@group(0) @binding(5) var<uniform> h : Hyper;
var<workgroup> partLoss : array<f32, ${THREADS}>;
var<workgroup> partHits : array<f32, ${THREADS}>;

@compute @workgroup_size(${THREADS})
fn main(@builtin(local_invocation_index) t : u32) {
  var loss = 0.0;
  var hits = 0.0;
  for (var row = t; row < h.n; row += ${THREADS}u) {
    let base = row * h.k;
    // The first largest logit, as tfjs' ArgMax picks it.
    var best = logits[base];
    var arg = 0u;
    for (var j = 1u; j < h.k; j++) {
      let v = logits[base + j];
      if (v > best) { best = v; arg = j; }
    }
    var s = 0.0;
    for (var j = 0u; j < h.k; j++) { s += exp(logits[base + j] - best); }
    let lse = best + log(s);
    let label = u32(labels[row]);
    // A mixed batch's partner: the batch read backwards (image/mix.ts); weight 1 − λ.
    let other = u32(labels[h.n - 1u - row]);
    var total = 0.0;
    for (var j = 0u; j < h.k; j++) { total += logits[base + j] - lse; }
    // −Σ target_j · log softmax_j, target = off + on · (λ at the label, 1 − λ at the partner's).
    loss += -(h.off * total + h.on * (h.lambda * (logits[base + label] - lse) + (1.0 - h.lambda) * (logits[base + other] - lse)));
    hits += h.lambda * select(0.0, 1.0, arg == label) + (1.0 - h.lambda) * select(0.0, 1.0, arg == other);
  }
  partLoss[t] = loss;
  partHits[t] = hits;
  workgroupBarrier();
  for (var half = ${THREADS / 2}u; half > 0u; half = half / 2u) {
    if (t < half) {
      partLoss[t] += partLoss[t + half];
      partHits[t] += partHits[t + half];
    }
    workgroupBarrier();
  }
  if (t == 0u) {
    meanLoss[0] = partLoss[0] / f32(h.n);
    lossSum[0] = partLoss[0];
    correct[0] = partHits[0];
  }
}`;

/** d(mean loss)/d logits · dy: (softmax − target) · dy / n, one invocation an element (the target mixed by λ as the forward's). */
export class LossGradProgram implements GpuProgram {
  variableNames = ['logits', 'labels', 'dy'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0, 1] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];
  uniforms = 'on : f32, off : f32, invCount : f32, lambda : f32,';
  size = true;

  constructor(
    n: number,
    private readonly k: number,
  ) {
    this.outputShape = [n, k];
    this.dispatch = [Math.ceil((n * k) / 64), 1, 1];
    this.shaderKey = `cifarLossGrad_${k}`;
  }

  getUserCode(): string {
    return `
  fn main(index : i32) {
    if (index < uniforms.size) {
      let k = ${this.k};
      let row = index / k;
      let base = row * k;
      var best = logits[base];
      for (var j = 1; j < k; j++) { best = max(best, logits[base + j]); }
      var s = 0.0;
      for (var j = 0; j < k; j++) { s += exp(logits[base + j] - best); }
      let p = exp(logits[index] - best) / s;
      let other = labels[uniforms.size / k - 1 - row];
      let want = uniforms.off + uniforms.on * (select(0.0, uniforms.lambda, index - base == labels[row]) + select(0.0, 1.0 - uniforms.lambda, index - base == other));
      setOutputAtIndex(index, (p - want) * dy[0] * uniforms.invCount);
    }
  }`;
  }
}

/**
 * The mean label-smoothed cross-entropy of `logits` [n, k] against int32 `labels` (differentiable
 * in the logits), its sum over the batch and the number of rows whose first largest logit is the
 * label, on the webgpu backend (check `canUpdateInPlace()` first). The same numbers as
 * `smoothedCrossEntropy` (and `stepLoss`'s count) up to float32 rounding, `lambda` included: with
 * it below 1, a mixed batch's targets and count (λ for the row's label, 1 − λ for its partner's).
 */
export function fusedSmoothedCrossEntropy(logits: Tensor2D, labels: Tensor1D, smoothing: number, lambda = 1): { loss: Scalar; lossSum: Scalar; correct: Scalar } {
  const backend = tf.backend() as unknown as WebGpuBackendLike;
  const [n, k] = logits.shape;
  const { on, off } = targetWeights(k, smoothing);
  let lossSum: Scalar | undefined;
  let correct: Scalar | undefined;
  const f = tf.customGrad((...args: unknown[]) => {
    const [x, save] = args as [Tensor2D, tf.GradSaveFunc];
    const [mean, sum, hits] = [0, 1, 2].map(() => backend.makeTensorInfo([], 'float32'));
    dispatchInPlace({
      key: 'cifarLoss',
      code: () => FORWARD_WGSL,
      tensors: [x, labels, mean!, sum!, hits!],
      written: [mean!, sum!, hits!],
      uniforms: [
        { type: 'uint32', data: [n] },
        { type: 'uint32', data: [k] },
        { type: 'float32', data: [on] },
        { type: 'float32', data: [off] },
        { type: 'float32', data: [lambda] },
      ],
      grid: [1, 1, 1],
      name: 'CifarLoss',
    });
    // The forward runs inside a tidy: keep the sum and the count for the caller.
    lossSum = tf.keep(trackInfo(sum!) as Scalar);
    correct = tf.keep(trackInfo(hits!) as Scalar);
    save([x]);
    const gradFunc = (dy: Tensor | Tensor[], saved: Tensor[]): Tensor => {
      const program = new LossGradProgram(n, k);
      const uniforms: ProgramUniform = [
        { type: 'float32', data: [on] },
        { type: 'float32', data: [off] },
        { type: 'float32', data: [1 / n] },
        { type: 'float32', data: [lambda] },
      ];
      return trackInfo(backend.runWebGPUProgram(program, [saved[0]!, labels, dy as Tensor], 'float32', uniforms));
    };
    return { value: trackInfo(mean!) as Scalar, gradFunc };
  });
  const loss = f(logits) as Scalar;
  return { loss, lossSum: lossSum!, correct: correct! };
}
