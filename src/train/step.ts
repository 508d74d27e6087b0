import * as tf from '@tensorflow/tfjs';
import { compileInParallel } from '../backend/webgpu-kernels/compile.js';
import { fusedSmoothedCrossEntropy } from '../backend/webgpu-kernels/loss.js';
import { averageAllInPlace, canUpdateInPlace, compilingOnly, ensureOwnStorage, sgdUpdateAllInPlace } from '../backend/webgpu-kernels/sgd.js';
import { beginStep } from '../backend/webgpu-bind-groups.js';
import { IMAGE_BYTES } from '../image/preprocess.js';
import { prepareForTraining } from '../model/training-graph.js';
import { type InputAugment, createNormalizer } from '../model/normalize.js';
import { cutoutBoxes } from './augment.js';
import type { Batch } from './batches.js';

/** The optimisation pieces of a run: SGD with Nesterov momentum and coupled weight decay. */
export interface Trainer {
  /**
   * One step on a batch (as the loader makes them, train/batches.ts); returns the summed loss and
   * the number of correct answers (on device). The batch's `cutout` centres are cut from the
   * normalised images when the trainer's `cutout` side is above 0; its `crops` are the crop and
   * flip draws, when the loader left them to the normalizer.
   */
  step(batch: StepBatch, lr: number): { lossSum: tf.Scalar; correct: tf.Scalar };
  /**
   * On webgpu, compiles the programs of a step on `size` images (forward, backward, update, our
   * in-place ones included) in parallel before the first step needs them, and returns how many;
   * changes no weight or statistic. Elsewhere it does nothing and returns 0.
   */
  precompile(size: number): Promise<number>;
  /**
   * Runs `fn` with the model holding the weight average (`ema`), then puts the live weights
   * back; without `ema`, just runs it.
   */
  withAverage<T>(fn: () => Promise<T>): Promise<T>;
  /** Leaves the weight average in the model for good (for saving it); without `ema`, does nothing. */
  adoptAverage(): void;
  /** Everything a checkpoint must hold, in a fixed order: model weights, velocities, then weight averages. */
  stateTensors(): tf.Tensor[];
  /** Put back what `stateTensors` returned (same order and shapes). */
  restore(arrays: { shape: number[]; values: Float32Array }[]): void;
  dispose(): void;
}

/** What a training step takes of a batch (train/batches.ts' Batch). */
export type StepBatch = Pick<Batch, 'images' | 'labels' | 'size' | 'cutout' | 'crops' | 'mix'>;

export interface TrainerOptions {
  momentum: number;
  weightDecay: number;
  labelSmoothing: number;
  mean: readonly number[];
  std: readonly number[];
  classes: number;
  /** Side of the cutout square (0 or absent = off); the centres come with each batch. */
  cutout?: number;
  /** On webgpu, update the tensors in place, several a dispatch (default), rather than with tfjs ops. */
  fusedUpdate?: boolean;
  /**
   * Batches come with crop draws (`crops`; the loader leaves the crop and flip to the normalizer):
   * `step` refuses a batch without them, and `precompile` compiles the input program that applies them.
   */
  crops?: boolean;
  /**
   * Keep an exponential moving average of all the model's weights (batch-norm statistics
   * included, as PyTorch's AveragedModel with use_buffers) with this decay a step, updated after
   * each step: a ← d·a + (1 − d)·w. 0 or absent: none.
   */
  ema?: number;
  /** Batches may come mixed (MixUp, CutMix): `precompile` compiles the input program that mixes too. */
  mix?: boolean;
  /**
   * Data-parallel training (train/parallel.ts): turns this trainer's gradients (in the order of
   * the model's trainable weights) and figures on its share of a batch into the whole batch's,
   * before the update. Called within the step, synchronously.
   */
  reduce?: GradientReducer;
}

/** See `TrainerOptions.reduce`. */
export type GradientReducer = (shard: { grads: tf.Tensor[]; lossSum: tf.Scalar; correct: tf.Scalar; size: number }) => { grads: tf.Tensor[]; lossSum: tf.Scalar; correct: tf.Scalar };

/**
 * Mean label-smoothed cross-entropy, written with logSoftmax so it stays stable. The smoothing's
 * numbers are fill values and the mean is a Mean kernel, so that no scalar goes up
 * to a GPU per step (each upload makes a staging buffer there). (oneHot's own on/off values would
 * do it in one op, but tfjs-backend-wasm's OneHot writes int32 whatever the dtype asked.)
 * With `lambda` below 1 (a mixed batch, image/mix.ts), each row's target is λ·its own label's
 * smoothed target + (1 − λ)·its partner's (the labels read backwards).
 */
export function smoothedCrossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D, classes: number, smoothing: number, lambda = 1): tf.Scalar {
  const off = smoothing / classes;
  const shape: [number, number] = [labels.shape[0], classes];
  // hot · (1 − s) + s/k with both numbers as fill values (a cast to bool would upload a scalar).
  const smoothed = (l: tf.Tensor1D) => tf.add(tf.mul(tf.cast(tf.oneHot(l, classes), 'float32'), tf.fill(shape, 1 - smoothing)), tf.fill(shape, off));
  const target = lambda === 1 ? smoothed(labels) : tf.add(tf.mul(smoothed(labels), tf.fill(shape, lambda)), tf.mul(smoothed(tf.reverse(labels)), tf.fill(shape, 1 - lambda)));
  return tf.neg(tf.mean(tf.sum(tf.mul(target, tf.logSoftmax(logits)), 1))) as tf.Scalar;
}

