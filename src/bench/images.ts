import { randomInt } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import sharp from 'sharp';
import { datasetPath, readSplit } from '../data/cifar-binary.js';
import { CifarError, fromSystemError, isCifarError } from '../errors.js';
import { pngVariants, type PngVariants } from './png.js';

/** Decoded pixels of one source picture (8-bit RGB, HWC). */
interface BaseImage {
  rgb: Uint8Array;
  width: number;
  height: number;
}

/** Where the benchmark's images come from, and how many distinct ones it sends. */
export interface ImageSource {
  kind: 'folder' | 'dataset' | 'generated';
  /** The folder or dataset read, when there is one. */
  path?: string;
  /** Distinct source pictures, before the per-image perturbation. */
  bases: number;
  /** Distinct images cycled through; null when every image sent is new. */
  distinct: number | null;
  /** The next image to send: a PNG whose bytes differ from every other distinct image of the run. */
  next(): Buffer;
}

export interface ImageSourceOptions {
  imagesDir?: string;
  dataDir: string;
  unique?: number;
  /** Fixed salt (tests); by default random, so a new run never hits a previous run's cache entries. */
  salt?: number;
}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.gif', '.bmp', '.tif', '.tiff', '.avif']);
/** More real pictures than this add nothing to a load test; perturbation makes the rest. */
const MAX_BASES = 1000;
/** The server reduces every image to 32×32; larger sources are scaled to fit so memory stays bounded. */
const MAX_SIDE = 512;
/** Encoded variants kept in memory when a finite set is cycled. */
const MEMO_LIMIT = 20_000;
const GENERATED_BASES = 16;

/**
 * Pick the image source: `imagesDir`, else the dataset's test split, else generated noise.
 * Every image is a PNG of a source picture with the low bits of 64 bytes set from (salt, index),
 * so distinct indices give distinct bytes (the server caches by bytes) that look the same.
 *
 * @example
 *   const images = await loadImageSource({ dataDir: 'data', unique: 1 }); // all cache hits
 *   const body = images.next();
 */
export async function loadImageSource(options: ImageSourceOptions): Promise<ImageSource> {
  const wanted = Math.min(options.unique ?? MAX_BASES, MAX_BASES);
  const salt = options.salt ?? randomInt(2 ** 32 - 1);
  if (options.imagesDir !== undefined) {
    return cycle('folder', await readFolder(options.imagesDir, wanted), options.unique, salt, options.imagesDir);
  }
  const dataset = await readDataset(options.dataDir, wanted);
  if (dataset) return cycle('dataset', dataset, options.unique, salt, datasetPath(options.dataDir));
  return cycle('generated', generateNoise(Math.min(wanted, GENERATED_BASES)), options.unique, salt);
}

function cycle(kind: ImageSource['kind'], bases: BaseImage[], unique: number | undefined, salt: number, path?: string): ImageSource {
  const memo: Buffer[] = [];
  const encoders: PngVariants[] = [];
  let counter = 0;
  const variant = (v: number): Buffer => {
    const b = v % bases.length;
    const base = bases[b]!;
    const encoder = (encoders[b] ??= pngVariants(base.rgb, base.width, base.height, PERTURBED_BYTES));
    const head = base.rgb.slice(0, encoder.headBytes);
    perturb(head, v, salt);
    return encoder.encode(head);
  };
  return {
    kind,
    ...(path === undefined ? {} : { path }),
    bases: bases.length,
    distinct: unique ?? null,
    next() {
      const v = unique === undefined ? counter : counter % unique;
      counter++;
      if (unique === undefined || unique > MEMO_LIMIT) return variant(v);
      return (memo[v] ??= variant(v));
    },
  };
}

const PERTURBED_BYTES = 64;

/** Write 32 bits of the index and 32 of the salt into the lowest bit of the first 64 bytes (of `rgb`, the start of a picture or all of it). */
function perturb(rgb: Uint8Array, index: number, salt: number): void {
  for (let b = 0; b < PERTURBED_BYTES; b++) {
    const bit = b < 32 ? (index >>> b) & 1 : (salt >>> (b - 32)) & 1;
    const at = b % rgb.length;
    rgb[at] = (rgb[at]! & 0xfe) | bit;
  }
}

async function readFolder(dir: string, limit: number): Promise<BaseImage[]> {
  let entries: string[];
  try {
    if (!(await stat(dir)).isDirectory()) throw new CifarError('USAGE', `--images ${dir}: not a folder`);
    entries = (await readdir(dir, { recursive: true })).map(String);
  } catch (err) {
    throw isCifarError(err) ? err : new CifarError('USAGE', `--images ${dir}: ${fromSystemError(err, 'cannot read the folder').message}`);
  }
  const files = entries.filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase())).sort().slice(0, limit);
  if (files.length === 0) {
    throw new CifarError('USAGE', `--images ${dir}: no image files (${[...IMAGE_EXTENSIONS].join(' ')})`);
  }
  const bases: BaseImage[] = [];
  for (const file of files) {
    const path = join(dir, file);
    try {
      const { data, info } = await sharp(await readFile(path))
        .resize({ width: MAX_SIDE, height: MAX_SIDE, fit: 'inside', withoutEnlargement: true })
        .removeAlpha()
        .toColourspace('srgb')
        .raw()
        .toBuffer({ resolveWithObject: true });
      if (info.channels !== 3) throw new Error(`${info.channels} channels`);
      bases.push({ rgb: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height });
    } catch (err) {
      throw new CifarError('USAGE', `--images: ${path} is not an image that can be decoded (${err instanceof Error ? err.message : String(err)})`);
    }
  }
  return bases;
}

/** The first `limit` test images, or null when there is no dataset (the next source is used). */
async function readDataset(dataDir: string, limit: number): Promise<BaseImage[] | null> {
  const bases: BaseImage[] = [];
  try {
    for await (const batch of readSplit(datasetPath(dataDir), 'test', { limit, layout: 'hwc' })) {
      for (let i = 0; i < batch.count; i++) bases.push({ rgb: batch.images.subarray(i * 3072, (i + 1) * 3072), width: 32, height: 32 });
    }
  } catch (err) {
    if (isCifarError(err) && err.code === 'DATASET_MISSING') return null;
    throw err;
  }
  return bases.length > 0 ? bases : null;
}

/** 32×32 noise pictures (about 3 kB as PNG, like a real CIFAR image), from a fixed seed. */
function generateNoise(count: number): BaseImage[] {
  let state = 0x9e3779b9;
  const byte = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) >>> 24);
  return Array.from({ length: count }, () => {
    const rgb = new Uint8Array(32 * 32 * 3);
    for (let i = 0; i < rgb.length; i++) rgb[i] = byte();
    return { rgb, width: 32, height: 32 };
  });
}
