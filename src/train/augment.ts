import { IMAGE_BYTES, IMAGE_SIZE } from '../image/preprocess.js';

/**
 * Copy images `indices` of `source` (HWC bytes) into `out`, each shifted by a random crop of a
 * zero-padded copy (padding `pad`) and flipped left-right with probability 1/2 — torchvision's
 * RandomCrop(32, padding) + RandomHorizontalFlip, done on bytes without building the padded image.
 */
export function gatherAugmented(
  source: Uint8Array,
  indices: ArrayLike<number>,
  out: Uint8Array,
  random: () => number,
  pad: number,
  flip: boolean,
): void {
  const S = IMAGE_SIZE;
  for (let n = 0; n < indices.length; n++) {
    const src = indices[n]! * IMAGE_BYTES;
    const dst = n * IMAGE_BYTES;
    const dy = pad > 0 ? Math.floor(random() * (2 * pad + 1)) - pad : 0;
    const dx = pad > 0 ? Math.floor(random() * (2 * pad + 1)) - pad : 0;
    const mirror = flip && random() < 0.5;
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
}
