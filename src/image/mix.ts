import { IMAGE_SIZE } from './preprocess.js';

/**
 * How a training batch mixes its images in pairs (MixUp, Zhang et al. 2018; CutMix, Yun et al.
 * 2019), one draw for the whole batch: image i is paired with image `mixPartner(i)`, the batch
 * read backwards (the batch is a random draw of the training set, so the pairs are too; timm's
 * `Mixup` pairs them the same way). Each pixel becomes w·own + (1 − w)·partner's, both after
 * their own crop, flip and cutout, with w = `lambda` everywhere (mixup), or 0 inside `box` and
 * 1 outside (cutmix). The target is λ·own label + (1 − λ)·partner's, λ being the share of the
 * image's own pixels (cutmix: 1 − box area / image area).
 */
export interface SampleMix {
  kind: 'mixup' | 'cutmix';
  /** Weight of each image's own label, and of its pixels in mixup; the partner's is 1 − λ. */
  lambda: number;
  /** CutMix: rows [top, bottom) and columns [left, right) taken from the partner; all 0 for mixup. */
  box: { top: number; bottom: number; left: number; right: number };
}

/** The image that image `i` of a batch of `size` is mixed with: the batch read backwards. */
export function mixPartner(i: number, size: number): number {
  return size - 1 - i;
}

/** Weight of each image's own pixel (y, x) under `mix`, the other 1 − w going to its partner's. */
export function mixWeight(mix: SampleMix, y: number, x: number): number {
  if (mix.kind === 'mixup') return mix.lambda;
  const { top, bottom, left, right } = mix.box;
  return y >= top && y < bottom && x >= left && x < right ? 0 : 1;
}

/** `mixWeight` of every pixel, row by row: the map the tfjs-ops path multiplies by. */
export function mixWeights(mix: SampleMix, imageSize = IMAGE_SIZE): Float32Array {
  const w = new Float32Array(imageSize * imageSize);
  for (let y = 0; y < imageSize; y++) for (let x = 0; x < imageSize; x++) w[y * imageSize + x] = mixWeight(mix, y, x);
  return w;
}
