import * as tf from '@tensorflow/tfjs';
import { compileInParallel } from '../backend/webgpu-kernels/compile.js';
import { IMAGE_BYTES } from '../image/preprocess.js';
import { inferencePass } from '../model/fold.js';
import { createNormalizer, type Normalization } from '../model/normalize.js';

export interface Evaluation {
  loss: number;
  accuracy: number;
  /** Predicted class of every image, in order. */
  predictions: Uint8Array;
  /** Whether the flip test-time augmentation was used. */
  tta: boolean;
}

export interface EvaluateOptions {
  /** Images per forward pass (default 500). */
  batchSize?: number;
  /**
   * Test-time augmentation: also run every image mirrored left-right and average the two softmax
   * distributions; loss and predictions come from the average. Twice the forward passes.
   */
  tta?: boolean;
}

/**
 * The ops of one evaluation batch, over `model` with its batch norms folded into the
 * convolutions where possible: summed cross-entropy and predicted classes.
 */
function createBatchEvaluator(model: tf.LayersModel, norm: Normalization, tta: boolean) {
  const normalizer = createNormalizer(norm);
  const pass = inferencePass(model);
  return {
    /** Tensors [summed loss, predictions] for `n` images (bytes) and labels, tidied. */
    run(images: Uint8Array, labels: Uint8Array, n: number): [tf.Scalar, tf.Tensor1D] {
      return tf.tidy(() => {
        const x = normalizer.apply(images, n);
        const y = tf.tensor1d(labels.subarray(0, n), 'int32');
        const logits = pass.apply(x);
        // log of the mean of the two softmaxes = logsumexp of the two log-softmaxes − log 2, stable.
        const logProbs = tta
          ? tf.sub(tf.logSumExp(tf.stack([tf.logSoftmax(logits), tf.logSoftmax(pass.apply(tf.reverse(x, 2)))]), 0), tf.scalar(Math.log(2)))
          : tf.logSoftmax(logits);
        const ce = tf.neg(tf.sum(tf.mul(tf.oneHot(y, logits.shape[1]), logProbs))) as tf.Scalar;
        return [ce, tf.argMax(logProbs, 1) as tf.Tensor1D];
      });
    },
    dispose() {
      normalizer.dispose();
      pass.dispose();
    },
  };
}

/**
 * Loss (plain cross-entropy) and accuracy of `model` in inference mode on labelled images,
 * `batchSize` at a time, with its batch norms folded into the convolutions where possible.
 * @example
 * const { accuracy } = await evaluateModel(model, test, metadata.normalization, { batchSize: 250, tta: true });
 */
export async function evaluateModel(
  model: tf.LayersModel,
  data: { images: Uint8Array; labels: Uint8Array; count: number },
  norm: Normalization,
  options: EvaluateOptions = {},
): Promise<Evaluation> {
  const batchSize = options.batchSize ?? 500;
  const tta = options.tta === true;
  const evaluator = createBatchEvaluator(model, norm, tta);
  const predictions = new Uint8Array(data.count);
  let lossSum = 0;
  let correct = 0;
  // Every batch is queued before the first is read: a read waits for the device, which would
  // then sit idle while the next batch is encoded.
  const queued: { at: number; n: number; loss: tf.Scalar; pred: tf.Tensor1D }[] = [];
  try {
    for (let at = 0; at < data.count; at += batchSize) {
      const n = Math.min(batchSize, data.count - at);
      const [loss, pred] = evaluator.run(data.images.subarray(at * IMAGE_BYTES, (at + n) * IMAGE_BYTES), data.labels.subarray(at, at + n), n);
      queued.push({ at, n, loss, pred });
    }
    for (const { at, n, loss, pred } of queued) {
      lossSum += (await loss.data())[0]!;
      const p = await pred.data();
      for (let i = 0; i < n; i++) {
        predictions[at + i] = p[i]!;
        if (p[i] === data.labels[at + i]) correct++;
      }
    }
  } finally {
    for (const q of queued) tf.dispose([q.loss, q.pred]);
    evaluator.dispose();
  }
  return { loss: lossSum / Math.max(1, data.count), accuracy: correct / Math.max(1, data.count), predictions, tta };
}

/**
 * On webgpu, compiles the programs `evaluateModel` runs on `count` images (its full batches and
 * the last, smaller one) in parallel, so that the first evaluation does not compile them one by
 * one; returns how many. Elsewhere it does nothing and returns 0.
 */
export async function compileEvaluation(model: tf.LayersModel, norm: Normalization, count: number, options: EvaluateOptions = {}): Promise<number> {
  const batchSize = options.batchSize ?? 500;
  const sizes = [...new Set([Math.min(batchSize, count), count % batchSize].filter((n) => n > 0))];
  // The folded weights are computed before compile-only mode, so that they hold real values.
  const evaluator = createBatchEvaluator(model, norm, options.tta === true);
  try {
    return await compileInParallel(() => {
      for (const n of sizes) evaluator.run(new Uint8Array(n * IMAGE_BYTES), new Uint8Array(n), n);
    });
  } finally {
    evaluator.dispose();
  }
}
