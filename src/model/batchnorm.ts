/**
 * Batch normalisation over the channel axis of NHWC tensors, with a hand-written gradient.
 *
 * tfjs-layers' BatchNormalization differentiates through `moments` and the FusedBatchNorm
 * gradient, which tiles per-channel vectors to the full tensor size (wasm's Tile kernel:
 * ~100 ms per 2M elements) and builds `ones(x.shape)` in JavaScript. Here the training-mode
 * forward and backward are written out, per-channel sums are matmuls with a ones vector (see
 * `channelSum`), and every full-size op is a native
 * broadcasting elementwise kernel. Inference uses the FusedBatchNorm kernel with the moving
 * statistics, like the stock layer. Weight names and order match the stock layer
 * (gamma, beta, moving_mean, moving_variance).
 *
 * On the `webgpu` backend the training path runs our own WGSL programs instead
 * (src/backend/webgpu-kernels/batchnorm.ts): there the step is bound by the CPU cost of each
 * dispatch and of each scalar upload. The op-by-op version takes 38 dispatches and 9 scalar
 * uploads per layer and step, the programs 9 and none (test/backend/webgpu-batchnorm.test.ts);
 * on an H100 that took the ResNet-18 step at batch 256 from 265-306 ms to 80 ms. With the moving
 * averages and the two parameter gradients each written in place in the dispatch of their
 * reduction, 6.
 */
import * as tf from '@tensorflow/tfjs';
import type { LayerVariable, Tensor, Tensor4D } from '@tensorflow/tfjs';
import { runBatchNormApply, runBatchNormGrad, runBatchNormStats, runStatsRow, type MovingStats } from '../backend/webgpu-kernels/batchnorm.js';
import { canUpdateInPlace, ensureOwnStorage } from '../backend/webgpu-kernels/in-place.js';
import { type WebGpuBackendLike, trackInfo } from '../backend/webgpu-kernels/program.js';

/**
 * Per-channel sum of an NHWC tensor, as `reshape(x, [M, C])^T x ones[M, 1]`. On wasm this
 * transposed-A matmul is a single streaming pass (~1.5 ms for 2M elements), where `tf.sum` over
 * the leading axes transposes first (~3 ms) and `ones[1, M] x x` repacks x as weights (~8 ms).
 */
export function channelSum(x: Tensor): Tensor {
  const c = x.shape[x.shape.length - 1] ?? 1;
  const m = x.size / c;
  return tf.reshape(tf.matMul(tf.reshape(x, [m, c]), tf.fill([m, 1], 1, 'float32'), true, false), [c]);
}

export interface BatchNormArgs {
  /** Weight of the old moving statistics per update (Keras convention; PyTorch's 0.1 = 0.9). */
  momentum?: number;
  epsilon?: number;
  name?: string;
}

let webGpuKernels = true;

/** Turns the WebGPU batch-norm programs off (or back on) to compare with the op-by-op path in tests and benchmarks. */
export function useWebGpuBatchNorm(on: boolean): void {
  webGpuKernels = on;
}

/** The WebGPU backend when the training path should use our programs for x, else undefined. */
function webGpuBackendFor(x: Tensor): WebGpuBackendLike | undefined {
  if (!webGpuKernels || x.dtype !== 'float32' || tf.getBackend() !== 'webgpu') return undefined;
  return tf.backend() as unknown as WebGpuBackendLike;
}

/**
 * Whether a BatchNorm layer with `fuseRelu` applies the ReLU itself in a training pass over x
 * (the WebGPU programs run): the ReLU layer after it must then pass x through (`useFusedBatchNormRelu`).
 */
export function batchNormFusesRelu(x: Tensor): boolean {
  return webGpuBackendFor(x) !== undefined;
}

/**
 * `trainingBatchNorm` on WebGPU, returning the statistics as one [2, C] tensor (mean; biased
 * variance) that the programs read directly: 3 dispatches forward (with `moving`, the moving
 * averages updated in place in the same dispatches: see `runBatchNormStats`), 3 backward where
 * in-place dispatches run, else 4.
 */
