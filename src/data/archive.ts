import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import { CifarError, fromSystemError } from '../errors.js';

/** Files of an archive held in memory, by normalised path ("a/b/c.png", no leading "./"). */
export type ArchiveEntries = Map<string, Buffer>;

export interface ReadArchiveOptions {
  signal?: AbortSignal;
  /** Called with the number of archive bytes consumed so far. */
  onBytes?: (bytes: number) => void;
}

/**
 * Read every regular file of a tar or tar.gz archive into memory. Entry names are never used as
 * paths on disk, so a hostile archive cannot write outside our folder. CIFAR-10 archives are
 * 20–180 MB unpacked, well within memory, and holding them lets us detect the layout from the
 * content before anything is written.
 */
export async function readArchive(path: string, options: ReadArchiveOptions = {}): Promise<ArchiveEntries> {
  await checkMagic(path);
  const entries: ArchiveEntries = new Map();
  const parser = new tar.Parser({
    strict: true,
    onReadEntry: (entry) => {
      if (entry.type !== 'File' && entry.type !== 'OldFile') {
        entry.resume();
        return;
      }
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => entries.set(normalise(entry.path), Buffer.concat(chunks)));
    },
  });
  let consumed = 0;
  const source = createReadStream(path);
  source.on('data', (chunk) => {
    consumed += chunk.length;
    options.onBytes?.(consumed);
  });
  let sawEnd = false;
  parser.on('end', () => (sawEnd = true));
  try {
    await pipeline(source, parser as unknown as NodeJS.WritableStream, { signal: options.signal });
  } catch (err) {
    throw archiveError(path, err);
  }
  if (!sawEnd) throw new CifarError('ARCHIVE_INVALID', `${path}: archive ended early (truncated?)`);
  if (entries.size === 0) throw new CifarError('ARCHIVE_INVALID', `${path}: the archive holds no files`);
  return entries;
}

function normalise(p: string): string {
  return p.replace(/\\/g, '/').replace(/^(\.\/)+/, '').replace(/^\/+/, '');
}

async function checkMagic(path: string): Promise<void> {
  const head = Buffer.alloc(512);
  let read = 0;
  try {
    const fh = await open(path, 'r');
    try {
      read = (await fh.read(head, 0, 512, 0)).bytesRead;
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw fromSystemError(err, path);
  }
  if (read === 0) throw new CifarError('ARCHIVE_INVALID', `${path}: the file is empty`);
  if (head[0] === 0x50 && head[1] === 0x4b) {
    throw new CifarError('ARCHIVE_UNSUPPORTED', `${path}: zip archives are not supported; give a .tar or .tar.gz`);
  }
  const gzip = head[0] === 0x1f && head[1] === 0x8b;
  const ustar = read >= 262 && head.toString('latin1', 257, 262) === 'ustar';
  if (!gzip && !ustar) {
    throw new CifarError('ARCHIVE_INVALID', `${path}: not a tar or tar.gz archive`);
  }
}

function archiveError(path: string, err: unknown): CifarError {
  const e = err as NodeJS.ErrnoException & { tarCode?: string };
  if (e?.name === 'AbortError' || e?.code === 'ABORT_ERR') return fromSystemError(err, path);
  if (e?.code === 'ENOSPC' || e?.code === 'EACCES' || e?.code === 'ENOENT') return fromSystemError(err, path);
  const reason = String(e?.message ?? err).split('\n')[0] ?? '';
  const truncated = /unexpected end|truncated/i.test(reason);
  return new CifarError(
    'ARCHIVE_INVALID',
    `${path}: ${truncated ? 'archive is truncated' : 'archive is corrupt'} (${reason})`,
    { cause: err },
  );
}
