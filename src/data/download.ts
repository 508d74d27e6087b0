import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { CifarError, fromSystemError } from '../errors.js';
import { readArchive } from './archive.js';
import {
  BATCH_FILES,
  DATASET_FOLDER,
  META_FILE,
  STATS_FILE,
  computeStats,
  datasetPath,
  inspectBatch,
  inspectDataset,
  loadStats,
  type ChannelStats,
  type DatasetSummary,
} from './cifar-binary.js';
import { CLASSES } from './classes.js';
import { pythonBatchToRecords } from './cifar-python.js';
import { fetchToFile, type FetchOptions } from './fetch.js';
import { importImageFolder } from './image-folder.js';
import { listFolder, readFolderFiles } from './folder.js';
import { detectLayout, layoutFiles } from './layout.js';

/** The official binary release and its published md5. */
export const OFFICIAL_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz';
export const OFFICIAL_MD5 = 'c32a1d4ab5d03f1284b67883e8d87530';
/** The same host's "python version" (pickled batches), with the md5 torchvision checks it against. */
export const PYTHON_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz';
const KNOWN_MD5: Record<string, string> = { [OFFICIAL_URL]: OFFICIAL_MD5, [PYTHON_URL]: 'c58f30108f718f92721af3b95e74349a' };
/** Written beside the batch files: where the dataset came from and what it holds. */
export const MANIFEST_FILE = 'manifest.json';

/** `read` counts an archive's bytes, `files` a folder source's files. */
export type DownloadPhase = 'download' | 'checksum' | 'read' | 'files' | 'decode' | 'write';

export interface DownloadOptions {
  /** Data directory; the dataset lands in `<dir>/cifar-10-batches-bin`. */
  dir: string;
  /** Archive URL (default: the official release). */
  url?: string;
  /** Expected md5 of the archive; the official one by default, none for other sources unless given. */
  md5?: string;
  /** A local archive or a URL of one, in either layout, instead of `url`. */
  from?: string;
  /** Most bytes the source's files may unpack to (default `MAX_UNPACKED_BYTES`, 4 GiB). */
  maxUnpackedBytes?: number;
  /** Rebuild even when a valid dataset is present. */
  force?: boolean;
  signal?: AbortSignal;
  /** Progress of a phase: units done and total (bytes or images; total undefined if unknown). */
  onProgress?: (phase: DownloadPhase, done: number, total: number | undefined) => void;
  /** One-line notes worth showing (retries, resumed downloads, rebuilding a broken dataset). */
  onNote?: (message: string) => void;
  fetch?: Pick<FetchOptions, 'retries' | 'retryDelayMs' | 'idleTimeoutMs'>;
}

export interface DownloadResult extends DatasetSummary {
  /** True when a valid dataset was already there and nothing was done. */
  alreadyPresent: boolean;
  source: string;
  format: 'binary' | 'python' | 'image-folder' | 'existing';
  /** Images of another size that were cropped and resized to 32×32 (image folders only). */
  resized: number;
  md5: string | undefined;
  stats: ChannelStats;
  seconds: number;
}

/**
 * Make `<dir>/cifar-10-batches-bin` hold a complete, verified CIFAR-10 dataset in the official
 * binary layout, from the official release, a mirror, or a local/remote archive in either the
 * binary or the image-folder layout. Work happens in a temporary folder that is renamed into
 * place only once everything is verified: a failure never leaves a partial dataset and never
 * destroys a valid one.
 */
