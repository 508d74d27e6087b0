#!/usr/bin/env node
// npm run dashboard:demo — the README's dashboard picture, from a real run on this machine: a real
// Prometheus (1 s scrapes) and Redis, `cifar serve` with the bundled model, and a scripted load
// with `cifar bench` in phases — new images at a steady rate, a burst of repeated images (cache
// hits), 2,000 images cycled (misses under inference load, then hits), an overload past
// --max-queue (503s: the queue, rejections and 5xx ratio panels), and bad uploads (4xx) — then `cifar dashboard` over the whole window. Writes --out (default
// docs/dashboard/cifar-api.png) and beside it phases.json (what ran when) and summary.json
// (`cifar dashboard --json`). Needs `prometheus` and `redis-server` on the PATH (Debian:
// apt-get install prometheus redis-server); without Redis the server uses its memory cache.
// Options: --seconds S (length of each load phase, default 30), --out FILE, --data DIR.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const seconds = Number(arg('seconds', '30'));
const out = resolve(arg('out', 'docs/dashboard/cifar-api.png'));
const data = arg('data');
const bin = fileURLToPath(new URL('../bin/cifar', import.meta.url));
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
if (!has('prometheus')) {
  console.error('dashboard:demo needs prometheus on the PATH (Debian: apt-get install prometheus)');
  process.exit(2);
}

const freePort = () =>
  new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(check, what, ms = 30_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check().catch(() => false)) return;
    await sleep(200);
  }
  throw new Error(`${what} did not start within ${ms / 1000} s`);
}
const now = () => Math.round(Date.now() / 1000);

const work = mkdtempSync(join(tmpdir(), 'cifar-dashboard-'));
const children = [];
const start = (cmd, args) => {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
};
const stopAll = async () => {
  for (const c of children.reverse()) if (c.exitCode === null) c.kill('SIGTERM');
  await sleep(1500);
  rmSync(work, { recursive: true, force: true });
};
process.on('SIGINT', () => stopAll().then(() => process.exit(130)));

try {
  const [apiPort, promPort, redisPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const api = `http://127.0.0.1:${apiPort}`;
  const prom = `http://127.0.0.1:${promPort}`;
  let redisUrl;
  if (has('redis-server')) {
    start('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', work]);
    redisUrl = `redis://127.0.0.1:${redisPort}`;
  }
  // JSON is YAML. The job name is the compose stack's, which the dashboard selects.
  writeFileSync(join(work, 'prometheus.yml'), JSON.stringify({
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    scrape_configs: [{ job_name: 'cifar-api', static_configs: [{ targets: [`127.0.0.1:${apiPort}`] }] }],
  }));
  start('prometheus', [`--config.file=${join(work, 'prometheus.yml')}`, `--storage.tsdb.path=${join(work, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn']);
  // A small queue, so that the overload phase is rejected (503) rather than only slowed.
  start(process.execPath, [bin, 'serve', '--port', String(apiPort), '--workers', '2', '--max-queue', '32', '--log-level', 'warn', ...(redisUrl ? ['--redis-url', redisUrl] : [])]);
  await until(async () => (await fetch(`${api}/ready`)).ok, 'cifar serve', 60_000);
  await until(async () => (await fetch(`${prom}/-/ready`)).ok, 'prometheus');

  // The server's own counters, as Prometheus last scraped them.
  const COUNTERS = { cacheErrors: 'sum(cache_errors_total)', cacheHits: 'sum(cache_hits_total)', rejected: 'sum(inference_rejected_total)', answered503: 'sum(http_requests_total{status="503"})' };
  const counters = async () => {
    const out = {};
    for (const [name, q] of Object.entries(COUNTERS)) {
      const body = await (await fetch(`${prom}/api/v1/query?query=${encodeURIComponent(q)}`)).json();
      out[name] = Number(body.data?.result?.[0]?.value?.[1] ?? 0);
    }
    return out;
  };
  const phases = [];
  const phase = async (name, args) => {
    const before = await counters();
    const from = now();
    const r = spawnSync(process.execPath, [bin, 'bench', '--url', api, '--duration', String(seconds), '--quiet', '--json', '--max-error-rate', '1', ...(data ? ['--data', data] : []), ...args], { encoding: 'utf8' });
    const result = r.stdout ? JSON.parse(r.stdout) : undefined;
    const to = now();
    await sleep(2500); // two scrapes
    const after = await counters();
    const server = Object.fromEntries(Object.keys(COUNTERS).map((k) => [k, after[k] - before[k]]));
    phases.push({ name, from, to, args, requests: result?.requests, requestsPerSecond: result?.throughput?.requestsPerSecond, p99Ms: result?.latencyMs?.p99, errorsByStatus: result?.errors?.byStatus, server });
    console.log(`  server: ${JSON.stringify(server)}`);
    console.log(`${name}: ${result ? `${Math.round(result.throughput.requestsPerSecond)} req/s, p99 ${Math.round(result.latencyMs.p99)} ms, failed ${result.requests.failed}` : `bench exited ${r.status}: ${r.stderr.trim()}`}`);
    await sleep(2500);
  };
  const began = now();
  await sleep(10_000); // a quiet start: the server idle, scraped
  await phase('steady: new images, 100 req/s', ['--rate', '100']);
  await phase('cache hits: 200 images, 16 connections', ['--unique', '200', '--concurrency', '16']);
  await phase('mixed: 2,000 images cycled, 32 connections (misses, then hits)', ['--unique', '2000', '--concurrency', '32']);
  await phase('overload: new images, 192 connections, queue of 32', ['--concurrency', '192']);
  // Bad uploads: not images, and no file field (400s, 415s), as a misbehaving client sends them.
  const badFrom = now();
  let bad = 0;
  while (now() - badFrom < Math.min(10, seconds)) {
    const form = new FormData();
    form.append('file', new Blob([Buffer.from('not an image')]), 'x.png');
    await fetch(`${api}/predict`, { method: 'POST', body: form }).then((r) => r.text());
    await fetch(`${api}/predict`, { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } }).then((r) => r.text());
    bad += 2;
    await sleep(50);
  }
  phases.push({ name: 'bad uploads', from: badFrom, to: now(), requests: bad });
  await sleep(15_000); // and quiet again
  const ended = now();

  mkdirSync(dirname(out), { recursive: true });
  const drawn = spawnSync(process.execPath, [bin, 'dashboard', '--prometheus', prom, '--from', String(began), '--to', String(ended), '--scrape-interval', '1s', '--out', out, '--json'], { encoding: 'utf8' });
  if (drawn.status !== 0) throw new Error(`cifar dashboard exited ${drawn.status}: ${drawn.stderr.trim()}`);
  writeFileSync(join(dirname(out), 'summary.json'), drawn.stdout);
  const cpu = (await import('node:os')).cpus();
  writeFileSync(join(dirname(out), 'phases.json'), JSON.stringify({ machine: `${cpu.length} × ${cpu[0]?.model}`, node: process.version, redis: Boolean(redisUrl), began, ended, phases }, null, 2) + '\n');
  console.log(`${out}: ${began}–${ended} (${ended - began} s)`);
} finally {
  await stopAll();
}
