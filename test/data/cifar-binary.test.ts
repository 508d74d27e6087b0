import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  BATCH_FILES,
  RECORD_BYTES,
  computeStats,
  datasetPath,
  inspectBatch,
  inspectDataset,
  loadSplit,
  readSplit,
} from '../../src/data/cifar-binary.js';
import { isCifarError } from '../../src/errors.js';
import { makeRecords, tempDir } from '../helpers/fixtures.js';

let dir: string;
let cleanup: () => Promise<void>;

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(() => cleanup());

async function writeDataset(folder: string, perBatch: number): Promise<void> {
  await mkdir(folder, { recursive: true });
  for (const [i, f] of BATCH_FILES.entries()) await writeFile(join(folder, f), makeRecords(perBatch, i + 1));
}

describe('batch file validation', () => {
  it('rejects a file whose size is not a whole number of records, naming it', () => {
    const bytes = makeRecords(3).subarray(0, 2 * RECORD_BYTES + 100);
    expect(() => inspectBatch('data_batch_1.bin', bytes)).toThrowError(/data_batch_1\.bin: .*not a whole number of 3073-byte records/);
  });

  it('rejects a label outside 0–9 with the record index', () => {
    const bytes = makeRecords(3);
    bytes[2 * RECORD_BYTES] = 12;
    try {
      inspectBatch('test_batch.bin', bytes);
      expect.unreachable();
    } catch (err) {
      expect(isCifarError(err) && err.code).toBe('DATASET_CORRUPT');
      expect((err as Error).message).toContain('record 2 has label 12');
    }
  });

  it('counts records per class', () => {
    const info = inspectBatch('x', makeRecords(25, 0));
    expect(info.records).toBe(25);
    expect(info.counts).toEqual([3, 3, 3, 3, 3, 2, 2, 2, 2, 2]);
  });

  it('reports a missing dataset with a hint to run cifar download', async () => {
    await expect(inspectDataset(join(dir, 'nothing'))).rejects.toMatchObject({ code: 'DATASET_MISSING', hint: expect.stringContaining('cifar download') });
    // A data folder where torchvision left the python version: the hint gives the command that imports it.
    await mkdir(join(dir, 'torch', 'cifar-10-batches-py'), { recursive: true });
    await expect(inspectDataset(datasetPath(join(dir, 'torch')))).rejects.toMatchObject({
      code: 'DATASET_MISSING',
      hint: `${join(dir, 'torch', 'cifar-10-batches-py')} (the python version, as torchvision downloads it) is there: import it with \`cifar download --from ${join(dir, 'torch', 'cifar-10-batches-py')} --dir ${join(dir, 'torch')}\``,
    });
  });
});

describe('reading splits', () => {
  it('yields batches of at most batchSize records, across files, in HWC order', async () => {
    await writeDataset(dir, 7);
    const sizes: number[] = [];
    let first: Uint8Array | undefined;
    for await (const b of readSplit(dir, 'train', { batchSize: 4 })) {
      sizes.push(b.count);
      first ??= b.images.slice(0, 3072);
      expect(b.images.length).toBe(b.count * 3072);
    }
    expect(sizes).toEqual([4, 3, 4, 3, 4, 3, 4, 3, 4, 3]);
    // Pixel (0,0) is R,G,B = bytes 1, 1+1024, 1+2048 of the first stored record.
    const rec = makeRecords(1, 1);
    expect([...first!.slice(0, 3)]).toEqual([rec[1], rec[1 + 1024], rec[1 + 2048]]);
    expect(first![3]).toBe(rec[2]);
  });

  it('stops after limit records without reading further files', async () => {
    await writeDataset(dir, 7);
    const split = await loadSplit(dir, 'train', { limit: 10 });
    expect(split.count).toBe(10);
    expect([...split.labels]).toEqual([1, 2, 3, 4, 5, 6, 7, 2, 3, 4]);
  });

  it('computes per-channel mean and std equal to a direct computation', async () => {
    await writeDataset(dir, 5);
    const stats = await computeStats(dir);
    const all = await loadSplit(dir, 'train', { layout: 'hwc' });
    for (let c = 0; c < 3; c++) {
      const values: number[] = [];
      for (let i = c; i < all.images.length; i += 3) values.push(all.images[i]! / 255);
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
      expect(stats.mean[c]).toBeCloseTo(mean, 6);
      expect(stats.std[c]).toBeCloseTo(std, 6);
    }
    expect(stats.count).toBe(25);
  });
});
