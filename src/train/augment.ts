import { type CropParams, cropInto } from '../image/crop.js';
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
