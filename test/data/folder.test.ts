import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadSplit, TEST_FILES, TRAIN_FILES } from '../../src/data/cifar-binary.js';
import { downloadDataset } from '../../src/data/download.js';
import { binaryLayoutFiles, imageFolderFiles, makeImageFolderArchive, standardImages, tempDir } from '../helpers/fixtures.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(() => cleanup());

const importFrom = (from: string, name = 'data', extra: { md5?: string } = {}) => downloadDataset({ dir: join(dir, name), from, ...extra });

/** Write `files` (path inside the folder → contents) under `dir/name`; returns the folder. */
async function writeFolder(name: string, files: Record<string, Buffer | Uint8Array>): Promise<string> {
  const root = join(dir, name);
  for (const [path, bytes] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), bytes);
  }
  return root;
}

describe('a folder as the source (an unpacked archive)', () => {
  it('imports an image folder into the same batch files as a tar.gz of it, dot-files ignored', async () => {
    // Twelve images a class, so that natural order (2.png before 10.png) differs from the directory's.
    const images = (await standardImages(12)).map((img) => ({ ...img, name: img.name.replace(/^(\d+)/, (n) => String(Number(n) * 7 % 12)) }));
    const fromTar = await importFrom(await makeImageFolderArchive(dir, 'imgs.tgz', images), 'from-tar');
    const folder = await writeFolder('unpacked', { ...imageFolderFiles(images), 'cifar-10-images/train/.DS_Store': Buffer.from('junk'), '.git/HEAD': Buffer.from('ref') });
    const fromFolder = await importFrom(folder, 'from-folder');
    expect(fromFolder).toMatchObject({ format: 'image-folder', counts: { train: 120, test: 120 }, source: folder });
    for (const f of [...TRAIN_FILES, ...TEST_FILES]) {
      expect(Buffer.compare(await readFile(join(fromFolder.path, f)), await readFile(join(fromTar.path, f))), f).toBe(0);
    }
  });

  it('imports the binary layout through symbolic links, ending a link loop', async () => {
    const files = Object.fromEntries(Object.entries(binaryLayoutFiles()).map(([name, bytes]) => [`real/${name}`, bytes]));
    const elsewhere = await writeFolder('elsewhere', files);
    const linked = join(dir, 'linked');
    await mkdir(join(linked, 'deep'), { recursive: true });
    await symlink(join(elsewhere, 'real'), join(linked, 'deep', 'cifar-10-batches-bin'));
    await symlink(linked, join(linked, 'deep', 'loop'));
    const result = await importFrom(linked);
    expect(result.format).toBe('binary');
    expect((await loadSplit(result.path, 'test')).count).toBe(20);
  });

  it('names at most three folders when batch files are in several', async () => {
    const files: Record<string, Uint8Array> = {};
    for (const copy of ['a', 'b', 'c', 'd', 'e']) for (const [name, bytes] of Object.entries(binaryLayoutFiles())) files[`${copy}/${name}`] = bytes;
    const folder = await writeFolder('copies', files);
    await expect(importFrom(folder)).rejects.toMatchObject({ message: `${folder}: batch files in more than one folder (a, b, c and 2 more)` });
  });

  it('says what is wrong with a folder that holds neither layout, or with --md5 for a folder', async () => {
    const empty = await writeFolder('empty', { 'notes.txt': Buffer.from('hello') });
    await expect(importFrom(empty)).rejects.toMatchObject({ code: 'ARCHIVE_INVALID', message: expect.stringMatching(/empty: neither the CIFAR-10 binary release .*, its python version .* nor an image folder .* is in it$/) });
    await expect(importFrom(empty, 'data', { md5: 'a'.repeat(32) })).rejects.toMatchObject({ code: 'USAGE', message: `--md5 checks an archive, and --from ${empty} is a folder` });
  });
});
