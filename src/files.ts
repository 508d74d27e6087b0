import { rm, rename, writeFile } from 'node:fs/promises';
import { fromSystemError } from './errors.js';

/**
 * Write `data` to `path` through a temporary file beside it and a rename, so that a reader never
 * sees half a file and a failure (disk full, Ctrl-C) leaves the old file, if any, as it was. A
 * failure is a one-line CifarError naming `label` (default: the path).
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, label = path): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw fromSystemError(err, label);
  }
}