/**
 * A training step's loss (`smoothedCrossEntropy`, differentiable in the logits) with its sum over
 * the batch and the number of right answers, both kept (the caller disposes them). On WebGPU,
 * where in-place dispatches run, one dispatch forward and one backward
 * (backend/webgpu-kernels/loss.ts) instead of about 28; elsewhere tfjs' ops. In a mixed batch
 * (`lambda` below 1) a row counts λ when its answer is its own label and 1 − λ when it is its
 * partner's.
 */
export function stepLoss(logits: tf.Tensor2D, labels: tf.Tensor1D, classes: number, smoothing: number, lambda = 1): { loss: tf.Scalar; lossSum: tf.Scalar; correct: tf.Scalar } {
  if (canUpdateInPlace()) return fusedSmoothedCrossEntropy(logits, labels, smoothing, lambda);
  const loss = smoothedCrossEntropy(logits, labels, classes, smoothing, lambda);
  const lossSum = tf.keep(tf.mul(loss, labels.shape[0])) as tf.Scalar;
  const hits = (l: tf.Tensor1D) => tf.sum(tf.equal(tf.argMax(logits, 1), l)).toFloat();
  const correct = tf.keep(lambda === 1 ? hits(labels) : tf.add(tf.mul(hits(labels), lambda), tf.mul(hits(tf.reverse(labels)), 1 - lambda))) as tf.Scalar;
  return { loss, lossSum, correct };
}

/**
 * Make the step function for a model. Nesterov momentum as PyTorch's SGD does it
 * (v = μv + g; w -= lr·(g + μv)) with weight decay added to the gradient of conv and dense
 * kernels only — batch-norm scales and biases are not decayed.
 */
