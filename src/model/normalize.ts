import * as tf from '@tensorflow/tfjs';
import { AUGMENT_RECORD, NORMALIZE_BYTES, type NormalizeBytesAttrs } from '../backend/webgpu-kernels/input.js';
import { type CropParams, cropAndFlip } from '../image/crop.js';
import { IMAGE_BYTES, IMAGE_SIZE } from '../image/preprocess.js';

/** Per-channel statistics of the training set, on a 0–1 scale (stats.json, metadata.json). */
export interface Normalization {
  mean: readonly number[];
  std: readonly number[];
}

export interface Normalizer {
  /**
   * `count` HWC byte images → the network's input: (x/255 − mean) / std, on the backend. With
   * `crops`, each image first cropped and flipped by its draws (`cropInto`, image/crop.ts): on the
   * device where the backend normalises there (`normalizesOnDevice`), else in JS. With `boxes`
   * (int32, four per image: top, bottom, left, right), each image's rows [top, bottom) ×
   * columns [left, right) of the result become 0 — the dataset mean (cutout).
   */
  apply(images: Uint8Array, count: number, boxes?: Int32Array, crops?: CropParams): tf.Tensor4D;
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
    apply: (images, count, boxes, crops) =>
      tf.tidy(() => {
        if (normalizesOnDevice()) {
          const inputs: tf.NamedTensorMap = { packed: tf.tensor1d(packBytes(images, count), 'int32') };
          // One small upload either way: the boxes, or the boxes with the crops.
          if (crops) inputs.augment = tf.tensor1d(augmentRecords(count, crops, boxes), 'int32');
          else if (boxes) inputs.boxes = tf.tensor1d(boxes.subarray(0, count * 4), 'int32');
          return tf.engine().runKernel(NORMALIZE_BYTES, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor4D;
        }
        const bytes = crops ? cropAndFlip(images, count, crops) : images;
        const x = tf.tensor4d(bytes.subarray(0, count * IMAGE_BYTES), [count, IMAGE_SIZE, IMAGE_SIZE, 3], 'int32').toFloat().sub(mean).mul(invStd) as tf.Tensor4D;
        return boxes ? zeroBoxes(x, boxes) : x;
      }),
    dispose() {
      mean.dispose();
      invStd.dispose();
    },
  };
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
