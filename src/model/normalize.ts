import * as tf from '@tensorflow/tfjs';
import { AUGMENT_RECORD, NORMALIZE_BYTES, type NormalizeBytesAttrs } from '../backend/webgpu-kernels/input.js';
import { type CropParams, cropAndFlip } from '../image/crop.js';
import { type SampleMix, mixWeights } from '../image/mix.js';
import { IMAGE_BYTES, IMAGE_SIZE } from '../image/preprocess.js';

/** Per-channel statistics of the training set, on a 0–1 scale (stats.json, metadata.json). */
export interface Normalization {
  mean: readonly number[];
  std: readonly number[];
}

/** A training batch's augmentation, applied in this order (each optional). */
export interface InputAugment {
  /** Each image cropped and flipped by its draws (`cropInto`, image/crop.ts). */
  crops?: CropParams;
  /**
   * Int32, four per image (top, bottom, left, right): each image's rows [top, bottom) ×
   * columns [left, right) of the normalised result become 0, the dataset mean (cutout).
   */
  boxes?: Int32Array;
  /** Then the images mixed in pairs (MixUp or CutMix, image/mix.ts). */
  mix?: SampleMix;
}

export interface Normalizer {
  /**
   * `count` HWC byte images → the network's input: (x/255 − mean) / std, on the backend, with
   * the batch's augmentation if any: on the device where the backend normalises there
   * (`normalizesOnDevice`), else the crops in JS and the rest with tfjs ops.
   */
  apply(images: Uint8Array, count: number, augment?: InputAugment): tf.Tensor4D;
  dispose(): void;
}

/**
 * Whether the active backend turns bytes into the network's input in one kernel of ours (webgpu
 * with our kernels), cropping and flipping there too: the trainer then leaves the crop to it.
 */
export function normalizesOnDevice(): boolean {
  return tf.getKernel(NORMALIZE_BYTES, tf.getBackend()) !== undefined;
}

/** The kernel's `augment` input: per image the cutout box (or an empty one), then dy, dx, mirror, 0. */
export function augmentRecords(count: number, crops: CropParams, boxes?: Int32Array): Int32Array {
  const out = new Int32Array(count * AUGMENT_RECORD);
  for (let n = 0; n < count; n++) {
    const r = n * AUGMENT_RECORD;
    if (boxes) out.set(boxes.subarray(n * 4, n * 4 + 4), r);
    out[r + 4] = crops.dy[n]!;
    out[r + 5] = crops.dx[n]!;
    out[r + 6] = crops.mirror[n]!;
  }
  return out;
}

/**
 * The one input transform of training, evaluation and serving. On a backend with our
 * `CifarNormalizeBytes` kernel (webgpu), one dispatch from the bytes as uploaded; elsewhere tfjs ops.
 */
export function createNormalizer(norm: Normalization): Normalizer {
  // Folding the 1/255 into the statistics saves a full-size multiply per batch.
  const attrs: NormalizeBytesAttrs = { mean: norm.mean.map((m) => m * 255), invStd: norm.std.map((s) => 1 / (s * 255)) };
  const mean = tf.tensor1d(attrs.mean);
  const invStd = tf.tensor1d(attrs.invStd);
  return {
    apply: (images, count, { crops, boxes, mix } = {}) =>
      tf.tidy(() => {
        if (normalizesOnDevice()) {
          const inputs: tf.NamedTensorMap = { packed: tf.tensor1d(packBytes(images, count), 'int32') };
          // One small upload either way: the boxes, or the boxes with the crops (none drawn, for a mix).
          const records = crops ?? (mix ? { dy: new Int32Array(count), dx: new Int32Array(count), mirror: new Int32Array(count) } : undefined);
          if (records) inputs.augment = tf.tensor1d(augmentRecords(count, records, boxes), 'int32');
          else if (boxes) inputs.boxes = tf.tensor1d(boxes.subarray(0, count * 4), 'int32');
          const kernelAttrs: NormalizeBytesAttrs = mix ? { ...attrs, mix } : attrs;
          return tf.engine().runKernel(NORMALIZE_BYTES, inputs, kernelAttrs as unknown as tf.NamedAttrMap) as tf.Tensor4D;
        }
        const bytes = crops ? cropAndFlip(images, count, crops) : images;
        const x = tf.tensor4d(bytes.subarray(0, count * IMAGE_BYTES), [count, IMAGE_SIZE, IMAGE_SIZE, 3], 'int32').toFloat().sub(mean).mul(invStd) as tf.Tensor4D;
        const cut = boxes ? zeroBoxes(x, boxes) : x;
        return mix ? mixPairs(cut, mix) : cut;
      }),
    dispose() {
      mean.dispose();
      invStd.dispose();
    },
  };
}

/**
 * The batch mixed in pairs: image i becomes w·x_i + (1 − w)·x_partner per pixel, w the mix's
 * weight map (`mixWeights`), the partner the batch read backwards (`mixPartner`).
 */
export function mixPairs(x: tf.Tensor4D, mix: SampleMix): tf.Tensor4D {
  const [, h, w] = x.shape;
  const own = mixWeights(mix, h);
  const other = own.map((v) => 1 - v);
  return tf.tidy(() => tf.add(tf.mul(x, tf.tensor4d(own, [1, h, w, 1])), tf.mul(tf.reverse(x, 0), tf.tensor4d(other, [1, h, w, 1]))) as tf.Tensor4D);
}

/** The first `count` images' bytes as 32-bit words (a view where aligned, else a copy). */
function packBytes(images: Uint8Array, count: number): Int32Array {
  const bytes = count * IMAGE_BYTES;
  const aligned = images.byteOffset % 4 === 0 ? images : images.slice(0, bytes);
  return new Int32Array(aligned.buffer, aligned.byteOffset, bytes / 4);
}

/**
 * Sets image n's rows [top, bottom) × columns [left, right) of an NHWC batch to 0, with
 * `boxes` holding (top, bottom, left, right) per image; the mask is built on the backend.
 */
export function zeroBoxes(x: tf.Tensor4D, boxes: Int32Array): tf.Tensor4D {
  const [n, h, w] = x.shape;
  const side = (k: number): tf.Tensor => tf.tensor3d(Int32Array.from({ length: n }, (_, i) => boxes[i * 4 + k]!), [n, 1, 1], 'int32');
  return tf.tidy(() => {
    const ys = tf.reshape(tf.range(0, h, 1, 'int32'), [1, h, 1]);
    const xs = tf.reshape(tf.range(0, w, 1, 'int32'), [1, 1, w]);
    const within = (v: tf.Tensor, from: tf.Tensor, to: tf.Tensor) => tf.logicalAnd(tf.greaterEqual(v, from), tf.less(v, to));
    const inside = tf.logicalAnd(within(ys, side(0), side(1)), within(xs, side(2), side(3)));
    const keep = tf.reshape(tf.sub(tf.scalar(1), tf.cast(inside, 'float32')), [n, h, w, 1]);
    return tf.mul(x, keep) as tf.Tensor4D;
  });
}
