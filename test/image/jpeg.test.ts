import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodePlainJpeg32 } from '../../src/image/jpeg.js';
import { prepareImage } from '../../src/image/preprocess.js';
import { sharpPixels } from '../helpers/sharp.js';

/** A photo-like 32×32 RGB image: smooth gradients plus seeded noise, so every DCT coefficient is exercised. */
function photo(seed: number, size = 32): Buffer {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 16) & 255;
  const px = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < 3; c++) {
        const smooth = (x * (3 + c) + y * (7 - c) + seed * 13) % 256;
        px[(y * size + x) * 3 + c] = (smooth * 3 + rand()) >> 2;
      }
    }
  }
  return px;
}

const jpeg = (seed: number, options: sharp.JpegOptions, size = 32) =>
  sharp(photo(seed, size), { raw: { width: size, height: size, channels: 3 } }).jpeg(options).toBuffer();

describe('decodePlainJpeg32', () => {
  const baseline: [string, sharp.JpegOptions][] = [
    ['4:2:0, quality 75 (the CIFAR image folders)', { quality: 75, chromaSubsampling: '4:2:0' }],
    ['4:2:0, quality 100', { quality: 100, chromaSubsampling: '4:2:0' }],
    ['4:2:0, quality 5', { quality: 5, chromaSubsampling: '4:2:0' }],
    ['4:4:4, quality 90', { quality: 90, chromaSubsampling: '4:4:4' }],
    ['4:2:0, standard Huffman tables', { quality: 80, optimiseCoding: false }],
  ];
  for (const [name, options] of baseline) {
    it(`gives sharp's exact pixels for baseline JPEGs: ${name}`, async () => {
      for (let seed = 1; seed <= 20; seed++) {
        const file = await jpeg(seed, options);
        const pixels = decodePlainJpeg32(file);
        expect(pixels, `seed ${seed}`).not.toBeNull();
        expect(Buffer.from(pixels!).equals(await sharpPixels(file)), `seed ${seed}`).toBe(true);
        // prepareImage takes this path for such files.
        expect(Buffer.from((await prepareImage(file)).pixels).equals(Buffer.from(pixels!)), `seed ${seed}`).toBe(true);
      }
    });
  }

  it('leaves progressive files, other sizes and greyscale to sharp', async () => {
    expect(decodePlainJpeg32(await jpeg(1, { progressive: true }))).toBeNull();
    expect(decodePlainJpeg32(await jpeg(1, {}, 48))).toBeNull();
    expect(decodePlainJpeg32(await sharp(photo(1), { raw: { width: 32, height: 32, channels: 3 } }).toColourspace('b-w').jpeg().toBuffer())).toBeNull();
  });

  it('leaves files with EXIF orientation or an ICC profile to sharp', async () => {
    const raw = sharp(photo(2), { raw: { width: 32, height: 32, channels: 3 } });
    expect(decodePlainJpeg32(await raw.clone().withMetadata({ orientation: 6 }).jpeg().toBuffer())).toBeNull();
    expect(decodePlainJpeg32(await raw.clone().withIccProfile('p3').jpeg().toBuffer())).toBeNull();
  });

  it('refuses damaged data rather than guess: truncated scans, flipped bits, no end marker', async () => {
    const file = await jpeg(3, { quality: 75 });
    expect(decodePlainJpeg32(file.subarray(0, file.length - 40))).toBeNull();
    expect(decodePlainJpeg32(file.subarray(0, file.length - 2))).toBeNull();
    expect(decodePlainJpeg32(file.subarray(0, 300))).toBeNull();
    expect(decodePlainJpeg32(Buffer.from('not a jpeg at all'))).toBeNull();
    // Corrupt entropy-coded bytes either decode to something sharp also reads, or give null; never a throw.
    for (let at = file.length - 200; at < file.length - 2; at += 7) {
      const bad = Buffer.from(file);
      bad[at] = bad[at]! ^ 0x5a;
      const pixels = decodePlainJpeg32(bad);
      if (pixels !== null) {
        const ref = await sharpPixels(bad).then((p) => p, () => null);
        expect(ref !== null && Buffer.from(pixels).equals(ref), `byte ${at}`).toBe(true);
      }
    }
  });
});
