import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { binaryLayoutFiles, makeBinaryArchive, makeZip, tempDir } from '../helpers/fixtures.js';
import { runCli } from '../helpers/cli.js';
import { startFileServer } from '../helpers/server.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(() => cleanup());

const noStack = (s: string) => expect(s).not.toMatch(/^\s+at /m);

describe('cifar download (CLI)', () => {
  it('imports a local archive, prints one JSON object with --json and plain progress lines on a non-TTY', async () => {
    const archive = await makeBinaryArchive(dir, 'a.tgz');
    const res = await runCli(['download', '--dir', join(dir, 'data'), '--from', archive, '--json']);
    expect(res.code).toBe(0);
    const out = JSON.parse(res.stdout);
    expect(out).toMatchObject({ counts: { train: 100, test: 20 }, alreadyPresent: false, format: 'binary' });
    expect(Object.keys(out.sha256)).toHaveLength(6);
    expect(out.perClass.test.airplane).toBe(2);
    expect(typeof out.seconds).toBe('number');
    expect(res.stderr).toMatch(/^extract: /m);
    expect(res.stderr).not.toMatch(/\x1b\[/);
  });

  it('says the dataset is already there and exits 0 on a second run', async () => {
    const archive = await makeBinaryArchive(dir, 'a.tgz');
    const args = ['download', '--dir', join(dir, 'data'), '--from', archive];
    expect((await runCli(args)).code).toBe(0);
    const again = await runCli(args);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/already complete/);
  });

  it('prints nothing on stderr with --quiet', async () => {
    const archive = await makeBinaryArchive(dir, 'a.tgz');
    const res = await runCli(['download', '--dir', join(dir, 'data'), '--from', archive, '--quiet']);
    expect(res.code).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.stdout).toMatch(/train 100, test 20/);
  });

  it('exits 1 with one error line and no stack on an md5 mismatch', async () => {
    const archive = await makeBinaryArchive(dir, 'a.tgz');
    const res = await runCli(['download', '--dir', join(dir, 'data'), '--from', archive, '--md5', 'f'.repeat(32), '--quiet']);
    expect(res.code).toBe(1);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stderr).toMatch(/^error: .*md5 [0-9a-f]{32} does not match the expected f{32}/);
    noStack(res.stderr);
    expect(existsSync(join(dir, 'data', 'cifar-10-batches-bin'))).toBe(false);
  });

  it('imports a zip, and exits 1 with one line naming the entry when a zip entry is damaged', async () => {
    const files = Object.fromEntries(Object.entries(binaryLayoutFiles()).map(([name, bytes]) => [`cifar/${name}`, bytes]));
    const zip = await makeZip(dir, 'a.zip', files, false);
    const ok = await runCli(['download', '--dir', join(dir, 'data'), '--from', zip, '--quiet']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/train 100, test 20/);
    const damaged = await readFile(zip);
    damaged[30 + damaged.readUInt16LE(26) + 100]! ^= 1; // a byte of the first entry's (stored) records
    await writeFile(join(dir, 'bad.zip'), damaged);
    const bad = await runCli(['download', '--dir', join(dir, 'other'), '--from', join(dir, 'bad.zip'), '--quiet']);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^error: .*bad\.zip: archive is corrupt \(cifar\/\S+\.(bin|txt) does not match its CRC-32\)$/m);
    noStack(bad.stderr);
    expect(existsSync(join(dir, 'other', 'cifar-10-batches-bin'))).toBe(false);
  });

  it('imports an unpacked folder, counting the files it reads', async () => {
    const folder = join(dir, 'unpacked', 'cifar-10-batches-bin');
    await mkdir(folder, { recursive: true });
    for (const [name, bytes] of Object.entries(binaryLayoutFiles())) await writeFile(join(folder, name), bytes);
    const res = await runCli(['download', '--dir', join(dir, 'data'), '--from', join(dir, 'unpacked')]);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/train 100, test 20/);
    expect(res.stderr).toMatch(/^read: started \(7\)$/m); // six batch files and batches.meta.txt
  });

  it('--max-unpacked-bytes: a source that unpacks to more exits 1 with one line and the flag as the hint; a malformed value exits 2', async () => {
    const archive = await makeBinaryArchive(dir, 'a.tgz');
    const over = await runCli(['download', '--dir', join(dir, 'data'), '--from', archive, '--max-unpacked-bytes', '1000', '--quiet']);
    expect(over.code).toBe(1);
    expect(over.stderr.trim()).toMatch(/^error: .*a\.tgz: unpacks to more than 1,000 bytes \(passed at cifar-10-batches-bin\/[a-z_0-9.]+\); sources are held in memory — if this is intended, raise the limit with --max-unpacked-bytes$/);
    for (const bad of ['0', '4G', '-5']) {
      const res = await runCli(['download', '--dir', join(dir, 'data'), '--from', archive, '--max-unpacked-bytes', bad]);
      expect([res.code, res.stderr.trim()], bad).toEqual([2, `error: --max-unpacked-bytes ${bad}: expected a positive whole number of bytes`]);
    }
    const ok = await runCli(['download', '--dir', join(dir, 'data'), '--from', archive, '--max-unpacked-bytes', '400000', '--quiet']);
    expect(ok.code).toBe(0);
  });

  it('exits 2 on usage errors: a missing --from file, a malformed --md5, two sources', async () => {
    for (const args of [
      ['--from', join(dir, 'nope.tgz')],
      ['--md5', 'xyz'],
      ['--from', join(dir, 'x'), '--url', 'http://127.0.0.1:9/x'],
    ]) {
      const res = await runCli(['download', '--dir', join(dir, 'data'), ...args]);
      expect(res.code, args.join(' ')).toBe(2);
      expect(res.stderr.trim().split('\n')).toHaveLength(1);
    }
    const fifo = await runCli(['download', '--dir', join(dir, 'data'), '--from', '/dev/null']);
    expect([fifo.code, fifo.stderr.trim()]).toEqual([2, 'error: --from /dev/null: neither a file nor a folder']);
    const missing = await runCli(['download', '--dir', join(dir, 'data'), '--from', join(dir, 'nope.tgz')]);
    expect(missing.stderr.trim()).toBe(`error: --from ${join(dir, 'nope.tgz')}: no such file or folder`);
  });

  it('on Ctrl-C exits 130, installs nothing and keeps the partial download for a resume', async () => {
    const archive = await readFile(await makeBinaryArchive(dir, 'served.tgz'));
    const server = await startFileServer({ '/a.tgz': archive }, { stallAfterBytes: 2000 });
    const data = join(dir, 'data');
    try {
      const res = await runCli(['download', '--dir', data, '--url', `${server.url}/a.tgz`], {
        onStart: (child) => {
          const poll = setInterval(async () => {
            const parts = await readdir(join(data, '.downloads')).catch(() => []);
            const size = parts[0] ? (await stat(join(data, '.downloads', parts[0])).catch(() => ({ size: 0 }))).size : 0;
            if (size >= 2000) {
              clearInterval(poll);
              child.kill('SIGINT');
            }
          }, 50);
        },
      });
      expect(res.code).toBe(130);
      expect(res.stderr).toMatch(/^error: .*interrupted/m);
      noStack(res.stderr);
      expect(existsSync(join(data, 'cifar-10-batches-bin'))).toBe(false);
      expect((await readdir(data)).filter((n) => n.startsWith('.cifar'))).toEqual([]);
    } finally {
      await server.close();
    }
  });
});
