import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CifarError, fromSystemError } from '../errors.js';
import { IMAGE_BYTES } from '../image/preprocess.js';
import { CLASSES } from './classes.js';

/** One record of the binary release: a label byte then 1024 R, 1024 G and 1024 B bytes. */
export const RECORD_BYTES = 1 + IMAGE_BYTES;
/** Folder the binary release extracts to, inside the data directory. */
export const DATASET_FOLDER = 'cifar-10-batches-bin';
export const TRAIN_FILES = ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'] as const;
export const TEST_FILES = ['test_batch.bin'] as const;
export const BATCH_FILES = [...TRAIN_FILES, ...TEST_FILES] as const;
export const META_FILE = 'batches.meta.txt';
export const STATS_FILE = 'stats.json';

export type SplitName = 'train' | 'test';

export function datasetPath(dataDir: string): string {
  return join(dataDir, DATASET_FOLDER);
}

export function splitFiles(split: SplitName): readonly string[] {
  return split === 'train' ? TRAIN_FILES : TEST_FILES;
}

/** Per-class counts, in label order. */
export type ClassCounts = Record<string, number>;

export interface BatchFileInfo {
  file: string;
  records: number;
  sha256: string;
  counts: number[];
}

/**
 * Check that a batch file's bytes are well-formed records (size a multiple of 3073 bytes,
 * every label 0–9) and describe it. Throws DATASET_CORRUPT naming the file otherwise.
 */
export function inspectBatch(file: string, bytes: Uint8Array): BatchFileInfo {
  if (bytes.length === 0 || bytes.length % RECORD_BYTES !== 0) {
    throw new CifarError(
      'DATASET_CORRUPT',
      `${file}: ${bytes.length} bytes is not a whole number of ${RECORD_BYTES}-byte records (truncated or not a CIFAR-10 batch)`,
    );
  }
  const records = bytes.length / RECORD_BYTES;
  const counts = new Array<number>(CLASSES.length).fill(0);
  for (let r = 0; r < records; r++) {
    const label = bytes[r * RECORD_BYTES]!;
    if (label >= CLASSES.length) {
      throw new CifarError('DATASET_CORRUPT', `${file}: record ${r} has label ${label}, expected 0–9`);
    }
    counts[label]!++;
  }
  return { file, records, sha256: createHash('sha256').update(bytes).digest('hex'), counts };
}

export interface DatasetSummary {
  path: string;
  counts: { train: number; test: number };
  perClass: { train: ClassCounts; test: ClassCounts };
  sha256: Record<string, string>;
}

/**
 * Validate every batch file of a dataset folder and summarise it (counts per split and class,
 * sha256 per file). Throws DATASET_MISSING when files are absent, DATASET_CORRUPT when malformed.
 */
export async function inspectDataset(folder: string): Promise<DatasetSummary> {
  const perSplit = { train: new Array<number>(CLASSES.length).fill(0), test: new Array<number>(CLASSES.length).fill(0) };
  const sha256: Record<string, string> = {};
  for (const file of BATCH_FILES) {
    const bytes = await readDatasetFile(folder, file);
    const info = inspectBatch(file, bytes);
    sha256[file] = info.sha256;
    const target = (TEST_FILES as readonly string[]).includes(file) ? perSplit.test : perSplit.train;
    info.counts.forEach((n, i) => (target[i]! += n));
  }
  const named = (counts: number[]): ClassCounts => Object.fromEntries(CLASSES.map((c, i) => [c, counts[i]!]));
  const sum = (counts: number[]) => counts.reduce((a, b) => a + b, 0);
  if (sum(perSplit.train) === 0 || sum(perSplit.test) === 0) {
    throw new CifarError('DATASET_CORRUPT', `${folder}: a split has no records`);
  }
  return {
    path: folder,
    counts: { train: sum(perSplit.train), test: sum(perSplit.test) },
    perClass: { train: named(perSplit.train), test: named(perSplit.test) },
    sha256,
  };
}

async function readDatasetFile(folder: string, file: string): Promise<Uint8Array> {
  try {
    return await readFile(join(folder, file));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw missing(folder, `${file} is missing`);
    }
    throw fromSystemError(err, join(folder, file));
  }
}

function missing(folder: string, why: string): CifarError {
  // torchvision's download (the python version) beside it: say how to import it.
  const python = join(dirname(folder), 'cifar-10-batches-py');
  const hint = existsSync(python)
    ? `${python} (the python version, as torchvision downloads it) is there: import it with \`cifar download --from ${python} --dir ${dirname(folder)}\``
    : 'run `cifar download` first (or `cifar download --from ARCHIVE|FOLDER`)';
  return new CifarError('DATASET_MISSING', `no CIFAR-10 dataset at ${folder} (${why})`, { hint });
}

