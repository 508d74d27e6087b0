import { IMAGE_BYTES, IMAGE_SIZE } from './preprocess.js';

/** Per-image random crop offsets (source = output + offset) and left-right flips. */
export interface CropParams {
  dy: Int32Array;
  dx: Int32Array;
  /** 1 where the image is mirrored left-right. */
  mirror: Int32Array;
}

/**
 * Writes one 32×32 HWC byte image, from `source` at byte `src`, to `out` at byte `dst`, shifted
 * by (dy, dx) in a zero-padded copy and mirrored left-right first when `mirror`: out(y, x) =
 * source(y + dy, x' + dx) with x' = 31 − x when mirrored, 0 outside the image. torchvision's
 * RandomCrop(32, padding) + RandomHorizontalFlip for given draws, without building the padded image.
 */
export function cropInto(source: Uint8Array, src: number, out: Uint8Array, dst: number, dy: number, dx: number, mirror: boolean): void {
  const S = IMAGE_SIZE;
  for (let y = 0; y < S; y++) {
    const sy = y + dy;
    const row = dst + y * S * 3;
    if (sy < 0 || sy >= S) {
      out.fill(0, row, row + S * 3);
      continue;
    }
    for (let x = 0; x < S; x++) {
      const sx = (mirror ? S - 1 - x : x) + dx;
      const o = row + x * 3;
      if (sx < 0 || sx >= S) {
        out[o] = out[o + 1] = out[o + 2] = 0;
      } else {
        const i = src + (sy * S + sx) * 3;
        out[o] = source[i]!;
        out[o + 1] = source[i + 1]!;
        out[o + 2] = source[i + 2]!;
      }
    }
  }
}

/** The first `count` images of `images`, each cropped and flipped by its `crops` entry (a new buffer). */
export function cropAndFlip(images: Uint8Array, count: number, crops: CropParams): Uint8Array {
  const out = new Uint8Array(count * IMAGE_BYTES);
  for (let n = 0; n < count; n++) cropInto(images, n * IMAGE_BYTES, out, n * IMAGE_BYTES, crops.dy[n]!, crops.dx[n]!, crops.mirror[n] === 1);
  return out;
}
