import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tar from 'tar';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BATCH_FILES } from '../../src/data/cifar-binary.js';
import { pythonBatchToRecords } from '../../src/data/cifar-python.js';
import { downloadDataset } from '../../src/data/download.js';
import { unpickle } from '../../src/data/pickle.js';
import { tempDir } from '../helpers/fixtures.js';

// Made by test/fixtures/cifar-python/make.py (numpy): six batches of 4 images in the official
// release's Python 2 form, the same batches as Python 3 writes them (protocols 2 and 5), and the
// records each holds in the binary format.
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'cifar-python');
const NAMES = BATCH_FILES.map((f) => f.replace(/\.bin$/, ''));
const fixture = (name: string) => readFile(join(FIXTURES, name));

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(() => cleanup());

/** A folder `cifar-10-batches-py/` of the batches `prefix` names, and batches.meta; returns its parent. */
async function batchesFolder(prefix = '', only = NAMES): Promise<string> {
  const folder = join(dir, 'src', 'cifar-10-batches-py');
  await mkdir(folder, { recursive: true });
  for (const name of only) await copyFile(join(FIXTURES, `${prefix}${name}`), join(folder, name));
  await copyFile(join(FIXTURES, 'batches.meta'), join(folder, 'batches.meta'));
  return join(dir, 'src');
}

describe('the CIFAR-10 python version', () => {
  it('reads each batch, in the release Python 2 form and as Python 3 writes it, as the records numpy holds', async () => {
    for (const name of NAMES) {
      const expected = await fixture(`${name}.expected.bin`);
      for (const prefix of ['', 'py3-protocol2-', 'py3-protocol5-']) {
        expect(Buffer.from(pythonBatchToRecords(await fixture(`${prefix}${name}`), name)).equals(expected), `${prefix}${name}`).toBe(true);
      }
    }
  });

  it('imports cifar-10-python.tar.gz (detected from its file names) into the binary records', async () => {
    const archive = join(dir, 'cifar-10-python.tar.gz');
    await batchesFolder();
    await tar.c({ gzip: true, file: archive, cwd: join(dir, 'src'), portable: true }, ['cifar-10-batches-py']);
    const result = await downloadDataset({ dir: join(dir, 'data'), from: archive });
    expect(result).toMatchObject({ format: 'python', counts: { train: 20, test: 4 } });
    for (const [i, file] of BATCH_FILES.entries()) {
      expect((await readFile(join(result.path, file))).equals(await fixture(`${NAMES[i]}.expected.bin`)), file).toBe(true);
    }
  });

  it('imports the folder torchvision leaves (--from DIR)', async () => {
    const result = await downloadDataset({ dir: join(dir, 'data'), from: await batchesFolder('py3-protocol5-') });
    expect(result).toMatchObject({ format: 'python', counts: { train: 20, test: 4 } });
    expect((await readFile(join(result.path, 'test_batch.bin'))).equals(await fixture('test_batch.expected.bin'))).toBe(true);
  });

  it('names a missing batch, and a batch that is not a CIFAR-10 pickle', async () => {
    const partial = await batchesFolder('', NAMES.filter((n) => n !== 'data_batch_3'));
    await expect(downloadDataset({ dir: join(dir, 'data'), from: partial })).rejects.toMatchObject({ code: 'ARCHIVE_INVALID', message: expect.stringContaining('incomplete CIFAR-10 python version, missing data_batch_3') });
    await writeFile(join(partial, 'cifar-10-batches-py', 'data_batch_3'), 'not a pickle');
    await expect(downloadDataset({ dir: join(dir, 'data'), from: partial })).rejects.toMatchObject({
      code: 'ARCHIVE_INVALID',
      message: `${partial}: cifar-10-batches-py/data_batch_3: not a pickle this reader takes (opcode 0x6e at byte 0)`,
    });
  });

  it('refuses a pickle that names a function other than numpy array parts, without running anything', () => {
    // What `pickle.dumps(os.system)`-style payloads look like: GLOBAL os system, a string, REDUCE.
    const evil = Buffer.from("\x80\x02cos\nsystem\nq\x00U\x05touchq\x01\x85q\x02Rq\x03.", 'latin1');
    expect(() => unpickle(evil, 'evil')).toThrow('evil: not a pickle this reader takes (it names os.system, which is not data)');
  });

  it('checks what the batch holds: uint8 rows of 3,072 bytes, one label 0–9 each', async () => {
    const release = await fixture('test_batch');
    const patched = (find: string, replace: string) => {
      const at = release.indexOf(Buffer.from(find, 'latin1'));
      expect(at).toBeGreaterThan(0);
      return Buffer.concat([release.subarray(0, at), Buffer.from(replace, 'latin1'), release.subarray(at + find.length)]);
    };
    expect(() => pythonBatchToRecords(patched('M\x00\x0c\x86', 'M\x00\x08\x86'), 'b')).toThrow('b: not a CIFAR-10 python batch ("data" has shape (4, 2048), not (N, 3072))');
    expect(() => pythonBatchToRecords(patched('U\x02u1', 'U\x02i2'), 'b')).toThrow('b: not a CIFAR-10 python batch ("data" holds i2, not uint8)');
    expect(() => pythonBatchToRecords(patched('labels]q\x08(K', 'labels]q\x08(K\x0bK'), 'b')).toThrow('b: not a CIFAR-10 python batch (5 labels for 4 images)');
    const first = release[release.indexOf(Buffer.from('labels]q\x08(K', 'latin1')) + 11]!;
    expect(() => pythonBatchToRecords(patched(`labels]q\x08(K${String.fromCharCode(first)}`, 'labels]q\x08(K\x0b'), 'b')).toThrow('b: not a CIFAR-10 python batch (label 11 of image 0 is not 0–9)');
    expect(() => pythonBatchToRecords(release.subarray(0, 5000), 'b')).toThrow('b: not a pickle this reader takes (it ends early)');
  });
});
