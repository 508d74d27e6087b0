import { createReadStream } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { crc32, inflateRawSync } from 'node:zlib';
import * as tar from 'tar';
import yauzl from 'yauzl';
import { CifarError, fromSystemError } from '../errors.js';

/** Files of an archive held in memory, by normalised path ("a/b/c.png", no leading "./"). */
export type ArchiveEntries = Map<string, Buffer>;

export interface ReadArchiveOptions {
  signal?: AbortSignal;
  /** Called with the number of archive bytes consumed so far. */
  onBytes?: (bytes: number) => void;
  /** Most bytes the files may unpack to, all together (default `MAX_UNPACKED_BYTES`). */
  maxBytes?: number;
  /** A zip larger than this is read entry by entry from the file instead of whole (default: 2 GiB, `readFile`'s limit). */
  wholeZipBytes?: number;
}

/**
 * The default limit on what a source may unpack to. Sources are held in memory; the binary
 * release unpacks to 184 MB and our JPEG image folder of CIFAR-10 to 55 MB, so 4 GiB leaves room
 * for image folders of larger pictures while a gzip or zip bomb is refused before it fills the
 * memory.
 */
export const MAX_UNPACKED_BYTES = 4 * 1024 ** 3;

/**
 * Counts the bytes a source's files unpack to, throwing a one-line error once they pass the limit.
 * Each file's size is added before its bytes are read, so the refusal comes before the memory
 * is used.
 */
export function unpackedBudget(source: string, maxBytes = MAX_UNPACKED_BYTES): (name: string, bytes: number) => void {
  let total = 0;
  return (name, bytes) => {
    total += bytes;
    if (total > maxBytes) {
      throw new CifarError(
        'ARCHIVE_UNSUPPORTED',
        `${source}: unpacks to more than ${formatBytes(maxBytes)} (passed at ${name}); sources are held in memory`,
        { hint: 'if this is intended, raise the limit with --max-unpacked-bytes' },
      );
    }
  };
}

function formatBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1 && Number.isInteger(n / 1024)) {
    n /= 1024;
    i++;
  }
  return `${n.toLocaleString('en')} ${units[i]}`;
}

/**
 * Read every regular file of a tar, tar.gz or zip archive into memory; the kind is told from the
 * file's first bytes, not its name. Entry names are never used as paths on disk, so a hostile
 * archive cannot write outside our folder. CIFAR-10 archives are 20–180 MB unpacked, well within
 * memory, and holding them lets us detect the layout from the content before anything is written.
 */
export async function readArchive(path: string, options: ReadArchiveOptions = {}): Promise<ArchiveEntries> {
  const entries = (await archiveKind(path)) === 'zip' ? await readZip(path, options) : await readTar(path, options);
  if (entries.size === 0) throw new CifarError('ARCHIVE_INVALID', `${path}: the archive holds no files`);
  return entries;
}

async function readTar(path: string, options: ReadArchiveOptions): Promise<ArchiveEntries> {
  const entries: ArchiveEntries = new Map();
  const count = unpackedBudget(path, options.maxBytes);
  const source = createReadStream(path);
  const parser = new tar.Parser({
    strict: true,
    onReadEntry: (entry) => {
      if (entry.type !== 'File' && entry.type !== 'OldFile') {
        entry.resume();
        return;
      }
      try {
        // The header's size is what the parser will hand over for this entry, whatever gzip inflates to.
        count(entry.path, entry.size);
      } catch (err) {
        source.destroy(err as Error);
        entry.resume();
        return;
      }
      const chunks: Buffer[] = [];
      entry.on('data', (c: Buffer) => chunks.push(c));
      entry.on('end', () => entries.set(normalise(entry.path), Buffer.concat(chunks)));
    },
  });
  let consumed = 0;
  source.on('data', (chunk) => {
    consumed += chunk.length;
    options.onBytes?.(consumed);
  });
  let sawEnd = false;
  parser.on('end', () => (sawEnd = true));
  try {
    await pipeline(source, parser as unknown as NodeJS.WritableStream, { signal: options.signal });
  } catch (err) {
    throw err instanceof CifarError ? err : archiveError(path, err);
  }
  if (!sawEnd) throw new CifarError('ARCHIVE_INVALID', `${path}: archive ended early (truncated?)`);
  return entries;
}

/** `readFile` takes at most 2 GiB. */
const WHOLE_ZIP_BYTES = 2 ** 31 - 1;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

/**
 * A zip's regular files, each checked against the CRC-32 its directory records (deflate itself
 * carries no checksum, so this is what catches a damaged entry). Folders and symbolic links are
 * skipped; an encrypted entry or a compression method other than store and deflate is refused.
 */
