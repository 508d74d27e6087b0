import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { prepareImage } from '../../src/image/preprocess.js';

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
});
