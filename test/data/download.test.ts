import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadSplit } from '../../src/data/cifar-binary.js';
import { downloadDataset, type DownloadOptions } from '../../src/data/download.js';
import { makeBinaryArchive, makeImageFolderArchive, makeRecords, tempDir } from '../helpers/fixtures.js';
import { startFileServer, type TestServer } from '../helpers/server.js';

let dir: string;
let cleanup: () => Promise<void>;
let server: TestServer | undefined;

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(async () => {
  await server?.close();
  server = undefined;
  await cleanup();
});

const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
const fast = { retries: 3, retryDelayMs: 10, idleTimeoutMs: 2000 };
const data = () => join(dir, 'data');
const download = (o: Omit<DownloadOptions, 'dir'>) => downloadDataset({ dir: data(), fetch: fast, ...o });

/** Everything in the data dir except the dataset and the download cache: must stay empty. */
async function leftovers(): Promise<string[]> {
  const names = await readdir(data()).catch(() => [] as string[]);
  return names.filter((n) => n !== 'cifar-10-batches-bin' && n !== '.downloads');
}

/** Partial downloads kept for a resume (the cache folder goes once it is empty). */
async function downloadsLeft(): Promise<string[]> {
  return readdir(join(data(), '.downloads')).catch(() => [] as string[]);
}

async function serveArchive(name = 'cifar.tar.gz', options = {}) {
  const archive = await readFile(await makeBinaryArchive(dir, name));
  server = await startFileServer({ [`/${name}`]: archive }, options);
  return { archive, url: `${server.url}/${name}` };
}

describe('download from a URL', () => {
  it('streams the archive, verifies its md5 and installs the binary batches', async () => {
    const { archive, url } = await serveArchive();
    const result = await download({ url, md5: md5(archive) });
    expect(result.counts).toEqual({ train: 100, test: 20 });
    expect(result.format).toBe('binary');
    expect(result.md5).toBe(md5(archive));
    const batch = await readFile(join(result.path, 'data_batch_1.bin'));
    expect(Buffer.compare(batch, Buffer.from(makeRecords(20, 1)))).toBe(0);
    expect(result.sha256['data_batch_1.bin']).toBe(createHash('sha256').update(batch).digest('hex'));
    expect(await leftovers()).toEqual([]);
    // The downloaded archive is not kept once installed.
    expect(await downloadsLeft()).toEqual([]);
  });

  it('fails on an md5 mismatch, installs nothing and discards the bad download', async () => {
    const { url } = await serveArchive();
    await expect(download({ url, md5: '0'.repeat(32) })).rejects.toMatchObject({ code: 'CHECKSUM_MISMATCH' });
    await expect(stat(join(data(), 'cifar-10-batches-bin'))).rejects.toThrow();
    expect(await leftovers()).toEqual([]);
    expect(await downloadsLeft()).toEqual([]);
  });

  it('resumes with a Range request after the connection drops mid-body', async () => {
    const { archive, url } = await serveArchive('a.tgz', { dropAfterBytes: 1000 });
    const notes: string[] = [];
    const result = await download({ url, md5: md5(archive), onNote: (m) => notes.push(m) });
    expect(result.counts.train).toBe(100);
    expect(server!.requests.map((r) => [r.range, r.status])).toEqual([
      [undefined, 200],
      ['bytes=1000-', 206],
    ]);
    expect(notes.join('\n')).toMatch(/retry 1/);
  });

  it('starts over when the server ignores Range, and still gets a valid archive', async () => {
    const { archive, url } = await serveArchive('a.tgz', { dropAfterBytes: 1000, ranges: false });
    const result = await download({ url, md5: md5(archive) });
    expect(result.counts.test).toBe(20);
    expect(server!.requests.map((r) => r.status)).toEqual([200, 200]);
  });

  it('continues a partial download left by an interrupted earlier run', async () => {
    const { archive, url } = await serveArchive('a.tgz', { stallAfterBytes: 1500 });
    const controller = new AbortController();
    const first = download({ url, md5: md5(archive), signal: controller.signal, onProgress: (phase, done) => phase === 'download' && done >= 1500 && setTimeout(() => controller.abort(), 100) });
    await expect(first).rejects.toMatchObject({ code: 'ABORTED' });
    expect(await leftovers()).toEqual([]);
    const [part] = await readdir(join(data(), '.downloads'));
    const kept = (await stat(join(data(), '.downloads', part!))).size;
    expect(kept).toBeGreaterThan(0);
    server!.options.stallAfterBytes = undefined;
    server!.requests.length = 0;
    const result = await download({ url, md5: md5(archive) });
    expect(result.counts.train).toBe(100);
    expect(server!.requests[0]).toMatchObject({ range: `bytes=${kept}-`, status: 206 });
  });

  it('follows redirects', async () => {
    const { archive } = await serveArchive('real.tgz', { redirects: { '/old.tgz': '/real.tgz' } });
    const result = await download({ url: `${server!.url}/old.tgz`, md5: md5(archive) });
    expect(result.counts.train).toBe(100);
    expect(server!.requests.map((r) => r.status)).toEqual([302, 200]);
  });

  it('retries 5xx answers with backoff, then succeeds', async () => {
    const { url } = await serveArchive('a.tgz', { failFirst: { times: 2, status: 503 } });
    const result = await download({ url });
    expect(result.counts.train).toBe(100);
    expect(server!.requests.map((r) => r.status)).toEqual([503, 503, 200]);
  });

  it('gives up with one clear NETWORK error when the server keeps failing', async () => {
    const { url } = await serveArchive('a.tgz', { failFirst: { times: 100, status: 500 } });
    await expect(download({ url })).rejects.toMatchObject({ code: 'NETWORK', message: expect.stringMatching(/server answered 500 \(gave up after 3 retries\)/) });
    expect(server!.requests).toHaveLength(4);
  });

  it('reports a 404 at once without retrying', async () => {
    const { url } = await serveArchive();
    await expect(download({ url: `${url}.missing` })).rejects.toMatchObject({ code: 'HTTP_STATUS', message: expect.stringContaining('404') });
    expect(server!.requests).toHaveLength(1);
  });
});