function webGpuTrainingBatchNorm(backend: WebGpuBackendLike, x: Tensor4D, gamma: Tensor, beta: Tensor, epsilon: number, moving?: MovingStats, relu = false): { y: Tensor4D; stats: Tensor } {
  let stats: Tensor | undefined;
  const f = tf.customGrad((...args: unknown[]) => {
    const [xi, g, b, save] = args as [Tensor4D, Tensor, Tensor, tf.GradSaveFunc];
    const s = trackInfo(runBatchNormStats(backend, xi, moving));
    // The forward runs inside a tidy: keep the statistics for the caller, who disposes them.
    stats = tf.keep(s);
    const value = trackInfo(runBatchNormApply(backend, xi, s, g, b, epsilon, relu)) as Tensor4D;
    // With the ReLU fused, its gradient needs the output (where it is above 0).
    save(relu ? [xi, s, g, value] : [xi, s, g]);
    const gradFunc = (dy: Tensor | Tensor[], saved: Tensor[]): Tensor[] => {
      const [sx, sStats, sGamma, sOut] = saved as [Tensor, Tensor, Tensor, Tensor | undefined];
      const { dx, dGamma, dBeta } = runBatchNormGrad(backend, dy as Tensor, sx, sStats, sGamma, epsilon, undefined, sOut);
      return [trackInfo(dx), trackInfo(dGamma), trackInfo(dBeta)];
    };
    return { value, gradFunc };
  });
  const y = f(x, gamma, beta) as Tensor4D;
  if (stats === undefined) throw new Error('batch norm statistics missing');
  return { y, stats };
}

/**
 * Training-mode batch norm of NHWC x with the batch statistics. Returns y and, through `stats`,
 * the batch mean and (biased) variance for the moving averages; gradients flow to x, gamma, beta.
 */
export function trainingBatchNorm(x: Tensor4D, gamma: Tensor, beta: Tensor, epsilon: number): { y: Tensor4D; mean: Tensor; variance: Tensor } {
  const backend = webGpuBackendFor(x);
  if (backend) {
    const { y, stats } = webGpuTrainingBatchNorm(backend, x, gamma, beta, epsilon);
    const mean = tf.keep(trackInfo(runStatsRow(backend, stats, 0)));
    const variance = tf.keep(trackInfo(runStatsRow(backend, stats, 1)));
    stats.dispose();
    return { y, mean, variance };
  }
  let mean: Tensor | undefined;
  let variance: Tensor | undefined;
  const f = tf.customGrad((...args: unknown[]) => {
    const [xi, g, b, save] = args as [Tensor4D, Tensor, Tensor, tf.GradSaveFunc];
    const count = xi.size / (xi.shape[3] ?? 1);
    const m = tf.div(channelSum(xi), count);
    const xc = tf.sub(xi, m);
    const v = tf.div(channelSum(tf.square(xc)), count);
    const invStd = tf.rsqrt(tf.add(v, epsilon));
    // The forward runs inside a tidy: keep the statistics for the caller, who disposes them.
    mean = tf.keep(m);
    variance = tf.keep(v);
    save([xc, invStd, g]);
    const value = tf.add(tf.mul(xc, tf.mul(invStd, g)), b) as Tensor4D;
    const gradFunc = (dy: Tensor | Tensor[], saved: Tensor[]): Tensor[] => {
      const [sxc, sInvStd, sGamma] = saved as [Tensor, Tensor, Tensor];
      const d = dy as Tensor;
      const dBeta = channelSum(d);
      const dGammaRaw = channelSum(tf.mul(d, sxc)); // = dGamma / invStd
      const a = tf.mul(sGamma, sInvStd);
      // dx = a * (dy - mean(dy) - xhat * mean(dy * xhat)), expanded so that only three
      // full-size ops remain: dy * a + xc * b + c.
      const b2 = tf.neg(tf.div(tf.mul(tf.mul(a, tf.square(sInvStd)), dGammaRaw), count));
      const c2 = tf.neg(tf.div(tf.mul(a, dBeta), count));
      const dx = tf.add(tf.add(tf.mul(d, a), tf.mul(sxc, b2)), c2);
      return [dx, tf.mul(dGammaRaw, sInvStd), dBeta];
    };
    return { value, gradFunc };
  });
  const y = f(x, gamma, beta) as Tensor4D;
  if (mean === undefined || variance === undefined) throw new Error('batch norm statistics missing');
  return { y, mean, variance };
}

