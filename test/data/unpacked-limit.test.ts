import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MAX_UNPACKED_BYTES } from '../../src/data/archive.js';
import { downloadDataset } from '../../src/data/download.js';
import { binaryLayoutFiles, makeBinaryArchive, makeZip, tempDir } from '../helpers/fixtures.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(() => cleanup());

const importFrom = (from: string, maxUnpackedBytes: number, name: string) =>
  downloadDataset({ dir: join(dir, name), from, maxUnpackedBytes });

/** A binary-layout dataset plus 4 MiB of zeros, which deflate to a few KiB: a small bomb. */
const ZEROS = 4 * 1024 * 1024;
const bombFiles = () => binaryLayoutFiles({ override: { 'padding.bin': new Uint8Array(ZEROS) } });
const totalBytes = (files: Record<string, Uint8Array>) => Object.values(files).reduce((n, b) => n + b.length, 0);

async function nothingInstalled(name: string): Promise<void> {
  await expect(stat(join(dir, name, 'cifar-10-batches-bin'))).rejects.toThrow();
  expect((await readdir(join(dir, name)).catch(() => [] as string[])).filter((n) => n !== '.downloads')).toEqual([]);
}

describe('the limit on what a source unpacks to (--max-unpacked-bytes)', () => {
  it('is 4 GiB by default', () => {
    expect(MAX_UNPACKED_BYTES).toBe(4 * 1024 ** 3);
  });

  for (const kind of ['tar.gz', 'zip'] as const) {
    it(`counts every file of a ${kind}, and refuses one byte less with a line naming the file, installing nothing`, async () => {
      const files = bombFiles();
      const archive =
        kind === 'zip'
          ? await makeZip(dir, 'bomb.zip', Object.fromEntries(Object.entries(files).map(([n, b]) => [`cifar-10-batches-bin/${n}`, b])))
          : await makeBinaryArchive(dir, 'bomb.tar.gz', { override: { 'padding.bin': new Uint8Array(ZEROS) } });
      expect((await stat(archive)).size, 'the archive is far smaller than what it unpacks to').toBeLessThan(ZEROS / 8);
      const total = totalBytes(files);

      const err = await importFrom(archive, total - 1, 'small').catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'ARCHIVE_UNSUPPORTED', hint: expect.stringContaining('--max-unpacked-bytes') });
      expect((err as Error).message).toMatch(new RegExp(`unpacks to more than ${(total - 1).toLocaleString('en')} bytes \\(passed at cifar-10-batches-bin/[a-z_0-9.]+\\)`));
      expect((err as Error).message).not.toContain('\n');
      await nothingInstalled('small');

      const ok = await importFrom(archive, total, 'exact');
      expect(ok.counts).toEqual({ train: 100, test: 20 });
    });
  }

  it('counts only the files a folder source reads, refusing before the one that passes the limit', async () => {
    const root = join(dir, 'unpacked');
    const files = binaryLayoutFiles();
    await mkdir(join(root, 'cifar-10-batches-bin'), { recursive: true });
    for (const [name, bytes] of Object.entries(files)) await writeFile(join(root, 'cifar-10-batches-bin', name), bytes);
    // Not part of the layout, so never read or counted.
    await writeFile(join(root, 'cifar-10-batches-bin', 'padding.bin'), new Uint8Array(ZEROS));
    const total = totalBytes(files);

    const err = await importFrom(root, total - 1, 'small').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ARCHIVE_UNSUPPORTED' });
    expect((err as Error).message).toMatch(/^.*unpacked: unpacks to more than [0-9,]+ bytes \(passed at cifar-10-batches-bin\/[a-z_0-9.]+\)/);
    await nothingInstalled('small');
    expect((await importFrom(root, total, 'exact')).counts).toEqual({ train: 100, test: 20 });
  });
});