/** Labelled images as typed arrays: `images` holds `count` 32×32×3 images back to back. */
export interface LabelledImages {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

export type PixelLayout = 'hwc' | 'chw';

/** Copy one record's pixels (CHW planes, as stored) into `out` at `offset` in the asked layout. */
function copyPixels(src: Uint8Array, srcOffset: number, out: Uint8Array, outOffset: number, layout: PixelLayout): void {
  if (layout === 'chw') {
    out.set(src.subarray(srcOffset, srcOffset + IMAGE_BYTES), outOffset);
    return;
  }
  const plane = IMAGE_BYTES / 3;
  for (let p = 0; p < plane; p++) {
    const o = outOffset + p * 3;
    out[o] = src[srcOffset + p]!;
    out[o + 1] = src[srcOffset + plane + p]!;
    out[o + 2] = src[srcOffset + 2 * plane + p]!;
  }
}

export interface ReadOptions {
  /** Records per yielded batch (default 1000). */
  batchSize?: number;
  /** Stop after this many records. */
  limit?: number;
  /** 'hwc' (default, what tfjs wants) or 'chw' (as stored). */
  layout?: PixelLayout;
}

/**
 * Read a split in batches straight from the files, never holding more than one batch.
 *
 * @example
 *   for await (const b of readSplit('data/cifar-10-batches-bin', 'test', { batchSize: 256 })) use(b);
 */
export async function* readSplit(folder: string, split: SplitName, options: ReadOptions = {}): AsyncGenerator<LabelledImages> {
  const batchSize = options.batchSize ?? 1000;
  const layout = options.layout ?? 'hwc';
  let remaining = options.limit ?? Infinity;
  for (const file of splitFiles(split)) {
    if (remaining <= 0) return;
    const path = join(folder, file);
    let handle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw missing(folder, `${file} is missing`);
      throw fromSystemError(err, path);
    }
    try {
      const { size } = await handle.stat();
      if (size % RECORD_BYTES !== 0) {
        throw new CifarError('DATASET_CORRUPT', `${file}: ${size} bytes is not a whole number of ${RECORD_BYTES}-byte records`);
      }
      let position = 0;
      while (position < size && remaining > 0) {
        const n = Math.min(batchSize, (size - position) / RECORD_BYTES, remaining);
        const raw = new Uint8Array(n * RECORD_BYTES);
        const { bytesRead } = await handle.read(raw, 0, raw.length, position);
        if (bytesRead !== raw.length) throw new CifarError('DATASET_CORRUPT', `${file}: file changed while reading`);
        position += raw.length;
        remaining -= n;
        yield decodeRecords(file, raw, n, layout);
      }
    } finally {
      await handle.close();
    }
  }
}

function decodeRecords(file: string, raw: Uint8Array, n: number, layout: PixelLayout): LabelledImages {
  const images = new Uint8Array(n * IMAGE_BYTES);
  const labels = new Uint8Array(n);
  for (let r = 0; r < n; r++) {
    const label = raw[r * RECORD_BYTES]!;
    if (label >= CLASSES.length) throw new CifarError('DATASET_CORRUPT', `${file}: a record has label ${label}, expected 0–9`);
    labels[r] = label;
    copyPixels(raw, r * RECORD_BYTES + 1, images, r * IMAGE_BYTES, layout);
  }
  return { images, labels, count: n };
}

/** Load a whole split (or its first `limit` records) into one pair of typed arrays. */
export async function loadSplit(folder: string, split: SplitName, options: Omit<ReadOptions, 'batchSize'> = {}): Promise<LabelledImages> {
  const parts: LabelledImages[] = [];
  for await (const part of readSplit(folder, split, { ...options, batchSize: 10_000 })) parts.push(part);
  const count = parts.reduce((n, p) => n + p.count, 0);
  const images = new Uint8Array(count * IMAGE_BYTES);
  const labels = new Uint8Array(count);
  let at = 0;
  for (const p of parts) {
    images.set(p.images, at * IMAGE_BYTES);
    labels.set(p.labels, at);
    at += p.count;
  }
  return { images, labels, count };
}

/** Per-channel mean and standard deviation of the training images, on a 0–1 scale. */
export interface ChannelStats {
  mean: [number, number, number];
  std: [number, number, number];
  count: number;
}

/** Compute per-channel statistics of the training split, one batch at a time. */
export async function computeStats(folder: string): Promise<ChannelStats> {
  const sum = [0, 0, 0];
  const sumSq = [0, 0, 0];
  let count = 0;
  for await (const { images, count: n } of readSplit(folder, 'train', { batchSize: 5000, layout: 'chw' })) {
    const plane = IMAGE_BYTES / 3;
    for (let r = 0; r < n; r++) {
      for (let c = 0; c < 3; c++) {
        let s = 0;
        let s2 = 0;
        const base = r * IMAGE_BYTES + c * plane;
        for (let p = 0; p < plane; p++) {
          const v = images[base + p]!;
          s += v;
          s2 += v * v;
        }
        sum[c]! += s;
        sumSq[c]! += s2;
      }
    }
    count += n;
  }
  if (count === 0) throw new CifarError('DATASET_CORRUPT', `${folder}: the training split is empty`);
  const pixels = count * (IMAGE_BYTES / 3);
  const mean = sum.map((s) => s / pixels / 255) as [number, number, number];
  const std = sumSq.map((s2, c) => Math.sqrt(Math.max(0, s2 / pixels / 65025 - mean[c]! ** 2))) as [number, number, number];
  return { mean, std, count };
}

/**
 * The statistics stored beside the dataset (written by `cifar download`); computed when absent,
 * and stored for next time when the folder is writable.
 */
export async function loadStats(folder: string): Promise<ChannelStats> {
  try {
    return JSON.parse(await readFile(join(folder, STATS_FILE), 'utf8')) as ChannelStats;
  } catch {
    await stat(folder).catch(() => {
      throw missing(folder, 'the folder does not exist');
    });
    const stats = await computeStats(folder);
    await writeFile(join(folder, STATS_FILE), JSON.stringify(stats, null, 2) + '\n').catch(() => {});
    return stats;
  }
}
