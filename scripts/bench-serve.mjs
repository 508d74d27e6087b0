#!/usr/bin/env node
// npm run bench:serve — the serving scenarios of the README's Performance section, measured in
// one run on this machine: uncached (every image new) at concurrency 1/16/64 with 1 and 2 workers,
// all cache hits with the in-memory cache and with Redis, and a mixed load. Each scenario is
// `cifar bench --spawn ... --json`; the table and a JSON file (--out, default bench-serve.json) hold
// every figure. Options: --seconds S (default 10), --repeat N (default 3: every scenario N times,
// in N rounds over all of them so that a slow spell of the machine does not land on one; the table
// shows the median, the JSON every run), --warmup-seconds S (default 5: unmeasured load first, for
// the served scenarios and the offline rate alike), --model DIR, --out FILE.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const seconds = Number(arg('seconds', '10'));
// Unmeasured load before each measurement. A freshly started `cifar serve` needs it: in 3 s windows
// of load from its start, two workers served 710, 786, 843, 890, 880 req/s and one worker 469, 519,
// 536, 539, 541 (most likely V8 optimising the request path on two busy cores); with a 50-request warm-up,
// bench:serve measured mostly that climb.
const WARMUP_SECONDS = Number(arg('warmup-seconds', '5'));

// A child of this script: the model's offline rate, the forward pass `cifar serve` runs (the same
// model folder, backend and batch of 32 = --max-batch), with nothing else in the process.
if (process.argv.includes('--offline-child')) {
  const { loadPredictor } = await import('../dist/model/load.js');
  const { DEFAULT_MODEL_DIR } = await import('../dist/cli/defaults.js');
  const { predictor } = await loadPredictor(arg('model', DEFAULT_MODEL_DIR), 'auto');
  const pixels = Uint8Array.from({ length: 32 * 3072 }, (_, i) => (i * 7919) & 255);
  // Warm up for a few seconds, as the served scenarios do: the first second runs ~4% slower.
  const warm = performance.now();
  while (performance.now() - warm < WARMUP_SECONDS * 1000) await predictor.predict(pixels, 32);
  const start = performance.now();
  let images = 0;
  while (performance.now() - start < seconds * 1000) images += (await predictor.predict(pixels, 32), 32);
  process.stdout.write(JSON.stringify({ imagesPerSecond: images / ((performance.now() - start) / 1000) }) + '\n');
  process.exit(0);
}

/** Offline images/s of `processes` copies of the model run at once (one per core), summed. */
async function offline(processes) {
  const once = () =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--offline-child', '--seconds', '5', '--warmup-seconds', String(WARMUP_SECONDS), ...(model ? ['--model', model] : [])], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out).imagesPerSecond) : reject(new Error(`offline measurement exited ${code}`))));
    });
  const rates = await Promise.all(Array.from({ length: processes }, once));
  return rates.reduce((a, b) => a + b, 0);
}
const repeat = Math.max(1, Number(arg('repeat', '3')));
const model = arg('model');
const out = arg('out', 'bench-serve.json');
const bin = fileURLToPath(new URL('../bin/cifar', import.meta.url));

function bench(args) {
  const all = ['bench', '--spawn', '--json', '--quiet', '--duration', String(seconds), '--warmup-seconds', String(WARMUP_SECONDS), ...(model ? ['--model', model] : []), ...args];
  const res = spawnSync(process.execPath, [bin, ...all], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (!res.stdout.trim()) throw new Error(`cifar ${all.join(' ')} failed: ${res.stderr.trim().split('\n').pop()}`);
  return JSON.parse(res.stdout);
}

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** REDIS_URL, or a private redis-server on a free port (undefined when neither exists). */
async function redis() {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, stop() {} };
  if (spawnSync('redis-server', ['--version']).status !== 0) return undefined;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'bench-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 300));
  return { url: `redis://127.0.0.1:${port}`, stop: () => (child.kill(), rmSync(dir, { recursive: true, force: true })) };
}