async function readZip(path: string, options: ReadArchiveOptions): Promise<ArchiveEntries> {
  const { signal, onBytes } = options;
  const count = unpackedBudget(path, options.maxBytes);
  let zip: yauzl.ZipFile;
  try {
    signal?.throwIfAborted();
    const zipOptions = { lazyEntries: true, validateEntrySizes: true, strictFileNames: false };
    // Read whole, like the tar path's entries: 60,000 small entries read from the file one by one
    // took twice as long as the same images from a tar.gz. A zip too large for one buffer is read
    // from the file.
    zip = (await stat(path)).size > (options.wholeZipBytes ?? WHOLE_ZIP_BYTES)
      ? await yauzl.openPromise(path, zipOptions)
      : await yauzl.fromBufferPromise(await readFile(path, { signal }), zipOptions);
  } catch (err) {
    throw archiveError(path, err);
  }
  const entries: ArchiveEntries = new Map();
  let consumed = 0;
  try {
    await new Promise<void>((resolvePromise, reject) => {
      const fail = (err: unknown) => {
        signal?.removeEventListener('abort', onAbort);
        zip.close();
        reject(err);
      };
      const onAbort = () => fail(signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      zip.on('error', fail);
      zip.on('end', () => {
        signal?.removeEventListener('abort', onAbort);
        onBytes?.(zip.fileSize); // the headers and directory too: the whole file is read
        resolvePromise();
      });
      zip.on('entry', (entry: yauzl.Entry) => {
        const mode = (entry.externalFileAttributes >>> 16) & S_IFMT;
        if (entry.fileName.endsWith('/') || mode === S_IFLNK) {
          zip.readEntry();
          return;
        }
        if (entry.isEncrypted()) {
          fail(new CifarError('ARCHIVE_UNSUPPORTED', `${path}: ${entry.fileName} is encrypted; give an archive without a password`));
          return;
        }
        if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
          fail(new CifarError('ARCHIVE_UNSUPPORTED', `${path}: ${entry.fileName} uses zip compression method ${entry.compressionMethod}; only stored and deflated entries are read (re-create the zip with the default settings, or give a .tar.gz)`));
          return;
        }
        try {
          // Inflation is capped at the directory's size below, so this counts what will be held.
          count(entry.fileName, entry.uncompressedSize);
        } catch (err) {
          fail(err);
          return;
        }
        // The raw bytes, inflated here in one call: a stream per small entry costs more than the inflation.
        zip.openReadStream(entry, { decompress: entry.compressionMethod === 8 ? false : null }, (err, stream) => {
          if (err) return fail(err);
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('error', fail);
          stream.on('end', () => {
            let data = Buffer.concat(chunks);
            if (entry.compressionMethod === 8) {
              try {
                // One byte more than the directory says, so that an entry inflating to more is caught, not followed.
                data = inflateRawSync(data, { maxOutputLength: entry.uncompressedSize + 1 });
              } catch (inflateErr) {
                const tooLarge = (inflateErr as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
                const reason = tooLarge ? `inflates to more than the ${entry.uncompressedSize} bytes its directory says` : String((inflateErr as Error).message);
                fail(new CifarError('ARCHIVE_INVALID', `${path}: archive is corrupt (${entry.fileName} ${reason})`, { cause: inflateErr }));
                return;
              }
            }
            if (data.length !== entry.uncompressedSize) {
              fail(new CifarError('ARCHIVE_INVALID', `${path}: archive is corrupt (${entry.fileName} holds ${data.length} bytes, its directory says ${entry.uncompressedSize})`));
              return;
            }
            if (crc32(data) >>> 0 !== entry.crc32 >>> 0) {
              fail(new CifarError('ARCHIVE_INVALID', `${path}: archive is corrupt (${entry.fileName} does not match its CRC-32)`));
              return;
            }
            entries.set(normalise(entry.fileName), data);
            consumed += entry.compressedSize;
            onBytes?.(consumed);
            zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  } catch (err) {
    throw err instanceof CifarError ? err : archiveError(path, err);
  }
  return entries;
}

function normalise(p: string): string {
  return p.replace(/\\/g, '/').replace(/^(\.\/)+/, '').replace(/^\/+/, '');
}

async function archiveKind(path: string): Promise<'zip' | 'tar'> {
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
  // "PK\3\4" opens a zip's first entry, "PK\5\6" an empty zip's end record.
  if (head[0] === 0x50 && head[1] === 0x4b && (head[2] === 3 || head[2] === 5)) return 'zip';
  const gzip = head[0] === 0x1f && head[1] === 0x8b;
  const ustar = read >= 262 && head.toString('latin1', 257, 262) === 'ustar';
  if (!gzip && !ustar) {
    throw new CifarError('ARCHIVE_INVALID', `${path}: not a tar, tar.gz or zip archive`);
  }
  return 'tar';
}

function archiveError(path: string, err: unknown): CifarError {
  const e = err as NodeJS.ErrnoException & { tarCode?: string };
  if (e?.name === 'AbortError' || e?.code === 'ABORT_ERR') return fromSystemError(err, path);
  if (e?.code === 'ENOSPC' || e?.code === 'EACCES' || e?.code === 'ENOENT') return fromSystemError(err, path);
  const reason = String(e?.message ?? err).split('\n')[0] ?? '';
  // tar: the stream ends early; zip: its directory, at the end, is lost or points past the end.
  const truncated = /unexpected end|truncated|end of central directory|past end|end of file|unexpected EOF/i.test(reason);
  return new CifarError(
    'ARCHIVE_INVALID',
    `${path}: ${truncated ? 'archive is truncated' : 'archive is corrupt'} (${reason})`,
    { cause: err },
  );
}
