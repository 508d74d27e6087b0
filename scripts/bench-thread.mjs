#!/usr/bin/env node
// npm run bench:thread — cifar serve with and without --inference-thread, in alternating rounds on
// this machine (2 workers, a private Redis, the bundled model): new images alone (32 connections),
// then a client of 100 cached images (8 connections, warmed up first) beside 96 connections of new
// images, each `cifar bench` run --seconds long. Prints one JSON line a run and writes them all
// (--out, default bench-thread.json). Options: --rounds N (default 2), --seconds S (default 20),
// --data DIR (images for cifar bench; default its own), --workers N (default 2).
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const rounds = Number(arg('rounds', '2'));
const seconds = arg('seconds', '20');
const data = arg('data');
const workers = arg('workers', '2');
const out = arg('out', 'bench-thread.json');
const bin = fileURLToPath(new URL('../bin/cifar', import.meta.url));
if (spawnSync('sh', ['-c', 'command -v redis-server']).status !== 0) {
  console.error('bench:thread needs redis-server on the PATH (Debian: apt-get install redis-server)');
  process.exit(2);
}
const freePort = () => new Promise((res) => { const s = createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); }); });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const metric = async (url, name) => Number(new RegExp(`^${name} ([0-9.e+]+)`, 'm').exec(await (await fetch(`${url}/metrics`)).text())?.[1] ?? 0);
const bench = (url, args) =>
  new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [bin, 'bench', '--url', url, '--quiet', '--json', '--max-error-rate', '1', '--duration', seconds, ...(data ? ['--data', data] : []), ...args]);
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('exit', (code) => {
      try {
        resolve(JSON.parse(stdout));
      } catch {
        reject(new Error(`cifar bench exited ${code}: ${stderr.trim()}`));
      }
    });
  });

const runs = [];
for (let round = 1; round <= rounds; round++) {
  for (const thread of [false, true]) {
    const redisPort = await freePort();
    const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
    const port = await freePort();
    const serve = spawn(process.execPath, [bin, 'serve', '--port', String(port), '--workers', workers, '--redis-url', `redis://127.0.0.1:${redisPort}`, '--log-level', 'silent', ...(thread ? ['--inference-thread'] : [])]);
    const url = `http://127.0.0.1:${port}`;
    try {
      for (let i = 0; i < 300 && !(await fetch(`${url}/ready`).then((r) => r.ok, () => false)); i++) await sleep(200);
      const alone = await bench(url, ['--concurrency', '32', '--warmup-seconds', '3']);
      const errors0 = await metric(url, 'cache_errors_total');
      const [hits, misses] = await Promise.all([bench(url, ['--unique', '100', '--concurrency', '8', '--warmup', '200']), bench(url, ['--concurrency', '96'])]);
      const run = {
        round,
        inferenceThread: thread,
        uncachedAlone: { requestsPerSecond: alone.throughput.requestsPerSecond, p50Ms: alone.latencyMs.p50, p99Ms: alone.latencyMs.p99 },
        cachedBesideUncached: { requestsPerSecond: hits.throughput.requestsPerSecond, hitRatio: hits.cache?.hitRatio, p50Ms: hits.latencyMs.p50, p99Ms: hits.latencyMs.p99 },
        uncachedBesideCached: { requestsPerSecond: misses.throughput.requestsPerSecond, p99Ms: misses.latencyMs.p99 },
        cacheErrors: (await metric(url, 'cache_errors_total')) - errors0,
      };
      runs.push(run);
      console.log(JSON.stringify(run));
    } finally {
      serve.kill('SIGTERM');
      redis.kill('SIGTERM');
      await sleep(2000);
    }
  }
}
const cpu = cpus();
writeFileSync(out, JSON.stringify({ machine: `${cpu.length} × ${cpu[0]?.model}`, node: process.version, workers: Number(workers), seconds: Number(seconds), runs }, null, 2) + '\n');
console.log(`wrote ${out}`);