const scenarios = [];
for (const workers of [1, 2]) {
  for (const c of [1, 16, 64]) scenarios.push({ name: `uncached, ${workers} worker${workers > 1 ? 's' : ''}, c=${c}`, args: ['--workers', String(workers), '--concurrency', String(c)] });
}
for (const workers of [1, 2]) scenarios.push({ name: `all hits (memory), ${workers} worker${workers > 1 ? 's' : ''}, c=64`, args: ['--workers', String(workers), '--concurrency', '64', '--unique', '1'] });
scenarios.push({ name: 'mixed (1,000 images cycled), 2 workers, c=64', args: ['--workers', '2', '--concurrency', '64', '--unique', '1000'] });
const r = await redis();
if (r) {
  scenarios.push({ name: 'all hits (Redis), 2 workers, c=64', args: ['--workers', '2', '--concurrency', '64', '--unique', '1', '--redis-url', r.url] });
  scenarios.push({ name: 'uncached (Redis), 2 workers, c=64', args: ['--workers', '2', '--concurrency', '64', '--redis-url', r.url] });
}

const runs = scenarios.map(() => []);
const offlineRuns = { 1: [], 2: [] };
try {
  for (let round = 1; round <= repeat; round++) {
    for (const p of [1, 2]) {
      process.stderr.write(`offline inference, ${p} process${p > 1 ? 'es' : ''} at once (round ${round} of ${repeat}) ...\n`);
      offlineRuns[p].push(await offline(p));
    }
    for (const [i, s] of scenarios.entries()) {
      process.stderr.write(`${s.name} (round ${round} of ${repeat}) ...\n`);
      const result = bench(s.args);
      runs[i].push({ requestsPerSecond: result.throughput.requestsPerSecond, p50: result.latencyMs.p50, p99: result.latencyMs.p99, hitRatio: result.cache.hitRatio, errors: result.errors.total, clientCpuPercent: result.client.cpuPercent, modelVersion: result.server.modelVersion });
    }
  }
} finally {
  r?.stop();
}
/** The run with the median throughput (its latencies go with it), plus the spread. */
const median = (list) => {
  const sorted = [...list].sort((a, b) => a.requestsPerSecond - b.requestsPerSecond);
  return { ...sorted[(sorted.length - 1) >> 1], min: sorted[0].requestsPerSecond, max: sorted.at(-1).requestsPerSecond, errors: list.reduce((n, x) => n + x.errors, 0) };
};
const rows = scenarios.map((s, i) => ({ scenario: s.name, args: s.args.join(' '), ...median(runs[i]), runs: runs[i] }));
const mid = (list) => [...list].sort((a, b) => a - b)[(list.length - 1) >> 1];
const offlineRate = { oneCore: mid(offlineRuns[1]), twoCores: mid(offlineRuns[2]), runs: offlineRuns };
const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`;
writeFileSync(out, JSON.stringify({ machine, seconds, warmupSeconds: WARMUP_SECONDS, repeat, offline: offlineRate, rows }, null, 2) + '\n');
const n = (x) => Math.round(x).toLocaleString('en-US');
console.log(`machine: ${machine}; ${seconds} s per run after ${WARMUP_SECONDS} s of warm-up, ${repeat} run${repeat > 1 ? 's' : ''} per scenario (the median's row; min–max beside it); model ${rows[0]?.modelVersion}`);
console.log('| scenario | req/s | min–max | p50 ms | p99 ms | hit ratio | errors | client CPU |');
console.log('|---|---|---|---|---|---|---|---|');
for (const x of rows) console.log(`| ${x.scenario} | ${n(x.requestsPerSecond)} | ${n(x.min)}–${n(x.max)} | ${x.p50.toFixed(1)} | ${x.p99.toFixed(1)} | ${(x.hitRatio * 100).toFixed(0)}% | ${x.errors} | ${x.clientCpuPercent.toFixed(0)}% |`);
const served = (name) => rows.find((r) => r.scenario === name)?.requestsPerSecond;
const [one, two] = [served('uncached, 1 worker, c=64'), served('uncached, 2 workers, c=64')];
console.log(`offline inference (batch 32, the served model, medians): ${n(offlineRate.oneCore)} images/s in one process, ${n(offlineRate.twoCores)} in two at once`);
if (one && two) {
  console.log(`uncached at c=64: 2 workers / 1 worker = ${(two / one).toFixed(2)}×; 1 worker = ${((100 * one) / offlineRate.oneCore).toFixed(0)}% of one process offline; 2 workers = ${((100 * two) / offlineRate.twoCores).toFixed(0)}% of two processes offline`);
}
