import { CifarError } from '../errors.js';
import { IMAGE_BYTES, prepareImage } from '../image/preprocess.js';
import { RECORD_BYTES, TEST_FILES, TRAIN_FILES, type SplitName } from './cifar-binary.js';
import type { ArchiveEntries } from './archive.js';
import type { ImageFile, ImageFolderLayout } from './layout.js';
import { seededPermutation } from './shuffle.js';

/** Seed of the fixed shuffle that spreads imported records across the batch files. */
export const IMPORT_SEED = 20_260_101;

export interface ImportOptions {
  signal?: AbortSignal;
  /** Called as images are decoded: done so far, total. */
  onImages?: (done: number, total: number) => void;
  /** Images decoded at once (sharp runs them on libuv's thread pool); default twice its threads. */
  concurrency?: number;
}

/**
 * Twice the threads of libuv's pool (UV_THREADPOOL_SIZE, 4 unless set), so that every thread has
 * an image queued. It matters only for images that prepareImage hands to sharp (other sizes and
 * formats, unusual PNGs and JPEGs); CIFAR's image folders have none.
 */
function defaultConcurrency(): number {
  const threads = Number(process.env['UV_THREADPOOL_SIZE']);
  return 2 * (Number.isInteger(threads) && threads > 0 ? Math.min(threads, 1024) : 4);
}

export interface ImportResult {
  /** Contents of each batch file, by file name, in the official binary record format. */
  files: Map<string, Uint8Array>;
  /** Images that were not 32×32 and were cropped and resized. */
  resized: number;
}

/**
 * Decode an image-folder archive into the official binary layout: train records shuffled with
 * a fixed seed and spread evenly over data_batch_1..5.bin, test records (also shuffled, so a
 * `--limit` of the test split still covers every class) in test_batch.bin.
 */
export async function importImageFolder(layout: ImageFolderLayout, entries: ArchiveEntries, options: ImportOptions = {}): Promise<ImportResult> {
  const total = layout.splits.train.length + layout.splits.test.length;
  let done = 0;
  let resized = 0;
  const progress = () => options.onImages?.(++done, total);
  const encode = async (split: SplitName) => {
    const images = layout.splits[split];
    const records = new Uint8Array(images.length * RECORD_BYTES);
    const order = seededPermutation(images.length, IMPORT_SEED + (split === 'test' ? 1 : 0));
    await forEachConcurrently(images.length, options.concurrency ?? defaultConcurrency(), options.signal, async (i) => {
      const file: ImageFile = images[order[i]!]!;
      const prepared = await prepareImage(entries.get(file.path)!, file.path);
      if (prepared.resized) resized++;
      writeRecord(records, i, file.label, prepared.pixels);
      progress();
      // prepareImage decodes plain PNGs and JPEGs without leaving the thread (decodePlain32): let
      // progress output and Ctrl-C through now and then.
      if (done % 1024 === 0) await new Promise(setImmediate);
    });
    return records;
  };
  const train = await encode('train');
  const test = await encode('test');
  const files = new Map<string, Uint8Array>();
  splitEvenly(train, TRAIN_FILES.length).forEach((part, i) => files.set(TRAIN_FILES[i]!, part));
  files.set(TEST_FILES[0], test);
  return { files, resized };
}

/** Store HWC pixels as one record: the label byte, then the R, G and B planes. */
function writeRecord(records: Uint8Array, index: number, label: number, hwc: Uint8Array): void {
  const base = index * RECORD_BYTES;
  records[base] = label;
  const plane = IMAGE_BYTES / 3;
  for (let p = 0; p < plane; p++) {
    records[base + 1 + p] = hwc[p * 3]!;
    records[base + 1 + plane + p] = hwc[p * 3 + 1]!;
    records[base + 1 + 2 * plane + p] = hwc[p * 3 + 2]!;
  }
}

/** Cut records into `parts` contiguous runs whose sizes differ by at most one record. */
function splitEvenly(records: Uint8Array, parts: number): Uint8Array[] {
  const n = records.length / RECORD_BYTES;
  return Array.from({ length: parts }, (_, i) => {
    const from = Math.floor((i * n) / parts);
    const to = Math.floor(((i + 1) * n) / parts);
    return records.subarray(from * RECORD_BYTES, to * RECORD_BYTES);
  });
}

/** Run `task(0..n-1)` with at most `limit` in flight; the first failure stops new work. */
async function forEachConcurrently(n: number, limit: number, signal: AbortSignal | undefined, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const lane = async () => {
    while (!failed && next < n) {
      if (signal?.aborted) throw new CifarError('ABORTED', 'interrupted while decoding images');
      const i = next++;
      try {
        await task(i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, lane));
}
