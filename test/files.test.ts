import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../src/files.js';
import { tempDir } from './helpers/fixtures.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(() => cleanup());

describe('writeFileAtomic', () => {
  it('replaces a file whole', async () => {
    const path = join(dir, 'out.json');
    await writeFile(path, 'old');
    await writeFileAtomic(path, 'new contents');
    expect(await readFile(path, 'utf8')).toBe('new contents');
    expect(await readdir(dir)).toEqual(['out.json']);
  });

  it('fails with one line naming the label, leaving no temporary file and the old contents', async () => {
    const path = join(dir, 'taken');
    await mkdir(path);
    await writeFile(join(path, 'inside'), 'kept');
    const err = await writeFileAtomic(path, 'x', '--out taken').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'IO', message: expect.stringMatching(/^--out taken: /) });
    expect((err as Error).message).not.toContain('\n');
    expect(await readdir(dir)).toEqual(['taken']);
    expect(await readFile(join(path, 'inside'), 'utf8')).toBe('kept');
    await expect(writeFileAtomic(join(dir, 'no', 'such', 'folder.png'), 'x')).rejects.toMatchObject({ code: 'IO', message: expect.stringContaining('no such file or directory') });
  });
});
