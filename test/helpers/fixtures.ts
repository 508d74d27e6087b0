import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import sharp from 'sharp';
import * as tar from 'tar';
import yazl from 'yazl';
import { RECORD_BYTES, TEST_FILES, TRAIN_FILES } from '../../src/data/cifar-binary.js';
import { CLASSES } from '../../src/data/classes.js';

/** A fresh temporary folder, removed by the returned cleanup. */
export async function tempDir(prefix = 'cifar-test-'): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** `n` records with labels cycling 0..9 and pixel bytes that depend on the record and seed. */
export function makeRecords(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n * RECORD_BYTES);
  for (let r = 0; r < n; r++) {
    out[r * RECORD_BYTES] = (r + seed) % 10;
    for (let i = 1; i < RECORD_BYTES; i++) out[r * RECORD_BYTES + i] = (r * 31 + i * 7 + seed * 13) & 0xff;
  }
  return out;
}

export interface BinaryArchiveOptions {
  recordsPerBatch?: number;
  /** Replace a file's bytes (e.g. to corrupt it) or drop it with null. */
  override?: Record<string, Uint8Array | null>;
  gzip?: boolean;
  folder?: string;
}

/** The batch files (and `batches.meta.txt`) of a small binary-layout dataset, by file name. */
export function binaryLayoutFiles(options: Pick<BinaryArchiveOptions, 'recordsPerBatch' | 'override'> = {}): Record<string, Uint8Array> {
  const per = options.recordsPerBatch ?? 20;
  const files: Record<string, Uint8Array | null> = {};
  [...TRAIN_FILES, ...TEST_FILES].forEach((f, i) => (files[f] = makeRecords(per, i + 1)));
  files['batches.meta.txt'] = new TextEncoder().encode(CLASSES.join('\n') + '\n\n');
  Object.assign(files, options.override ?? {});
  return Object.fromEntries(Object.entries(files).filter((e): e is [string, Uint8Array] => e[1] !== null));
}

/** Build a small archive in the official binary layout; returns its path. */
export async function makeBinaryArchive(dir: string, name: string, options: BinaryArchiveOptions = {}): Promise<string> {
  const folder = options.folder ?? 'cifar-10-batches-bin';
  const src = join(dir, `${name}-src`);
  await mkdir(join(src, folder), { recursive: true });
  for (const [f, bytes] of Object.entries(binaryLayoutFiles(options))) await writeFile(join(src, folder, f), bytes);
  const file = join(dir, name);
  await tar.c({ gzip: options.gzip ?? true, file, cwd: src, portable: true }, [folder]);
  return file;
}

export interface ImageSpec {
  split: 'train' | 'test';
  cls: string;
  name: string;
  /** Encoded file contents. */
  data: Buffer;
}

/** A solid-colour PNG whose colour encodes (class, index) so it can be recognised after import. */
export async function solidPng(label: number, index: number, size = 32, channels: 3 | 4 = 3): Promise<Buffer> {
  const colour = { r: label * 20, g: index * 3, b: 255 - label * 20, ...(channels === 4 ? { alpha: 1 } : {}) };
  return sharp({ create: { width: size, height: size, channels, background: colour } }).png().toBuffer();
}

/** The standard small image-folder: `perClass` train and test PNGs of each class. */
export async function standardImages(perClass = 2): Promise<ImageSpec[]> {
  const specs: ImageSpec[] = [];
  for (const split of ['train', 'test'] as const) {
    for (let label = 0; label < CLASSES.length; label++) {
      for (let i = 0; i < perClass; i++) {
        specs.push({ split, cls: CLASSES[label]!, name: `${i}.png`, data: await solidPng(label, i + (split === 'test' ? 50 : 0)) });
      }
    }
  }
  return specs;
}

/** Build an image-folder archive `<root>/<split>/<class>/<name>`; returns its path. */
export async function makeImageFolderArchive(dir: string, name: string, images: ImageSpec[], root = 'cifar-10-images'): Promise<string> {
  const src = join(dir, `${name}-src`);
  for (const [path, data] of Object.entries(imageFolderFiles(images, root))) {
    await mkdir(dirname(join(src, path)), { recursive: true });
    await writeFile(join(src, path), data);
  }
  const file = join(dir, name);
  await tar.c({ gzip: true, file, cwd: src, portable: true }, [root]);
  return file;
}

export interface ZipEntry {
  data: Buffer | Uint8Array;
  /** Unix mode, e.g. 0o120777 for a symbolic link (whose data is its target). */
  mode?: number;
}

/**
 * Build a zip of `files` (archive path → contents; a path ending in "/" is a folder entry), deflated
 * unless `compress` is false, in the zip64 format if `zip64`; returns its path.
 */
export async function makeZip(dir: string, name: string, files: Record<string, Buffer | Uint8Array | ZipEntry>, compress = true, zip64 = false): Promise<string> {
  const zip = new yazl.ZipFile();
  for (const [path, entry] of Object.entries(files)) {
    if (path.endsWith('/')) {
      zip.addEmptyDirectory(path);
      continue;
    }
    const { data, mode } = entry instanceof Uint8Array ? { data: entry, mode: undefined } : entry;
    zip.addBuffer(Buffer.from(data), path, { compress, forceZip64Format: zip64, ...(mode === undefined ? {} : { mode }) });
  }
  zip.end({ forceZip64Format: zip64, comment: '' });
  const file = join(dir, name);
  await pipeline(zip.outputStream, createWriteStream(file));
  return file;
}

/** The archive paths and contents of an image folder, as `makeImageFolderArchive` lays them out. */
export function imageFolderFiles(images: ImageSpec[], root = 'cifar-10-images'): Record<string, Buffer> {
  return Object.fromEntries(images.map((img) => [`${root ? `${root}/` : ''}${img.split}/${img.cls}/${img.name}`, img.data]));
}

/**
 * A tiny dataset folder (binary layout) that a model can learn in a few steps: each class is a
 * distinct colour with a little noise. `perBatch` records in each of the six batch files.
 */
export async function writeLearnableDataset(folder: string, perBatch = 16): Promise<void> {
  await mkdir(folder, { recursive: true });
  let state = 12345;
  const noise = () => ((state = (state * 1103515245 + 12345) >>> 0) >>> 24) % 40;
  for (const [f, file] of [...TRAIN_FILES, ...TEST_FILES].entries()) {
    const out = new Uint8Array(perBatch * RECORD_BYTES);
    for (let r = 0; r < perBatch; r++) {
      const label = (r + f) % 10;
      out[r * RECORD_BYTES] = label;
      const colour = [(label * 53) % 200, (label * 97) % 200, (label * 151) % 200];
      for (let c = 0; c < 3; c++) for (let p = 0; p < 1024; p++) out[r * RECORD_BYTES + 1 + c * 1024 + p] = colour[c]! + noise();
    }
    await writeFile(join(folder, file), out);
  }
}
