import { spawn } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { BenchResult } from '../../src/bench/result.js';
import { tempDir } from '../helpers/fixtures.js';
import { startFakeApi, type FakeApi, type FakeApiOptions } from './fake-api.js';

import { CIFAR_BIN } from '../helpers/cli.js';

function cifarBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CIFAR_BIN, 'bench', '--data', dataDir, ...args], { env: { ...process.env, FORCE_COLOR: '0', CIFAR_DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let dataDir = '';
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir: dataDir, cleanup } = await tempDir('cifar-bench-cli-')));
afterAll(() => cleanup());

let api: FakeApi | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});
const serve = async (options: FakeApiOptions = {}) => (api = await startFakeApi(options)).url;
// One request in ten fails with 503.
const flaky: FakeApiOptions = { failWith: (n) => (n % 10 === 4 ? 503 : undefined) };

describe('cifar bench (CLI)', () => {
  it('prints the table and exits 0 when every request succeeds', async () => {
    const r = await cifarBench(['--url', await serve(), '--requests', '20', '--concurrency', '2']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^requests +20 sent, 20 completed, 20 ok, 0 failed/m);
    expect(r.stdout).toMatch(/^latency ms +min +p50 +p90 +p95 +p99 +p99\.9 +max/m);
    expect(r.stdout).toContain('model fake-1234');
  });

  it('exits 1 when any request failed and no --max-error-rate allows it', async () => {
    const r = await cifarBench(['--url', await serve(flaky), '--requests', '20']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('2 requests failed (allow some with --max-error-rate)');
  });

  it('exits 0 within --max-error-rate, 1 beyond it or past --max-p99', async () => {
    const url = await serve({ ...flaky, latencyMs: () => 15 });
    expect((await cifarBench(['--url', url, '--requests', '20', '--max-error-rate', '0.1'])).code).toBe(0);
    const strict = await cifarBench(['--url', url, '--requests', '20', '--max-error-rate', '5%']);
    expect([strict.code, strict.stderr]).toEqual([1, expect.stringContaining('error rate 10.00% > --max-error-rate 0.05')]);
    const slow = await cifarBench(['--url', url, '--requests', '10', '--max-error-rate', '0.5', '--max-p99', '5']);
    expect([slow.code, slow.stderr]).toEqual([1, expect.stringMatching(/p99 \d+(\.\d+)? ms > --max-p99 5/)]);
  });

  it('--json prints the result object and --out writes the same one atomically', async () => {
    const out = join(dataDir, 'bench.json');
    const r = await cifarBench(['--url', await serve(), '--requests', '10', '--unique', '1', '--json', '--out', out]);
    expect(r.code).toBe(0);
    const printed = JSON.parse(r.stdout) as BenchResult;
    expect(printed.parameters).toMatchObject({ requests: 10, model: 'closed', images: { source: 'generated', distinct: 1 } });
    expect(printed.requests.succeeded).toBe(10);
    expect(printed.cache.hits).toBe(9);
    expect(JSON.parse(await readFile(out, 'utf8'))).toEqual(printed);
    expect((await readdir(dataDir)).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  it('bad input is one clear line and exit 2: nothing listening, not JSON, empty folder, conflicting flags', async () => {
    const gone = await startFakeApi();
    await gone.close();
    const down = await cifarBench(['--url', gone.url, '--requests', '1']);
    expect([down.code, down.stderr.trim()]).toEqual([2, expect.stringMatching(/^error: cannot reach .* \(nothing is listening\) — .*--spawn/)]);
    const html = await cifarBench(['--url', await serve({ htmlHealth: true }), '--requests', '1']);
    expect([html.code, html.stderr.trim()]).toEqual([2, expect.stringMatching(/^error: .*\/health answered 200 text\/html, not JSON/)]);
    const empty = await cifarBench(['--images', dataDir, '--requests', '1']);
    expect([empty.code, empty.stderr.trim()]).toEqual([2, expect.stringMatching(/^error: --images .*: no image files/)]);
    const both = await cifarBench(['--requests', '1', '--duration', '1']);
    expect([both.code, both.stderr.trim()]).toEqual([2, 'error: --requests and --duration both set when to stop: give one']);
    const warmups = await cifarBench(['--requests', '1', '--warmup', '5', '--warmup-seconds', '1']);
    expect([warmups.code, warmups.stderr.trim()]).toEqual([2, 'error: --warmup and --warmup-seconds both set the warm-up: give one']);
    const zero = await cifarBench(['--requests', '1', '--warmup-seconds', '0']);
    expect([zero.code, zero.stderr.trim()]).toEqual([2, 'error: --warmup-seconds 0: expected a number above 0']);
  });
});
