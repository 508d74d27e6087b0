import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { loadImageSource } from '../../src/bench/images.js';
import { pngVariants } from '../../src/bench/png.js';
import { decodePlainPng } from '../../src/image/png.js';
import { makeRecords, solidPng, tempDir } from '../helpers/fixtures.js';

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

async function folder(): Promise<string> {
  const t = await tempDir('cifar-bench-');
  cleanup = t.cleanup;
  return t.dir;
}

const hashes = (bufs: Buffer[]) => new Set(bufs.map((b) => b.toString('base64')));

describe('pngVariants', () => {
  // Sizes: CIFAR's, a picture whose 64 perturbed bytes span several rows, and one smaller than 64 bytes.
  it.each([
    [32, 32],
    [5, 9],
    [2, 3],
  ])('writes PNGs (%i×%i) that sharp and the server decode to the picture with the changed head', async (width, height) => {
    const rgb = Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 37 + (i >> 4)) & 0xff);
    const variants = pngVariants(rgb, width, height, 64);
    expect(variants.headBytes).toBe(Math.min(rgb.length, Math.ceil(64 / (width * 3)) * width * 3));
    for (const flip of [0, 7, variants.headBytes - 1]) {
      const head = rgb.slice(0, variants.headBytes);
      head[flip]! ^= 0x55;
      const expected = Uint8Array.from(rgb);
      expected.set(head);
      const png = variants.encode(head);
      const { data, info } = await sharp(png, { failOn: 'error' }).raw().toBuffer({ resolveWithObject: true });
      expect([info.width, info.height, info.channels]).toEqual([width, height, 3]);
      expect(Uint8Array.from(data)).toEqual(expected);
      // The server's own decoder checks every CRC and the Adler-32 (zlib) as well.
      expect(decodePlainPng(png, width * height)?.data).toEqual(expected);
    }
  });
});

describe('loadImageSource', () => {
  it('without a folder or dataset, generates 32×32 PNGs of about 3 kB, every one distinct', async () => {
    const source = await loadImageSource({ dataDir: await folder() });
    expect(source.kind).toBe('generated');
    expect(source.distinct).toBeNull();
    const images = Array.from({ length: 50 }, () => source.next());
    expect(hashes(images).size).toBe(50);
    const meta = await sharp(images[0]).metadata();
    expect([meta.width, meta.height, meta.format]).toEqual([32, 32, 'png']);
    expect(images[0]!.length).toBeGreaterThan(2500);
    expect(images[0]!.length).toBeLessThan(4000);
  });

  it('--unique N cycles exactly N distinct images (1 is the all-cache-hits case)', async () => {
    const dataDir = await folder();
    const one = await loadImageSource({ dataDir, unique: 1 });
    expect(hashes(Array.from({ length: 10 }, () => one.next())).size).toBe(1);
    const three = await loadImageSource({ dataDir, unique: 3 });
    const seq = Array.from({ length: 9 }, () => three.next());
    expect(hashes(seq).size).toBe(3);
    expect(seq[3]!.equals(seq[0]!)).toBe(true);
  });

  it('differs between runs, so a second run never hits the first run\'s cache entries', async () => {
    const dataDir = await folder();
    const a = await loadImageSource({ dataDir, unique: 1, salt: 1 });
    const b = await loadImageSource({ dataDir, unique: 1, salt: 2 });
    expect(a.next().equals(b.next())).toBe(false);
  });

  it('uses the dataset test split when present', async () => {
    const dataDir = await folder();
    await mkdir(join(dataDir, 'cifar-10-batches-bin'), { recursive: true });
    await writeFile(join(dataDir, 'cifar-10-batches-bin', 'test_batch.bin'), makeRecords(5));
    const source = await loadImageSource({ dataDir });
    expect(source.kind).toBe('dataset');
    expect(source.bases).toBe(5);
    const { info } = await sharp(source.next()).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([32, 32]);
  });

  it('reads every image file of --images DIR (any format), skipping other files', async () => {
    const dir = await folder();
    await writeFile(join(dir, 'a.png'), await solidPng(1, 1));
    await writeFile(join(dir, 'b.jpg'), await sharp({ create: { width: 40, height: 20, channels: 3, background: 'red' } }).jpeg().toBuffer());
    await writeFile(join(dir, 'notes.txt'), 'not an image');
    const source = await loadImageSource({ imagesDir: dir, dataDir: dir });
    expect([source.kind, source.bases]).toEqual(['folder', 2]);
    const second = await sharp(source.next() && source.next()).metadata();
    expect([second.width, second.height]).toEqual([40, 20]);
  });

  it('rejects an empty --images folder with a usage error', async () => {
    const dir = await folder();
    await expect(loadImageSource({ imagesDir: dir, dataDir: dir })).rejects.toMatchObject({ code: 'USAGE', message: expect.stringContaining('no image files') });
  });
});
