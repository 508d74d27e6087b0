/**
 * Random crop (zero padding) + horizontal flip + normalisation + cutout on the tfjs backend, for
 * a batch that is already a tensor on the device: only small per-image vectors cross to it.
 *
 * The random draws are those of `gatherAugmented` (augment.ts), in the same order from the same
 * generator, so a batch augmented here equals the CPU batch made from the same seed (normalised
 * with its cutout boxes, as the trainer does).
 */
import * as tf from '@tensorflow/tfjs';
import { type Normalization, zeroBoxes } from '../model/normalize.js';
import { mulberry32 } from '../data/shuffle.js';
import { cutoutBoxes, drawAugmentParams, type AugmentParams } from './augment.js';

/**
 * Crops, flips and normalises a batch of NHWC images holding byte values (0-255, int32 or
 * float32, since tfjs has no uint8 tensors): out[n, y, x] = img[n, y + dy, x' + dx] with
 * x' = mirrored x, zero outside the image, then (v/255 - mean) / std, then each image's cutout
 * square (side `cutout`, 0 = none) set to 0, the dataset mean.
 * Padding and one gather by flat indices, all on the backend; `|offsets| <= pad` is required.
 * @example
 * const x = augmentOnDevice(batch, drawAugmentParams(n, mulberry32(seed), 4, true, 16), 4, stats, 16);
 */
export function augmentOnDevice(images: tf.Tensor4D, params: AugmentParams, pad: number, norm: Normalization, cutout = 0): tf.Tensor4D {
  const [n, h, w, c] = images.shape;
  return tf.tidy(() => {
    const ph = h + 2 * pad;
    const pw = w + 2 * pad;
    const padded = tf.pad(tf.cast(images, 'float32'), [[0, 0], [pad, pad], [pad, pad], [0, 0]]);
    const flat = tf.reshape(padded, [n * ph * pw, c]);
    const per = (a: Int32Array): tf.Tensor => tf.tensor3d(a.subarray(0, n), [n, 1, 1], 'int32');
    const ys = tf.reshape(tf.range(0, h, 1, 'int32'), [1, h, 1]);
    const xs = tf.reshape(tf.range(0, w, 1, 'int32'), [1, 1, w]);
    // Mirrored x is w-1-x: x + mirror * (w - 1 - 2x), in integers.
    const xm = tf.add(xs, tf.mul(per(params.mirror), tf.sub(tf.scalar(w - 1, 'int32'), tf.mul(xs, tf.scalar(2, 'int32')))));
    const rows = tf.add(ys, tf.add(per(params.dy), tf.scalar(pad, 'int32')));
    const cols = tf.add(xm, tf.add(per(params.dx), tf.scalar(pad, 'int32')));
    const base = tf.reshape(tf.mul(tf.range(0, n, 1, 'int32'), tf.scalar(ph * pw, 'int32')), [n, 1, 1]);
    const index = tf.add(base, tf.add(tf.mul(rows, tf.scalar(pw, 'int32')), cols));
    const crops = tf.reshape(tf.gather(flat, tf.reshape(index, [n * h * w])), [n, h, w, c]);
    const mean = tf.tensor1d(norm.mean.map((m) => m * 255));
    const invStd = tf.tensor1d(norm.std.map((s) => 1 / (s * 255)));
    const normalised = tf.mul(tf.sub(crops, mean), invStd) as tf.Tensor4D;
    return cutout > 0 ? applyCutout(normalised, params, cutout) : normalised;
  });
}

/**
 * Cutout (DeVries & Taylor 2017) on a normalised NHWC batch: image n's square, `cutoutBox` of its
 * centre (cy[n], cx[n]) and `size`, becomes 0 — the dataset mean after normalisation (`zeroBoxes`).
 */
export function applyCutout(x: tf.Tensor4D, centres: Pick<AugmentParams, 'cy' | 'cx'>, size: number): tf.Tensor4D {
  return zeroBoxes(x, cutoutBoxes(centres, x.shape[0], size, x.shape[1]));
}

export interface GpuAugmentOptions extends Normalization {
  /** Zero padding of the random crop (4 for CIFAR); 0 disables cropping. */
  pad: number;
  flip: boolean;
  /** Side of the cutout square in pixels; 0 or absent turns it off. */
  cutout?: number;
}

/**
 * The seeded form: the same `seed` gives the same crops, flips and cutout squares as
 * `gatherAugmented(..., mulberry32(seed), pad, flip, cutout)` on the CPU.
 */
export function gpuAugment(images: tf.Tensor4D, seed: number, options: GpuAugmentOptions): tf.Tensor4D {
  const cutout = options.cutout ?? 0;
  const params = drawAugmentParams(images.shape[0], mulberry32(seed), options.pad, options.flip, cutout);
  return augmentOnDevice(images, params, options.pad, options, cutout);
}
