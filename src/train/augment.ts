import { type CropParams, cropInto } from '../image/crop.js';
import type { SampleMix } from '../image/mix.js';
import { IMAGE_BYTES, IMAGE_SIZE } from '../image/preprocess.js';

/** Per-image crop offsets (source = output + offset), flips and cutout centres. */
export interface AugmentParams extends CropParams {
  /** Row and column of each image's cutout square's centre (0 when cutout is off). */
  cy: Int32Array;
  cx: Int32Array;
}

/**
 * Draws `count` images' augmentations, the one draw order of both augment paths: per image dy,
 * then dx (when pad > 0), then the flip (when enabled), then the cutout centre's row and column
 * (when cutout > 0). Draws that are off take nothing from `random`, so with cutout 0 the crops
 * and flips are exactly those of the augmentation before cutout existed (seeded runs reproduce).
 */
export function drawAugmentParams(count: number, random: () => number, pad: number, flip: boolean, cutout = 0): AugmentParams {
  const p: AugmentParams = { dy: new Int32Array(count), dx: new Int32Array(count), mirror: new Int32Array(count), cy: new Int32Array(count), cx: new Int32Array(count) };
  for (let n = 0; n < count; n++) {
    p.dy[n] = pad > 0 ? Math.floor(random() * (2 * pad + 1)) - pad : 0;
    p.dx[n] = pad > 0 ? Math.floor(random() * (2 * pad + 1)) - pad : 0;
    p.mirror[n] = flip && random() < 0.5 ? 1 : 0;
    if (cutout > 0) {
      p.cy[n] = Math.floor(random() * IMAGE_SIZE);
      p.cx[n] = Math.floor(random() * IMAGE_SIZE);
    }
  }
  return p;
}

/** Rows [top, bottom) and columns [left, right) of a cutout square of side `size` centred at (cy, cx), clipped to the image. */
export interface CutoutBox {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/**
 * The square that cutout blanks: side `size`, starting `floor(size / 2)` above and left of the
 * centre (the paper's reference code for even sides), clipped where it hangs over the edge.
 * @example
 * cutoutBox(0, 31, 8); // { top: 0, bottom: 4, left: 27, right: 32 }
 */
export function cutoutBox(cy: number, cx: number, size: number, imageSize = IMAGE_SIZE): CutoutBox {
  const top = cy - Math.floor(size / 2);
  const left = cx - Math.floor(size / 2);
  const clip = (v: number) => Math.min(imageSize, Math.max(0, v));
  return { top: clip(top), bottom: clip(top + size), left: clip(left), right: clip(left + size) };
}

/**
 * The cutout boxes of `count` centres as one int32 array, four per image (top, bottom, left,
 * right): what `Normalizer.apply` takes.
 * @example cutoutBoxes({ cy: Int32Array.of(0), cx: Int32Array.of(31) }, 1, 8); // Int32Array [0, 4, 27, 32]
 */
export function cutoutBoxes(centres: Pick<AugmentParams, 'cy' | 'cx'>, count: number, size: number, imageSize = IMAGE_SIZE): Int32Array {
  const boxes = new Int32Array(count * 4);
  for (let i = 0; i < count; i++) {
    const box = cutoutBox(centres.cy[i]!, centres.cx[i]!, size, imageSize);
    boxes.set([box.top, box.bottom, box.left, box.right], i * 4);
  }
  return boxes;
}

/**
 * Copy images `indices` of `source` (HWC bytes) into `out`, each shifted by a random crop of a
 * zero-padded copy (padding `pad`) and flipped left-right with probability 1/2 — torchvision's
 * RandomCrop(32, padding) + RandomHorizontalFlip, done on bytes without building the padded image.
 *
 * Returns the draws. With `cutout > 0` the bytes are not blanked here: the square must be the
 * dataset mean, 0 after normalisation, which no byte holds exactly, so the caller cuts the
 * normalised batch with the returned centres (`cutoutBoxes` to `Normalizer.apply`, as the trainer does).
 */
export function gatherAugmented(
  source: Uint8Array,
  indices: ArrayLike<number>,
  out: Uint8Array,
  random: () => number,
  pad: number,
  flip: boolean,
  cutout = 0,
): AugmentParams {
  const params = drawAugmentParams(indices.length, random, pad, flip, cutout);
  for (let n = 0; n < indices.length; n++) {
    cropInto(source, indices[n]! * IMAGE_BYTES, out, n * IMAGE_BYTES, params.dy[n]!, params.dx[n]!, params.mirror[n] === 1);
  }
  return params;
}

/** A standard normal draw (Box–Muller) from two uniform draws. */
function sampleNormal(random: () => number): number {
  const u = 1 - random(); // (0, 1]: the logarithm stays finite
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

/** A Gamma(shape, 1) draw: Marsaglia & Tsang (2000), boosted by U^(1/shape) below shape 1. */
function sampleGamma(shape: number, random: () => number): number {
  if (shape < 1) return sampleGamma(shape + 1, random) * Math.pow(1 - random(), 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const x = sampleNormal(random);
    const v = (1 + c * x) ** 3;
    if (v <= 0) continue;
    const u = 1 - random();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** A Beta(α, α) draw (X / (X + Y) of two Gamma(α) draws): the mixing weight of MixUp and CutMix. */
export function sampleBeta(alpha: number, random: () => number): number {
  const x = sampleGamma(alpha, random);
  const y = sampleGamma(alpha, random);
  // Both can underflow to 0 for a tiny α: then either extreme is as likely.
  return x + y > 0 ? x / (x + y) : random() < 0.5 ? 0 : 1;
}

/** The α of each mixing kind (0: off). */
export interface MixAlphas {
  mixup: number;
  cutmix: number;
}

/**
 * A batch's mix (image/mix.ts' SampleMix), drawn in this order: the kind (only when both are on:
 * cutmix or mixup with probability 1/2 each, as timm's switch), λ ~ Beta(α, α), then for cutmix
 * the box's centre row and column, uniform over the image. The box is the CutMix paper's: side
 * ⌊S·√(1 − λ)⌋ with ⌊side/2⌋ on either side of the centre, clipped at the edges; λ is then the
 * share of the image left outside it (a draw of 0.75 centred at (12, 12): rows and columns [4, 20),
 * λ 0.75; centred at (0, 0): [0, 8), λ 0.9375).
 */
export function drawMix(random: () => number, alphas: MixAlphas, imageSize = IMAGE_SIZE): SampleMix {
  const kind = alphas.mixup > 0 && alphas.cutmix > 0 ? (random() < 0.5 ? 'cutmix' : 'mixup') : alphas.cutmix > 0 ? 'cutmix' : 'mixup';
  const lambda = sampleBeta(kind === 'cutmix' ? alphas.cutmix : alphas.mixup, random);
  if (kind === 'mixup') return { kind, lambda, box: { top: 0, bottom: 0, left: 0, right: 0 } };
  const half = Math.floor(Math.floor(imageSize * Math.sqrt(1 - lambda)) / 2);
  const cy = Math.floor(random() * imageSize);
  const cx = Math.floor(random() * imageSize);
  const clip = (v: number) => Math.min(imageSize, Math.max(0, v));
  const box = { top: clip(cy - half), bottom: clip(cy + half), left: clip(cx - half), right: clip(cx + half) };
  return { kind, lambda: 1 - ((box.bottom - box.top) * (box.right - box.left)) / (imageSize * imageSize), box };
}
