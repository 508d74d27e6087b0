import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadSplit, RECORD_BYTES, TRAIN_FILES } from '../../src/data/cifar-binary.js';
import { downloadDataset } from '../../src/data/download.js';
import { CLASSES } from '../../src/data/classes.js';
import { makeImageFolderArchive, solidPng, standardImages, tempDir, type ImageSpec } from '../helpers/fixtures.js';
import { sharpPixels } from '../helpers/sharp.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(() => cleanup());

const importArchive = async (images: ImageSpec[], root?: string) =>
  downloadDataset({ dir: join(dir, 'data'), from: await makeImageFolderArchive(dir, 'imgs.tgz', images, root) });

describe('image-folder import', () => {
  it('decodes every image into a record with its class label and exact pixels', async () => {
    const result = await importArchive(await standardImages(3));
    expect(result.format).toBe('image-folder');
    expect(result.counts).toEqual({ train: 30, test: 30 });
    expect(Object.values(result.perClass.train)).toEqual(Array(10).fill(3));
    for (const split of ['train', 'test'] as const) {
      const { images, labels, count } = await loadSplit(result.path, split);
      const seen = new Set<string>();
      for (let i = 0; i < count; i++) {
        const [r, g, b] = images.subarray(i * 3072, i * 3072 + 3);
        // solidPng colours: r = label*20, b = 255 - label*20, g = index*3 (+150 for test).
        expect(r).toBe(labels[i]! * 20);
        expect(b).toBe(255 - labels[i]! * 20);
        expect(images.subarray(i * 3072, (i + 1) * 3072).every((v, k) => v === [r, g, b][k % 3])).toBe(true);
        seen.add(`${labels[i]}:${g}`);
      }
      expect(seen.size).toBe(30);
    }
  });

  it('stores JPEGs with exactly the pixels sharp decodes', async () => {
    // Noisy photo-like JPEGs (4:2:0 and 4:4:4), one per class and split, so the label names the image.
    const images: ImageSpec[] = [];
    for (const split of ['train', 'test'] as const) {
      for (let label = 0; label < CLASSES.length; label++) {
        const px = Buffer.alloc(32 * 32 * 3, 0).map((_, i) => (i * 7 + label * 31 + (split === 'test' ? 90 : 0) + ((i * i) % 23)) & 255);
        const data = await sharp(px, { raw: { width: 32, height: 32, channels: 3 } })
          .jpeg({ quality: 75, chromaSubsampling: label % 2 ? '4:4:4' : '4:2:0' })
          .toBuffer();
        images.push({ split, cls: CLASSES[label]!, name: '0.jpg', data });
      }
    }
    const result = await importArchive(images);
    expect(result.resized).toBe(0);
    for (const split of ['train', 'test'] as const) {
      const { images: records, labels, count } = await loadSplit(result.path, split);
      for (let i = 0; i < count; i++) {
        const spec = images.find((img) => img.split === split && img.cls === CLASSES[labels[i]!])!;
        const expected = await sharpPixels(spec.data);
        expect(Buffer.from(records.subarray(i * 3072, (i + 1) * 3072)).equals(expected), `${split} ${labels[i]}`).toBe(true);
      }
    }
  });

  it('shuffles train records with a fixed seed across the five batch files', async () => {
    const images = await standardImages(2);
    const a = await importArchive(images);
    const train = await loadSplit(a.path, 'train');
    expect([...train.labels]).not.toEqual([...train.labels].sort((x, y) => x - y));
    for (const f of TRAIN_FILES) expect((await readFile(join(a.path, f))).length).toBe(4 * RECORD_BYTES);
    const b = await downloadDataset({ dir: join(dir, 'again'), from: await makeImageFolderArchive(dir, 'imgs2.tgz', images) });
    expect(b.sha256).toEqual(a.sha256);
  });

  it('resizes images of another size to 32×32 and counts them', async () => {
    const images = await standardImages(1);
    const big = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 60, g: 9, b: 195 } } }).jpeg({ quality: 100 }).toBuffer();
    images.push({ split: 'train', cls: 'cat', name: 'big.jpg', data: big });
    const result = await importArchive(images);
    expect(result.resized).toBe(1);
    expect(result.perClass.train.cat).toBe(2);
  });

  it('ignores archiver junk such as .DS_Store and __MACOSX', async () => {
    const images = await standardImages(1);
    images.push({ split: 'train', cls: 'cat', name: '.DS_Store', data: Buffer.from('junk') });
    const result = await importArchive(images);
    expect(result.counts.train).toBe(10);
  });

  it('works with the split folders at the top of the archive', async () => {
    const src = await standardImages(1);
    const result = await importArchive(src, '.');
    expect(result.counts).toEqual({ train: 10, test: 10 });
  });

  it('names a file that is not a decodable image', async () => {
    const images = await standardImages(1);
    images.push({ split: 'test', cls: 'frog', name: 'broken.png', data: (await solidPng(6, 1)).subarray(0, 40) });
    await expect(importArchive(images)).rejects.toMatchObject({ code: 'INVALID_IMAGE', message: expect.stringContaining('test/frog/broken.png') });
  });

  it('names a class folder that is not one of the ten', async () => {
    const images = await standardImages(1);
    images.push({ split: 'train', cls: 'kitten', name: '0.png', data: await solidPng(3, 0) });
    await expect(importArchive(images)).rejects.toMatchObject({ code: 'UNKNOWN_CLASS', message: expect.stringContaining('train/kitten') });
  });

  it('refuses an image folder that lacks a class in a split', async () => {
    const images = (await standardImages(1)).filter((i) => !(i.split === 'test' && i.cls === 'ship'));
    await expect(importArchive(images)).rejects.toMatchObject({ code: 'ARCHIVE_INVALID', message: expect.stringContaining('test/ has no images of ship') });
  });
});