describe('idempotence and atomicity', () => {
  it('does nothing when a valid dataset is present, and redoes it with force', async () => {
    const { url } = await serveArchive();
    await download({ url });
    const again = await download({ url });
    expect(again.alreadyPresent).toBe(true);
    expect(again.counts).toEqual({ train: 100, test: 20 });
    expect(server!.requests).toHaveLength(1);
    const forced = await download({ url, force: true });
    expect(forced.alreadyPresent).toBe(false);
    expect(server!.requests).toHaveLength(2);
  });

  it('rebuilds a dataset whose files were damaged', async () => {
    const { url } = await serveArchive();
    const first = await download({ url });
    const { truncate } = await import('node:fs/promises');
    await truncate(join(first.path, 'data_batch_3.bin'), 5000);
    const notes: string[] = [];
    const again = await download({ url, onNote: (m) => notes.push(m) });
    expect(again.alreadyPresent).toBe(false);
    expect(notes.join()).toMatch(/data_batch_3\.bin.*rebuilding/);
  });

  it('a failed --force leaves the earlier valid dataset untouched', async () => {
    const good = await makeBinaryArchive(dir, 'good.tgz');
    const first = await download({ from: good });
    const before = await readFile(join(first.path, 'data_batch_2.bin'));
    const bad = await makeBinaryArchive(dir, 'bad.tgz', { override: { 'data_batch_4.bin': makeRecords(3).subarray(0, 5000) } });
    await expect(download({ from: bad, force: true })).rejects.toMatchObject({ code: 'DATASET_CORRUPT', message: expect.stringContaining('data_batch_4.bin') });
    expect(Buffer.compare(await readFile(join(first.path, 'data_batch_2.bin')), before)).toBe(0);
    expect((await download({})).alreadyPresent).toBe(true);
    expect(await leftovers()).toEqual([]);
  });

  it('rejects a truncated archive, naming the cause, and installs nothing', async () => {
    const good = await readFile(await makeBinaryArchive(dir, 'good.tgz'));
    const { writeFile } = await import('node:fs/promises');
    const cut = join(dir, 'cut.tgz');
    await writeFile(cut, good.subarray(0, Math.floor(good.length / 2)));
    await expect(download({ from: cut })).rejects.toMatchObject({ code: 'ARCHIVE_INVALID', message: expect.stringMatching(/truncated/) });
    await expect(stat(join(data(), 'cifar-10-batches-bin'))).rejects.toThrow();
    expect(await leftovers()).toEqual([]);
  });

  it('rejects an archive missing a batch file, naming it', async () => {
    const bad = await makeBinaryArchive(dir, 'bad.tgz', { override: { 'test_batch.bin': null } });
    await expect(download({ from: bad })).rejects.toMatchObject({ code: 'ARCHIVE_INVALID', message: expect.stringContaining('missing test_batch.bin') });
  });

  it('detects the layout from the content, whatever the file is called', async () => {
    const odd = await makeBinaryArchive(dir, 'photos.zip-not-really', { folder: 'some/nested/place' });
    const result = await download({ from: odd });
    expect(result.format).toBe('binary');
    const test = await loadSplit(result.path, 'test');
    expect(test.count).toBe(20);
  });

  it('reads the URL form of --from as well as a local path', async () => {
    const archive = await readFile(await makeImageFolderArchive(dir, 'f.tgz', await (await import('../helpers/fixtures.js')).standardImages(1)));
    server = await startFileServer({ '/f.tgz': archive });
    const result = await download({ from: `${server.url}/f.tgz` });
    expect(result.format).toBe('image-folder');
    expect(result.counts).toEqual({ train: 10, test: 10 });
  });
});