export function createTrainer(model: tf.LayersModel, options: TrainerOptions): Trainer {
  const normalizer = createNormalizer(options);
  // Until dispose: lazy convolution gradients (the stem's unused input gradient is never
  // computed) and, on WebGPU, each ReLU fused into the batch norm before it.
  const restoreLayers = prepareForTraining(model);
  const params = model.trainableWeights.map((w) => ({ layerVar: w, variable: w.read() as tf.Variable, decay: /kernel$/.test(w.originalName) }));
  // Made in a tidy: tf.variable(t) shares t's storage, and t left alive would keep it after dispose.
  const velocities = tf.tidy(() => params.map((p) => tf.variable(tf.zerosLike(p.variable), false)));
  const decay = options.ema ?? 0;
  // All the model's weights, batch-norm statistics included, in a fixed order (the getter builds
  // a new array from every layer on each call: not once per tensor in each step).
  const weights = model.weights;
  // The average starts at the initial weights (a restored checkpoint overwrites it).
  const averages = decay > 0 ? tf.tidy(() => weights.map((w) => tf.variable(tf.clone(w.read()), false))) : [];
  /** The forward and backward pass of a step: mean loss, gradients, correct answers (kept). */
  /** The normalizer's augmentation of a batch: its crops, its cutout boxes (when the trainer cuts), its mix. */
  const augmentOf = ({ size, cutout, crops, mix }: StepBatch): InputAugment => {
    const side = options.cutout ?? 0;
    return { ...(cutout && side > 0 ? { boxes: cutoutBoxes(cutout, size, side) } : {}), ...(crops ? { crops } : {}), ...(mix ? { mix } : {}) };
  };
  const lossAndGrads = (batch: StepBatch) => {
    const { images, labels, size, mix } = batch;
    const x = normalizer.apply(images, size, augmentOf(batch));
    const y = tf.tensor1d(labels.subarray(0, size), 'int32');
    let correct: tf.Scalar | undefined;
    let lossSum: tf.Scalar | undefined;
    const { value, grads } = tf.variableGrads(() => {
      const out = stepLoss(model.apply(x, { training: true }) as tf.Tensor2D, y, options.classes, options.labelSmoothing, mix?.lambda ?? 1);
      [correct, lossSum] = [out.correct, out.lossSum];
      return out.loss;
    }, params.map((p) => p.variable));
    return { value, grads, correct: correct!, lossSum: lossSum! };
  };
  /** The whole batch's gradients (by variable name, as tf.variableGrads gives them) and figures from this share's. */
  const reduced = (own: ReturnType<typeof lossAndGrads>, size: number, reduce: GradientReducer) => {
    const out = reduce({ grads: params.map((p) => own.grads[p.variable.name]!), lossSum: own.lossSum, correct: own.correct, size });
    // The share's figures were kept past the tidy: those replaced go now.
    if (out.lossSum !== own.lossSum) own.lossSum.dispose();
    if (out.correct !== own.correct) own.correct.dispose();
    return { grads: Object.fromEntries(params.map((p, i) => [p.variable.name, out.grads[i]!])), lossSum: out.lossSum, correct: out.correct };
  };
  /**
   * SGD with momentum and weight decay, then the weight average. While tfjs only compiles
   * (precompile), it compiles the programs and changes nothing: the in-place dispatches record
   * nothing, and the tfjs ops' results, never computed, are not assigned.
   */
  const update = (grads: tf.NamedTensorMap, lr: number) => {
    if (options.fusedUpdate !== false && canUpdateInPlace()) {
      // WebGPU: several tensors a dispatch (by the device's storage-buffer limit), no scalar uploads (see sgd.ts).
      const items = params.map((p, i) => {
        const v = velocities[i]!;
        ensureOwnStorage(p.variable);
        ensureOwnStorage(v);
        return { weights: p.variable, velocity: v, grad: grads[p.variable.name]!, weightDecay: p.decay ? options.weightDecay : 0 };
      });
      sgdUpdateAllInPlace(items, { lr, momentum: options.momentum });
      if (decay > 0) {
        averages.forEach((a) => ensureOwnStorage(a));
        averageAllInPlace(averages.map((average, i) => ({ average, value: weights[i]!.read() })), decay);
      }
      return;
    }
    const assign = !compilingOnly();
    params.forEach((p, i) => {
      let g = grads[p.variable.name]!;
      const v = velocities[i]!;
      if (p.decay && options.weightDecay > 0) g = g.add(p.variable.mul(options.weightDecay));
      const vNext = v.mul(options.momentum).add(g);
      const wNext = p.variable.sub(g.add(vNext.mul(options.momentum)).mul(lr));
      if (assign) {
        v.assign(vNext);
        p.variable.assign(wNext);
      }
    });
    averages.forEach((a, i) => {
      const next = tf.add(tf.mul(a, decay), tf.mul(weights[i]!.read(), 1 - decay));
      if (assign) a.assign(next);
    });
  };
  return {
    step(batch, lr) {
      // A batch the loader did not crop must not reach the model uncropped.
      if (options.crops && !batch.crops) throw new Error('training step: this trainer crops on the device, but the batch came without its crop draws');
      beginStep();
      return tf.tidy(() => {
        const own = lossAndGrads(batch);
        const { grads, correct, lossSum } = options.reduce ? reduced(own, batch.size, options.reduce) : own;
        update(grads, lr);
        return { lossSum, correct };
      });
    },
    async precompile(size) {
      // Batch norm's moving statistics are assigned in training mode: keep them to put back.
      const kept = model.nonTrainableWeights.map((w) => tf.clone(w.read()));
      try {
        const side = options.cutout ?? 0;
        const centres = { cy: new Int32Array(size), cx: new Int32Array(size) };
        const crops = { dy: new Int32Array(size), dx: new Int32Array(size), mirror: new Int32Array(size) };
        const batch: StepBatch = { images: new Uint8Array(size * IMAGE_BYTES), labels: new Uint8Array(size), size, ...(side > 0 ? { cutout: centres } : {}), ...(options.crops ? { crops } : {}) };
        return await compileInParallel(() => {
          // Mixing: the step on a mixed batch, and the input of a plain one (after --mix-until).
          const { correct, lossSum, grads } = lossAndGrads(options.mix ? { ...batch, mix: { kind: 'mixup', lambda: 0.5, box: { top: 0, bottom: 0, left: 0, right: 0 } } } : batch);
          update(grads, 0.1);
          tf.dispose([correct, lossSum]);
          if (options.mix) tf.dispose(normalizer.apply(batch.images, size, augmentOf(batch)));
        });
      } finally {
        model.nonTrainableWeights.forEach((w, i) => w.write(kept[i]!));
        tf.dispose(kept);
      }
    },
    async withAverage(fn) {
      if (decay === 0) return fn();
      const live = weights.map((w) => tf.clone(w.read()));
      weights.forEach((w, i) => w.write(averages[i]!));
      try {
        return await fn();
      } finally {
        // The model's variables get the live values back; the averages own their storage again.
        weights.forEach((w, i) => w.write(live[i]!));
        tf.dispose(live);
      }
    },
    adoptAverage() {
      if (decay > 0) weights.forEach((w, i) => w.write(averages[i]!));
    },
    stateTensors() {
      return [...weights.map((w) => w.read()), ...velocities, ...averages];
    },
    restore(arrays) {
      const targets: tf.Variable[] = [...weights.map((w) => w.read() as tf.Variable), ...velocities, ...averages];
      if (arrays.length !== targets.length) throw new Error(`checkpoint holds ${arrays.length} tensors, the model needs ${targets.length}`);
      targets.forEach((t, i) => {
        const a = arrays[i]!;
        if (a.shape.join('x') !== t.shape.join('x')) throw new Error(`checkpoint tensor ${i} has shape ${a.shape}, expected ${t.shape}`);
        tf.tidy(() => t.assign(tf.tensor(a.values, a.shape)));
      });
    },
    dispose() {
      restoreLayers();
      normalizer.dispose();
      velocities.forEach((v) => v.dispose());
      averages.forEach((a) => a.dispose());
    },
  };
}
