import { readFileSync, statSync } from 'node:fs';
import { opendir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fromSystemError, isCifarError } from '../errors.js';
import { unpackedBudget, type ArchiveEntries } from './archive.js';

/** The files found under a folder source: absolute path by path inside the folder. */
export type FolderFiles = Map<string, string>;

/**
 * Every regular file under `root`, by its path relative to it ("train/cat/0.png"), the way
 * `readArchive` names an archive's entries. Names starting with a dot (`.git`, `.DS_Store`, our
 * own `.downloads`) are not entered. Symbolic links are followed, each folder once, so a link
 * loop ends.
 */
export async function listFolder(root: string, signal?: AbortSignal): Promise<FolderFiles> {
  const files: FolderFiles = new Map();
  const seen = new Set<string>();
  const walk = async (folder: string, prefix: string): Promise<void> => {
    const info = await stat(folder);
    const id = `${info.dev}:${info.ino}`;
    if (seen.has(id)) return;
    seen.add(id);
    for await (const entry of await opendir(folder)) {
      signal?.throwIfAborted();
      if (entry.name.startsWith('.')) continue;
      const path = join(folder, entry.name);
      const name = `${prefix}${entry.name}`;
      const kind = entry.isSymbolicLink() ? await stat(path).catch(() => undefined) : entry;
      if (kind?.isDirectory()) await walk(path, `${name}/`);
      else if (kind?.isFile()) files.set(name, path);
    }
  };
  try {
    await walk(root, '');
  } catch (err) {
    throw fromSystemError(err, root);
  }
  return files;
}

/** Files read between two turns of the event loop (so that Ctrl-C and progress still run). */
const READ_CHUNK = 256;

/**
 * The contents of `names` (paths relative to the folder, as `listFolder` gives them). Read
 * synchronously, a chunk at a time: for 60,000 small images that took 0.35 s, against 6 s with
 * `fs.promises.readFile` 16 at a time (each read a round of the thread pool).
 */
export async function readFolderFiles(
  files: FolderFiles,
  names: Iterable<string>,
  options: { signal?: AbortSignal; onFiles?: (done: number, total: number) => void; source?: string; maxBytes?: number } = {},
): Promise<ArchiveEntries> {
  const wanted = [...names];
  const count = unpackedBudget(options.source ?? 'the folder', options.maxBytes);
  const entries: ArchiveEntries = new Map();
  for (let start = 0; start < wanted.length; start += READ_CHUNK) {
    await new Promise((resolve) => setImmediate(resolve));
    options.signal?.throwIfAborted();
    for (const name of wanted.slice(start, start + READ_CHUNK)) {
      const path = files.get(name)!;
      let bytes: Buffer;
      try {
        count(name, statSync(path).size);
        bytes = readFileSync(path);
      } catch (err) {
        throw isCifarError(err) ? err : fromSystemError(err, path);
      }
      entries.set(name, bytes);
    }
    options.onFiles?.(entries.size, wanted.length);
  }
  return entries;
}
