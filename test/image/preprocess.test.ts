import * as zlib from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodePlainPng, pngChunk } from '../../src/image/png.js';
import { prepareImage } from '../../src/image/preprocess.js';
import { sharpPixels } from '../helpers/sharp.js';

const create = (width: number, height: number, channels: 1 | 3 | 4, background: sharp.Color) =>
  sharp({ create: { width, height, channels: channels === 1 ? 3 : channels, background } });

describe('prepareImage', () => {
  it('keeps a 32×32 RGB PNG exactly', async () => {
    const png = await create(32, 32, 3, { r: 10, g: 20, b: 30 }).png().toBuffer();
    const out = await prepareImage(png);
    expect(out.resized).toBe(false);
    expect(out.pixels.length).toBe(3072);
    expect([...out.pixels.subarray(0, 6)]).toEqual([10, 20, 30, 10, 20, 30]);
  });

  it('centre-crops a wide image to a square before resizing', async () => {
    // Left and right thirds red, centre square blue: after a centre crop only blue remains.
    const blue = await create(100, 100, 3, { r: 0, g: 0, b: 255 }).png().toBuffer();
    const wide = await create(300, 100, 3, { r: 255, g: 0, b: 0 }).composite([{ input: blue, left: 100, top: 0 }]).png().toBuffer();
    const out = await prepareImage(wide);
    expect(out.resized).toBe(true);
    expect([out.sourceWidth, out.sourceHeight]).toEqual([300, 100]);
    // Even the leftmost column is blue (a resize without the crop would make it red); the
    // resampling filter may bleed a little red into the edge, never more.
    for (const row of [0, 16, 31]) {
      const [r, g, b] = out.pixels.subarray(row * 96, row * 96 + 3);
      expect(r).toBeLessThan(40);
      expect(g).toBeLessThan(10);
      expect(b).toBeGreaterThan(215);
    }
  });

  it('flattens transparency onto white', async () => {
    const transparent = await create(32, 32, 4, { r: 0, g: 0, b: 0, alpha: 0 }).png().toBuffer();
    const out = await prepareImage(transparent);
    expect([...out.pixels.subarray(0, 3)]).toEqual([255, 255, 255]);
  });

  it('expands greyscale to three equal channels', async () => {
    const grey = await create(40, 40, 3, { r: 90, g: 90, b: 90 }).greyscale().toColourspace('b-w').png().toBuffer();
    expect((await sharp(grey).metadata()).channels).toBe(1);
    const out = await prepareImage(grey);
    expect(out.pixels.length).toBe(3072);
    const [r, g, b] = out.pixels.subarray(0, 3);
    expect(r).toBe(g);
    expect(g).toBe(b);
  });

  it('decodes WebP and JPEG of any size', async () => {
    for (const img of [create(500, 300, 3, { r: 0, g: 200, b: 0 }).webp(), create(64, 64, 3, { r: 0, g: 200, b: 0 }).jpeg()]) {
      const out = await prepareImage(await img.toBuffer());
      expect(out.pixels[1]).toBeGreaterThan(190);
    }
  });

  it('rejects bytes that are not an image with a one-line INVALID_IMAGE error naming the file', async () => {
    await expect(prepareImage(Buffer.from('definitely not an image'), 'notes.txt')).rejects.toMatchObject({
      code: 'INVALID_IMAGE',
      message: expect.stringMatching(/^notes\.txt: not a decodable image \([^\n]+\)$/),
    });
  });

  // 32x32 PNGs (the CIFAR case) are decoded in JavaScript; the result must be the sharp path's.
  describe('plain 32x32 PNGs: the same bytes as sharp', () => {
    let seed = 7;
    const random = (n: number): Buffer => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        b[i] = seed >>> 24;
      }
      return b;
    };
    const viaSharp = sharpPixels;
    const cases: Array<{ label: string; channels: 1 | 2 | 3 | 4; options?: sharp.PngOptions; alpha?: number; depth16?: boolean }> = [
      { label: 'grey', channels: 1 },
      { label: 'grey + alpha', channels: 2 },
      { label: 'RGB', channels: 3 },
      { label: 'RGB, best compression', channels: 3, options: { compressionLevel: 9, adaptiveFiltering: true } },
      { label: 'RGBA', channels: 4 },
      { label: 'RGBA, fully transparent', channels: 4, alpha: 0 },
      { label: 'RGB, interlaced (sharp path)', channels: 3, options: { progressive: true } },
      { label: 'RGB, palette (sharp path)', channels: 3, options: { palette: true } },
      { label: 'RGBA, 16-bit (sharp path)', channels: 4, depth16: true },
    ];
    it.each(cases)('$label', async ({ channels, options, alpha, depth16 }) => {
      const raw = random(32 * 32 * channels);
      if (alpha !== undefined) for (let i = channels - 1; i < raw.length; i += channels) raw[i] = alpha;
      let img = sharp(raw, { raw: { width: 32, height: 32, channels } });
      if (depth16) img = img.toColourspace('rgb16');
      const png = await img.png(options).toBuffer();
      const { pixels, resized } = await prepareImage(png);
      expect(resized).toBe(false);
      expect(Buffer.from(pixels).equals(await viaSharp(png))).toBe(true);
    });

    // Encoders pick a row filter per row; sharp's output for noise rarely uses all five, so this
    // PNG is built by hand with rows cycling through None, Sub, Up, Average and Paeth, its image
    // data split over two IDAT chunks, and in RGB and RGBA.
    it.each([3, 4])('undoes every row filter, across split IDAT chunks (%i channels)', async (channels) => {
      const stride = 32 * channels;
      const img = random(stride * 32);
      const at = (y: number, x: number) => (y < 0 || x < 0 ? 0 : img[y * stride + x]!);
      const rows = Buffer.alloc((stride + 1) * 32);
      for (let y = 0; y < 32; y++) {
        const filter = y % 5;
        rows[y * (stride + 1)] = filter;
        for (let x = 0; x < stride; x++) {
          const [a, b, c] = [at(y, x - channels), at(y - 1, x), at(y - 1, x - channels)];
          const p = a + b - c;
          const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
          const predictor = [0, a, b, (a + b) >> 1, paeth][filter]!;
          rows[y * (stride + 1) + 1 + x] = (at(y, x) - predictor) & 0xff;
        }
      }
      const ihdr = Buffer.from([0, 0, 0, 32, 0, 0, 0, 32, 8, channels === 4 ? 6 : 2, 0, 0, 0]);
      const z = zlib.deflateSync(rows);
      const png = Buffer.concat([
        Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
        pngChunk('IHDR', ihdr),
        pngChunk('IDAT', z.subarray(0, z.length >> 1)),
        pngChunk('IDAT', z.subarray(z.length >> 1)),
        pngChunk('IEND', Buffer.alloc(0)),
      ]);
      expect(decodePlainPng(png, 32 * 32)?.data).toEqual(new Uint8Array(img)); // the fast path, not sharp, decoded it
      const { pixels, resized } = await prepareImage(png);
      expect(resized).toBe(false);
      expect(Buffer.from(pixels).equals(await viaSharp(png))).toBe(true);
    });

    it('leaves a PNG with a gamma chunk to sharp (colour managed)', async () => {
      const png = await sharp(random(32 * 32 * 3), { raw: { width: 32, height: 32, channels: 3 } }).png().toBuffer();
      // Insert a gAMA chunk (gamma 1.0) after IHDR; sharp may then change the pixels.
      const gama = Buffer.from([0, 0, 0, 4, 0x67, 0x41, 0x4d, 0x41, 0, 1, 0x86, 0xa0, 0x31, 0xe8, 0x96, 0x5f]);
      const withGama = Buffer.concat([png.subarray(0, 33), gama, png.subarray(33)]);
      const { pixels } = await prepareImage(withGama);
      expect(Buffer.from(pixels).equals(await viaSharp(withGama))).toBe(true);
    });

    it('treats damaged 32x32 PNGs as sharp does (same bytes, or both refuse)', async () => {
      const png = await sharp(random(32 * 32 * 3), { raw: { width: 32, height: 32, channels: 3 } }).png().toBuffer();
      const idat = png.indexOf('IDAT');
      const flip = (at: number): Buffer => {
        const b = Buffer.from(png);
        b[at] = (b[at]! + 1) & 0xff;
        return b;
      };
      const damaged = [png.subarray(0, png.length >> 1), png.subarray(0, png.length - 12), flip(45), flip(idat + 6), flip(png.length - 20)];
      for (const [i, bytes] of damaged.entries()) {
        const ours = await prepareImage(bytes, 'x.png').then((r) => Buffer.from(r.pixels), (e: { code?: string }) => e.code);
        const theirs = await viaSharp(bytes).then((r) => r, () => 'INVALID_IMAGE');
        expect(ours, `damage ${i}`).toEqual(theirs);
      }
    });
  });
});
