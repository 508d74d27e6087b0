#!/usr/bin/env node
// npm run bench:serve — the serving scenarios of the README's Performance section, measured in
// one run on this machine: uncached (every image new) at concurrency 1/16/64 with 1 and 2 workers,
// all cache hits with the in-memory cache and with Redis, and a mixed load. Each scenario is
// `cifar bench --spawn ... --json`; the table and a JSON file (--out, default bench-serve.json) hold
// every figure. Options: --seconds S (default 10), --model DIR, --out FILE.
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
const model = arg('model');
const out = arg('out', 'bench-serve.json');
const bin = fileURLToPath(new URL('../bin/cifar', import.meta.url));

function bench(args) {
  const all = ['bench', '--spawn', '--json', '--quiet', '--duration', String(seconds), '--warmup', '50', ...(model ? ['--model', model] : []), ...args];
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

const rows = [];
try {
  for (const s of scenarios) {
    process.stderr.write(`${s.name} ...\n`);
    const result = bench(s.args);
    rows.push({ scenario: s.name, args: s.args.join(' '), requestsPerSecond: result.throughput.requestsPerSecond, p50: result.latencyMs.p50, p99: result.latencyMs.p99, hitRatio: result.cache.hitRatio, errors: result.errors.total, clientCpuPercent: result.client.cpuPercent, modelVersion: result.server.modelVersion });
  }
} finally {
  r?.stop();
}
const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`;
writeFileSync(out, JSON.stringify({ machine, seconds, rows }, null, 2) + '\n');
console.log(`machine: ${machine}; ${seconds} s per scenario; model ${rows[0]?.modelVersion}`);
console.log('| scenario | req/s | p50 ms | p99 ms | hit ratio | errors | client CPU |');
console.log('|---|---|---|---|---|---|---|');
for (const x of rows) console.log(`| ${x.scenario} | ${Math.round(x.requestsPerSecond).toLocaleString('en-US')} | ${x.p50.toFixed(1)} | ${x.p99.toFixed(1)} | ${(x.hitRatio * 100).toFixed(0)}% | ${x.errors} | ${x.clientCpuPercent.toFixed(0)}% |`);