export async function downloadDataset(options: DownloadOptions): Promise<DownloadResult> {
  const started = performance.now();
  const dir = resolve(options.dir);
  const target = datasetPath(dir);
  const seconds = () => Math.round((performance.now() - started) / 10) / 100;
  if (!options.force) {
    const existing = await inspectExisting(target, options.onNote);
    if (existing) {
      return { ...existing.summary, alreadyPresent: true, source: existing.source, format: 'existing', resized: 0, md5: undefined, stats: existing.stats, seconds: seconds() };
    }
  }
  await mkdir(dir, { recursive: true }).catch((err) => {
    throw fromSystemError(err, dir);
  });
  const tmp = join(dir, `.${DATASET_FOLDER}.tmp-${process.pid}-${randomBytes(3).toString('hex')}`);
  try {
    const { archive, folder, source, md5, downloaded } = await obtainArchive(dir, options);
    throwIfAborted(options.signal);
    const { entries, layout } = folder ? await readFolderSource(archive, options) : await readArchiveSource(archive, source, options);
    await mkdir(tmp);
    let resized = 0;
    if (layout.kind !== 'image-folder') {
      for (const file of BATCH_FILES) {
        const path = layout.files[file]!;
        const bytes = layout.kind === 'python' ? pythonBatchToRecords(entries.get(path)!, `${source}: ${path}`) : entries.get(path)!;
        inspectBatch(file, bytes);
        await writeFile(join(tmp, file), bytes);
      }
      await writeFile(join(tmp, META_FILE), layout.meta ? entries.get(layout.meta)! : metaText());
    } else {
      const imported = await importImageFolder(layout, entries, {
        signal: options.signal,
        onImages: (done, total) => options.onProgress?.('decode', done, total),
      });
      resized = imported.resized;
      for (const [file, bytes] of imported.files) await writeFile(join(tmp, file), bytes);
      await writeFile(join(tmp, META_FILE), metaText());
    }
    throwIfAborted(options.signal);
    options.onProgress?.('write', 0, undefined);
    const summary = await inspectDataset(tmp);
    const stats = await computeStats(tmp);
    await writeFile(join(tmp, STATS_FILE), JSON.stringify(stats, null, 2) + '\n');
    const format = layout.kind;
    await writeFile(
      join(tmp, MANIFEST_FILE),
      JSON.stringify({ source, format, md5, resized, counts: summary.counts, perClass: summary.perClass, sha256: summary.sha256, createdAt: new Date().toISOString() }, null, 2) + '\n',
    );
    throwIfAborted(options.signal);
    await swapInto(tmp, target);
    if (downloaded) await rm(archive, { force: true });
    return { ...summary, path: target, alreadyPresent: false, source, format, resized, md5, stats, seconds: seconds() };
  } catch (err) {
    throw fromSystemError(err, target);
  } finally {
    await rm(tmp, { recursive: true, force: true });
    // Drop the download cache folder when nothing is left in it to resume.
    await rmdir(join(dir, '.downloads')).catch(() => {});
  }
}

async function readArchiveSource(archive: string, source: string, options: DownloadOptions) {
  const archiveBytes = (await stat(archive)).size;
  const entries = await readArchive(archive, {
    signal: options.signal,
    maxBytes: options.maxUnpackedBytes,
    onBytes: (n) => options.onProgress?.('read', n, archiveBytes),
  });
  return { entries, layout: detectLayout(entries.keys(), source) };
}

/** An unpacked archive: the layout is told from the paths, and only the files it names are read. */
async function readFolderSource(folder: string, options: DownloadOptions) {
  const files = await listFolder(folder, options.signal);
  const layout = detectLayout(files.keys(), folder);
  const entries = await readFolderFiles(files, layoutFiles(layout), {
    signal: options.signal,
    source: folder,
    maxBytes: options.maxUnpackedBytes,
    onFiles: (done, total) => options.onProgress?.('files', done, total),
  });
  return { entries, layout };
}

