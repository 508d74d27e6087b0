import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadSplit, TEST_FILES, TRAIN_FILES } from '../../src/data/cifar-binary.js';
import { readArchive } from '../../src/data/archive.js';
import { downloadDataset } from '../../src/data/download.js';
import { binaryLayoutFiles, imageFolderFiles, makeImageFolderArchive, makeRecords, makeZip, standardImages, tempDir } from '../helpers/fixtures.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(() => cleanup());

const data = (name = 'data') => join(dir, name);
const importFrom = (from: string, name?: string) => downloadDataset({ dir: data(name), from });
const batchFiles = [...TRAIN_FILES, ...TEST_FILES];

/** Nothing but the download cache may be left in the data folder after a failed import. */
async function nothingInstalled(): Promise<void> {
  await expect(stat(join(data(), 'cifar-10-batches-bin'))).rejects.toThrow();
  expect((await readdir(data()).catch(() => [] as string[])).filter((n) => n !== '.downloads')).toEqual([]);
}

/** The offset of a zip's first central-directory record ("PK\1\2"), where its entry's flags live. */
function firstCentralRecord(zip: Buffer): number {
  const at = zip.indexOf(Buffer.from([0x50, 0x4b, 1, 2]));
  expect(at).toBeGreaterThan(0);
  return at;
}

