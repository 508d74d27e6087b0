import { posix } from 'node:path';
import { CifarError } from '../errors.js';
import { BATCH_FILES, META_FILE, type SplitName } from './cifar-binary.js';
import { CLASSES, classIndex } from './classes.js';

/**
 * The official binary release (`binary`: data_batch_1.bin …) or its "python version" (`python`:
 * data_batch_1 … as pickles, what torchvision downloads): the six batch files, found in one
 * folder of the archive.
 */
export interface BinaryLayout {
  kind: 'binary' | 'python';
  /** Archive path of each batch file, by the binary release's file name (data_batch_1.bin …). */
  files: Record<string, string>;
  /** Archive path of batches.meta.txt when present (binary release only). */
  meta: string | undefined;
}

export interface ImageFile {
  /** Path inside the archive, for error messages. */
  path: string;
  label: number;
}

/** An image-folder archive: `<root>/{train,test}/<class>/<image>`. */
export interface ImageFolderLayout {
  kind: 'image-folder';
  root: string;
  splits: Record<SplitName, ImageFile[]>;
}

export type ArchiveLayout = BinaryLayout | ImageFolderLayout;

/** One collator for natural file order: `localeCompare` with options builds one per call, 5 s for 60,000 unsorted paths. */
const NATURAL = new Intl.Collator('en', { numeric: true });

const BATCH_RE = /^(data_batch_[1-5]|test_batch)\.bin$/;
const PYTHON_BATCH_RE = /^(data_batch_[1-5]|test_batch)$/;
const IMAGE_RE = /^(?:(.*)\/)?(train|test)\/([^/]+)\/([^/]+)$/;

/** Files that archivers add and nobody means as data. */
function isJunk(path: string): boolean {
  return path.split('/').some((part) => part.startsWith('.') || part === '__MACOSX' || part === 'Thumbs.db');
}

/**
 * Tell from the paths of an archive's (or a folder's) files which layout it has: the binary
 * release (batch files) or an image folder (train/test/<class>/...). The name of the archive
 * plays no part, nor do the files' contents.
 */
export function detectLayout(files: Iterable<string>, source: string): ArchiveLayout {
  const paths = [...files].filter((p) => !isJunk(p));
  const batches = paths.filter((p) => BATCH_RE.test(posix.basename(p)));
  if (batches.length > 0) return binaryLayout('binary', batches, paths, source);
  const pickles = paths.filter((p) => PYTHON_BATCH_RE.test(posix.basename(p)));
  if (pickles.length > 0) return binaryLayout('python', pickles, paths, source);
  const images = paths.map((p) => ({ p, m: IMAGE_RE.exec(p) })).filter((x) => x.m !== null);
  if (images.length > 0) return imageFolderLayout(images as { p: string; m: RegExpExecArray }[], source);
  throw new CifarError(
    'ARCHIVE_INVALID',
    `${source}: neither the CIFAR-10 binary release (data_batch_1.bin … test_batch.bin), its python version (data_batch_1 … test_batch) nor an image folder (<root>/train/<class>/<image>) is in it`,
  );
}

function binaryLayout(kind: BinaryLayout['kind'], batches: string[], paths: string[], source: string): BinaryLayout {
  const folders = new Set(batches.map((p) => posix.dirname(p)));
  if (folders.size > 1) {
    throw new CifarError('ARCHIVE_INVALID', `${source}: batch files in more than one folder (${fewOf([...folders].sort())})`);
  }
  const folder = [...folders][0]!;
  const name = (f: string) => (kind === 'python' ? f.replace(/\.bin$/, '') : f);
  const join = (f: string) => (folder === '.' ? name(f) : `${folder}/${name(f)}`);
  const missing = BATCH_FILES.filter((f) => !batches.includes(join(f)));
  if (missing.length > 0) {
    throw new CifarError('ARCHIVE_INVALID', `${source}: incomplete CIFAR-10 ${kind === 'python' ? 'python version' : 'binary release'}, missing ${missing.map(name).join(', ')}`);
  }
  const meta = kind === 'binary' && paths.includes(join(META_FILE)) ? join(META_FILE) : undefined;
  return { kind, files: Object.fromEntries(BATCH_FILES.map((f) => [f, join(f)])), meta };
}

function imageFolderLayout(images: { p: string; m: RegExpExecArray }[], source: string): ImageFolderLayout {
  const roots = new Set(images.map(({ m }) => m[1] ?? ''));
  if (roots.size > 1) {
    throw new CifarError('ARCHIVE_INVALID', `${source}: more than one image-folder root (${fewOf([...roots].map((r) => r || '.').sort())})`);
  }
  const root = [...roots][0]!;
  const splits: Record<SplitName, ImageFile[]> = { train: [], test: [] };
  for (const { p, m } of images) {
    const split = m[2] as SplitName;
    const cls = m[3]!;
    const label = classIndex(cls);
    if (label < 0) {
      throw new CifarError(
        'UNKNOWN_CLASS',
        `${p}: class folder "${split}/${cls}" is not one of the ten CIFAR-10 classes (${CLASSES.join(', ')})`,
      );
    }
    splits[split].push({ path: p, label });
  }
  for (const split of ['train', 'test'] as const) {
    const seen = new Set(splits[split].map((f) => f.label));
    const absent = CLASSES.filter((_, i) => !seen.has(i));
    if (absent.length === CLASSES.length) {
      throw new CifarError('ARCHIVE_INVALID', `${source}: the image folder has no ${split}/ split`);
    }
    if (absent.length > 0) {
      throw new CifarError('ARCHIVE_INVALID', `${source}: ${split}/ has no images of ${absent.join(', ')}`);
    }
    // Class order, then natural file order (2.png before 10.png): the official order within a class.
    splits[split].sort((a, b) => a.label - b.label || NATURAL.compare(a.path, b.path));
  }
  return { kind: 'image-folder', root, splits };
}

/** The paths of the files a layout reads: its batch files (and meta file), or its images. */
export function layoutFiles(layout: ArchiveLayout): string[] {
  if (layout.kind !== 'image-folder') return [...Object.values(layout.files), ...(layout.meta ? [layout.meta] : [])];
  return [...layout.splits.train, ...layout.splits.test].map((f) => f.path);
}

/** The first three names and how many more: an error stays one readable line. */
function fewOf(names: string[]): string {
  return names.length <= 3 ? names.join(', ') : `${names.slice(0, 3).join(', ')} and ${names.length - 3} more`;
}
