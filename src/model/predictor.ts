import * as tf from '@tensorflow/tfjs';
import { assertNoWebGpuErrors } from '../backend/webgpu.js';
import { compileInParallel } from '../backend/webgpu-kernels/compile.js';
import { IMAGE_BYTES } from '../image/preprocess.js';
import { inferencePass } from './fold.js';
import { createNormalizer, type Normalization } from './normalize.js';

/** What a served or offline model says about itself. */
export interface PredictorInfo {
  name: string;
  /** Short sha256 of the weights: changes whenever the model does. */
  version: string;
  classes: readonly string[];
  /** The tfjs backend running it. */
  backend: string;
  /**
   * Flip test-time augmentation: each image's probabilities are the mean of its own and its
   * mirror image's (two forward passes). Absent: off.
   */
  tta?: boolean;
  /** The model runs in a worker thread of its own (`cifar serve --inference-thread`). Absent: in the caller's. */
  thread?: boolean;
}

/**
 * A loaded model that turns prepared images into class probabilities. The only thing the
 * server, `cifar predict` and `cifar eval` need from the model layer.
 */
export interface Predictor {
  readonly info: PredictorInfo;
  /**
   * Class probabilities for `count` images given back to back as 32×32×3 HWC bytes (what
   * `prepareImage` returns); the result holds `count × classes` floats, image after image.
   */
  predict(pixels: Uint8Array, count: number): Promise<Float32Array>;
  /**
   * On webgpu, compiles the programs of `predict` for these image counts in parallel, before
   * their first use, and returns how many; elsewhere it does nothing and returns 0.
   */
  compile?(counts: readonly number[]): Promise<number>;
  dispose(): void;
}

export type { Normalization };

/**
 * Wrap a tfjs model that maps normalised NHWC float images to logits as a Predictor:
 * bytes → [0,1] → per-channel standardisation → logits → softmax, all on the backend. The
 * logits come from the model with its batch norms folded into the convolutions (`foldModel`,
 * 1.3–2× faster) when its layers allow, else from `model.predict`.
 *
 * @example
 *   const p = predictorFromModel(model, { mean, std }, { name: 'default', version, classes: CLASSES, backend: tf.getBackend() });
 *   const probs = await p.predict(pixels, 1);
 */
export function predictorFromModel(model: tf.LayersModel, norm: Normalization, info: PredictorInfo): Predictor {
  const normalizer = createNormalizer(norm);
  const pass = inferencePass(model);
  const probabilities = (pixels: Uint8Array, count: number) => {
    const x = normalizer.apply(pixels, count);
    // With flip TTA, the mean of the image's softmax and its mirror image's (as cifar eval --tta averages them).
    return info.tta ? tf.div(tf.add(tf.softmax(pass.apply(x)), tf.softmax(pass.apply(tf.reverse(x, 2)))), 2) : tf.softmax(pass.apply(x));
  };
  return {
    info,
    compile(counts) {
      return compileInParallel(() => {
        for (const n of counts) probabilities(new Uint8Array(n * IMAGE_BYTES), n);
      });
    },
    async predict(pixels, count) {
      if (pixels.length !== count * IMAGE_BYTES) {
        throw new RangeError(`expected ${count * IMAGE_BYTES} bytes for ${count} images, got ${pixels.length}`);
      }
      const probs = tf.tidy(() => probabilities(pixels, count));
      let values: Float32Array;
      try {
        values = (await probs.data()) as Float32Array;
      } finally {
        probs.dispose();
      }
      // On WebGPU a failed shader leaves zeros without an exception: never answer with them.
      if (info.backend === 'webgpu') assertNoWebGpuErrors('during inference', 'the answer was dropped');
      return values;
    },
    dispose() {
      normalizer.dispose();
      pass.dispose();
      model.dispose();
    },
  };
}