describe('zip archives', () => {
  it('imports an image-folder zip, plain and zip64, into the same batch files as a tar.gz of the same images', async () => {
    const images = await standardImages(2);
    const fromTar = await importFrom(await makeImageFolderArchive(dir, 'imgs.tgz', images), 'from-tar');
    for (const zip64 of [false, true]) {
      const zip = await makeZip(dir, `imgs-${zip64}.zip`, imageFolderFiles(images), true, zip64);
      expect((await readFile(zip)).includes(Buffer.from([0x50, 0x4b, 6, 6])), 'a zip64 end record').toBe(zip64);
      const fromZip = await importFrom(zip, `from-zip-${zip64}`);
      expect(fromZip.format).toBe('image-folder');
      expect(fromZip.counts).toEqual({ train: 20, test: 20 });
      for (const f of batchFiles) {
        expect(Buffer.compare(await readFile(join(fromZip.path, f)), await readFile(join(fromTar.path, f))), `${f}, zip64 ${zip64}`).toBe(0);
      }
    }
  });

  it('imports the binary layout from a zip of stored (uncompressed) entries, with folder entries, a symlink and Finder junk skipped', async () => {
    const files: Parameters<typeof makeZip>[2] = { 'cifar-10-batches-bin/': Buffer.alloc(0), '__MACOSX/cifar-10-batches-bin/._test_batch.bin': Buffer.from('junk') };
    for (const [name, bytes] of Object.entries(binaryLayoutFiles())) files[`cifar-10-batches-bin/${name}`] = bytes;
    // A link named like a batch file would clash with the real one if it were read as a file.
    files['elsewhere/data_batch_1.bin'] = { data: Buffer.from('../cifar-10-batches-bin/data_batch_1.bin'), mode: 0o120777 };
    const result = await importFrom(await makeZip(dir, 'bin.zip', files, false));
    expect(result.format).toBe('binary');
    const test = await loadSplit(result.path, 'test');
    expect(test.count).toBe(20);
    expect(Buffer.from(test.labels)).toEqual(Buffer.from(Array.from({ length: 20 }, (_, r) => makeRecords(20, 6)[r * 3073]!)));
  });

  it('refuses an entry whose bytes do not match its CRC-32, naming it, and installs nothing', async () => {
    const zip = await readFile(await makeZip(dir, 'good.zip', imageFolderFiles(await standardImages(1)), false));
    // Stored entries: flip one byte inside the first file's data (its name starts 30 bytes in).
    const nameLength = zip.readUInt16LE(26);
    const damaged = Buffer.from(zip);
    damaged[30 + nameLength + zip.readUInt16LE(28) + 40]! ^= 0xff;
    const file = join(dir, 'damaged.zip');
    await writeFile(file, damaged);
    const first = zip.toString('latin1', 30, 30 + nameLength);
    await expect(importFrom(file)).rejects.toMatchObject({ code: 'ARCHIVE_INVALID', message: `${file}: archive is corrupt (${first} does not match its CRC-32)` });
    await nothingInstalled();
  });

  it('refuses a deflated entry that inflates to more or fewer bytes than its directory says', async () => {
    const zip = await readFile(await makeZip(dir, 'good.zip', imageFolderFiles(await standardImages(1))));
    const at = firstCentralRecord(zip);
    const name = zip.toString('latin1', at + 46, at + 46 + zip.readUInt16LE(at + 28));
    const size = zip.readUInt32LE(at + 24);
    for (const [claimed, reason] of [
      [size - 10, `${name} inflates to more than the ${size - 10} bytes its directory says`],
      [size + 10, `${name} holds ${size} bytes, its directory says ${size + 10}`],
    ] as const) {
      const lying = Buffer.from(zip);
      lying.writeUInt32LE(claimed, at + 24);
      const file = join(dir, `lying-${claimed}.zip`);
      await writeFile(file, lying);
      await expect(importFrom(file)).rejects.toMatchObject({ code: 'ARCHIVE_INVALID', message: `${file}: archive is corrupt (${reason})` });
    }
    await nothingInstalled();
  });

  it('reads a zip too large to hold whole entry by entry from the file, with the same entries and checks', async () => {
    const files = binaryLayoutFiles();
    const zip = await makeZip(dir, 'bin.zip', Object.fromEntries(Object.entries(files).map(([n, b]) => [`cifar-10-batches-bin/${n}`, b])));
    const whole = await readArchive(zip);
    const fromFile = await readArchive(zip, { wholeZipBytes: 0 });
    expect([...fromFile.keys()].sort()).toEqual([...whole.keys()].sort());
    for (const [name, bytes] of whole) expect(Buffer.compare(fromFile.get(name)!, bytes), name).toBe(0);
    // A flipped byte in the first entry's data is still caught by its CRC-32.
    const damaged = await readFile(zip);
    damaged[200] = damaged[200]! ^ 0xff;
    await writeFile(zip, damaged);
    await expect(readArchive(zip, { wholeZipBytes: 0 })).rejects.toMatchObject({ code: 'ARCHIVE_INVALID' });
  });

  it('says a cut-off zip is truncated', async () => {
    const zip = await readFile(await makeZip(dir, 'good.zip', imageFolderFiles(await standardImages(1))));
    const file = join(dir, 'cut.zip');
    await writeFile(file, zip.subarray(0, Math.floor(zip.length * 0.7)));
    await expect(importFrom(file)).rejects.toMatchObject({ code: 'ARCHIVE_INVALID', message: expect.stringContaining(`${file}: archive is truncated (`) });
    await nothingInstalled();
  });

  it('refuses encrypted entries and compression methods other than store and deflate, naming the entry', async () => {
    const zip = await readFile(await makeZip(dir, 'good.zip', imageFolderFiles(await standardImages(1))));
    const at = firstCentralRecord(zip);
    const name = zip.toString('latin1', at + 46, at + 46 + zip.readUInt16LE(at + 28));
    const encrypted = Buffer.from(zip);
    encrypted.writeUInt16LE(zip.readUInt16LE(at + 8) | 1, at + 8);
    await writeFile(join(dir, 'locked.zip'), encrypted);
    await expect(importFrom(join(dir, 'locked.zip'))).rejects.toMatchObject({ code: 'ARCHIVE_UNSUPPORTED', message: expect.stringContaining(`${name} is encrypted`) });
    const bzip2 = Buffer.from(zip);
    bzip2.writeUInt16LE(12, at + 10);
    await writeFile(join(dir, 'bzip2.zip'), bzip2);
    await expect(importFrom(join(dir, 'bzip2.zip'))).rejects.toMatchObject({ code: 'ARCHIVE_UNSUPPORTED', message: expect.stringContaining(`${name} uses zip compression method 12`) });
    await nothingInstalled();
  });

  it('says an empty zip holds no files', async () => {
    const file = await makeZip(dir, 'empty.zip', { 'only-a-folder/': Buffer.alloc(0) });
    await expect(importFrom(file)).rejects.toMatchObject({ code: 'ARCHIVE_INVALID', message: `${file}: the archive holds no files` });
  });
});