/** Batch normalisation layer (channels last) with a fast training gradient. Serialises as `CifarBatchNorm`. */
export class BatchNorm extends tf.layers.Layer {
  static readonly className = 'CifarBatchNorm';
  private readonly momentum: number;
  private readonly epsilon: number;
  private gamma: LayerVariable | undefined;
  private beta: LayerVariable | undefined;
  private movingMean: LayerVariable | undefined;
  private movingVariance: LayerVariable | undefined;
  /**
   * Apply the ReLU that follows in training passes that run the WebGPU programs
   * (`batchNormFusesRelu`), for `useFusedBatchNormRelu`; not part of the layer's config.
   */
  fuseRelu = false;

  /** `args` may also carry the generic layer config (name, trainable, ...) when deserialising. */
  constructor(args: BatchNormArgs & Record<string, unknown> = {}) {
    const { momentum, epsilon, ...layerArgs } = args;
    super(layerArgs as ConstructorParameters<typeof tf.layers.Layer>[0]);
    this.momentum = momentum ?? 0.9;
    this.epsilon = epsilon ?? 1e-5;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    const c = shape[shape.length - 1];
    if (typeof c !== 'number') throw new Error('BatchNorm needs a known channel count');
    this.gamma = this.addWeight('gamma', [c], 'float32', tf.initializers.ones());
    this.beta = this.addWeight('beta', [c], 'float32', tf.initializers.zeros());
    this.movingMean = this.addWeight('moving_mean', [c], 'float32', tf.initializers.zeros(), undefined, false);
    this.movingVariance = this.addWeight('moving_variance', [c], 'float32', tf.initializers.ones(), undefined, false);
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    return inputShape;
  }

  override call(inputs: Tensor | Tensor[], kwargs: { training?: boolean }): Tensor {
    const x = (Array.isArray(inputs) ? inputs[0] : inputs) as Tensor4D;
    const { gamma, beta, movingMean, movingVariance } = this;
    if (!gamma || !beta || !movingMean || !movingVariance) throw new Error('BatchNorm used before build');
    if (kwargs.training !== true) {
      return tf.batchNorm(x, movingMean.read(), movingVariance.read(), beta.read(), gamma.read(), this.epsilon);
    }
    const backend = webGpuBackendFor(x);
    if (backend) {
      // The moving averages straight from the [2, C] statistics, momentum as a uniform, no scalar
      // tensors: in place, in the dispatch that finishes the statistics (while tfjs only
      // compiles, that dispatch is compiled and writes nothing), else one program each.
      let moving: MovingStats | undefined;
      if (canUpdateInPlace()) {
        const [mean, variance] = [movingMean.read() as tf.Variable, movingVariance.read() as tf.Variable];
        ensureOwnStorage(mean);
        ensureOwnStorage(variance);
        moving = { mean, variance, momentum: this.momentum };
      }
      const { y, stats } = webGpuTrainingBatchNorm(backend, x, gamma.read(), beta.read(), this.epsilon, moving, this.fuseRelu);
      if (!moving) {
        tf.tidy(() => {
          movingMean.write(trackInfo(runStatsRow(backend, stats, 0, movingMean.read(), this.momentum)));
          movingVariance.write(trackInfo(runStatsRow(backend, stats, 1, movingVariance.read(), this.momentum)));
        });
      }
      stats.dispose();
      return y;
    }
    const { y, mean, variance } = trainingBatchNorm(x, gamma.read(), beta.read(), this.epsilon);
    tf.tidy(() => {
      const k = this.momentum;
      movingMean.write(tf.add(tf.mul(movingMean.read(), k), tf.mul(mean, 1 - k)));
      movingVariance.write(tf.add(tf.mul(movingVariance.read(), k), tf.mul(variance, 1 - k)));
    });
    mean.dispose();
    variance.dispose();
    return y;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), momentum: this.momentum, epsilon: this.epsilon };
  }
}

tf.serialization.registerClass(BatchNorm);