/** A valid dataset already in place, or undefined (noting why an existing one is not usable). */
async function inspectExisting(target: string, onNote?: (m: string) => void) {
  try {
    await stat(target);
  } catch {
    return undefined;
  }
  try {
    const summary = await inspectDataset(target);
    const stats = await loadStats(target);
    const manifest = await readJson<{ source?: string }>(join(target, MANIFEST_FILE));
    return { summary, stats, source: manifest?.source ?? target };
  } catch (err) {
    onNote?.(`the dataset at ${target} is not usable (${(err as Error).message}); rebuilding it`);
    return undefined;
  }
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

interface Obtained {
  /** The archive file, or the folder `--from` named. */
  archive: string;
  folder: boolean;
  source: string;
  md5: string | undefined;
  /** The archive is our own download, to delete once installed. */
  downloaded: boolean;
}

async function obtainArchive(dir: string, options: DownloadOptions): Promise<Obtained> {
  const from = options.from;
  const isUrl = (s: string) => /^https?:\/\//i.test(s);
  if (from !== undefined && !isUrl(from)) {
    const path = resolve(from);
    const info = await stat(path).catch(() => undefined);
    if (!info) throw new CifarError('USAGE', `--from ${from}: no such file or folder`);
    if (!info.isFile() && !info.isDirectory()) throw new CifarError('USAGE', `--from ${from}: neither a file nor a folder`);
    if (info.isDirectory() && options.md5) throw new CifarError('USAGE', `--md5 checks an archive, and --from ${from} is a folder`);
    if (options.md5) await verifyMd5(path, options.md5, from, options);
    return { archive: path, folder: info.isDirectory(), source: path, md5: options.md5?.toLowerCase(), downloaded: false };
  }
  const url = from ?? options.url ?? OFFICIAL_URL;
  const md5 = options.md5 ?? KNOWN_MD5[url];
  const cache = join(dir, '.downloads');
  await mkdir(cache, { recursive: true }).catch((err) => {
    throw fromSystemError(err, cache);
  });
  const name = basename(new URL(url).pathname) || 'archive';
  const part = join(cache, `${createHash('sha1').update(url).digest('hex').slice(0, 8)}-${name}.part`);
  const got = await fetchToFile(url, part, {
    ...options.fetch,
    signal: options.signal,
    onProgress: (bytes, total) => options.onProgress?.('download', bytes, total),
    onRetry: (reason, attempt, delay) => options.onNote?.(`download interrupted (${reason}); retry ${attempt} in ${delay / 1000}s`),
  });
  if (got.resumed) options.onNote?.('resumed a partial download');
  if (md5) {
    try {
      await verifyMd5(part, md5, url, options);
    } catch (err) {
      // A corrupt download must not be resumed next time.
      await rm(part, { force: true });
      throw err;
    }
  }
  return { archive: part, folder: false, source: url, md5: md5?.toLowerCase(), downloaded: true };
}

async function verifyMd5(path: string, expected: string, label: string, options: DownloadOptions): Promise<void> {
  if (!/^[0-9a-f]{32}$/i.test(expected)) throw new CifarError('USAGE', `--md5 ${expected}: expected 32 hexadecimal digits`);
  const hash = createHash('md5');
  let done = 0;
  const total = (await stat(path)).size;
  for await (const chunk of createReadStream(path, { signal: options.signal })) {
    hash.update(chunk as Buffer);
    done += (chunk as Buffer).length;
    options.onProgress?.('checksum', done, total);
  }
  const actual = hash.digest('hex');
  if (actual !== expected.toLowerCase()) {
    throw new CifarError('CHECKSUM_MISMATCH', `${label}: md5 ${actual} does not match the expected ${expected.toLowerCase()}`, {
      hint: 'the file is corrupt or not the archive you meant; nothing was installed',
    });
  }
}

/** Put `tmp` at `target`, keeping any earlier dataset until the new one is in place. */
async function swapInto(tmp: string, target: string): Promise<void> {
  const old = `${target}.old-${process.pid}`;
  const hadOld = await stat(target).then(() => true, () => false);
  if (hadOld) await rename(target, old);
  try {
    await rename(tmp, target);
  } catch (err) {
    if (hadOld) await rename(old, target);
    throw err;
  }
  if (hadOld) await rm(old, { recursive: true, force: true });
}

function metaText(): string {
  return CLASSES.join('\n') + '\n\n';
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new CifarError('ABORTED', 'interrupted');
}
