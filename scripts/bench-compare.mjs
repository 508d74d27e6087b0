#!/usr/bin/env node
// Can `cifar bench` be trusted? Run it and autocannon one after the other against the same
// server and scenario (one image, all cache hits, fixed connections), and print both.
//   npm run build && node scripts/bench-compare.mjs [--url http://127.0.0.1:8000] [--duration 5] [--concurrency 64] [--rounds 2]
// The server is warmed first (its JIT and cache), then the tools take turns A B B A …, so neither
// always runs on the colder server; the report gives each run and each tool's mean.
// Without --url a fixed-answer server (POST /predict → constant JSON, cached:true) runs in a child
// process, so neither load generator shares its event loop with the server.
// CIFAR_BIN=path runs another launcher than bin/cifar (one whose `bench` command is wired up).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { cpus, loadavg } from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { MULTIPART_TYPE, multipartBody } from '../dist/bench/http.js';
import { loadImageSource } from '../dist/bench/images.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    duration: { type: 'string', default: '5' },
    concurrency: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '2' },
    'serve-fixed': { type: 'boolean', default: false },
  },
});

const FIXED_ANSWER = JSON.stringify({
  prediction: 1,
  class_name: 'automobile',
  confidence: 0.75,
  probabilities: [0.02, 0.75, 0.03, 0.02, 0.02, 0.02, 0.02, 0.02, 0.05, 0.05],
  model_version: 'fixed-answer',
  cached: true,
});

if (values['serve-fixed']) {
  // Child mode: the fixed-answer server. It reads each body in full, as a real server must.
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const body = req.url === '/health' ? '{"status":"healthy","model_version":"fixed-answer"}' : req.url === '/ready' ? '{"ready":true}' : FIXED_ANSWER;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    });
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));
  process.on('SIGTERM', () => process.exit(0));
} else {
  await compare();
}

/** Seconds of CPU a process has used (Linux /proc), or null elsewhere. */
function procCpuSeconds(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 1/100 s
  } catch {
    return null;
  }
}

async function startFixedServer() {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve-fixed'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = await once(createInterface({ input: child.stdout }), 'line');
  return { url: `http://127.0.0.1:${line.trim()}`, pid: child.pid, stop: () => child.kill('SIGTERM') };
}

async function runCifarBench(url, duration, connections) {
  const bin = process.env.CIFAR_BIN ?? fileURLToPath(new URL('../bin/cifar', import.meta.url));
  const args = [bin, 'bench', '--url', url, '--unique', '1', '--warmup', '1', '--concurrency', String(connections), '--duration', String(duration), '--json', '--quiet'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const [code] = await once(child, 'close');
  if (!out.trim()) throw new Error(`cifar bench exited with ${code} and printed nothing`);
  const r = JSON.parse(out);
  return {
    command: `cifar ${args.slice(1).join(' ')}`,
    requestsPerSecond: r.throughput.requestsPerSecond,
    p50Ms: r.latencyMs?.p50 ?? null,
    p99Ms: r.latencyMs?.p99 ?? null,
    errors: r.errors.total,
    cacheHitRatio: r.cache.hitRatio,
    cpuPercentOfOneCore: r.client.cpuPercent,
  };
}

async function runAutocannon(url, duration, connections) {
  // The same request: one ~3 kB PNG in the same multipart shape, sent to a warmed cache.
  const images = await loadImageSource({ dataDir: 'data', unique: 1 });
  const body = multipartBody('file', [images.next()]);
  const target = `${url.replace(/\/+$/, '')}/predict`;
  await fetch(target, { method: 'POST', headers: { 'content-type': MULTIPART_TYPE }, body });
  const cpuBefore = process.cpuUsage();
  const result = await autocannon({ url: target, method: 'POST', headers: { 'content-type': MULTIPART_TYPE }, body, connections, duration });
  const cpu = process.cpuUsage(cpuBefore);
  return {
    command: `autocannon -c ${connections} -d ${duration} -m POST (programmatic, same body)`,
    // 2xx per second over the whole run, the basis cifar bench uses (autocannon's own average is per sampled second).
    requestsPerSecond: Math.round((result['2xx'] / result.duration) * 100) / 100,
    requestsPerSecondAverage: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.timeouts + result.non2xx,
    cpuPercentOfOneCore: Math.round(((cpu.user + cpu.system) / 1e6 / result.duration) * 1000) / 10,
  };
}

async function compare() {
  const duration = Number(values.duration);
  const connections = Number(values.concurrency);
  const fixed = values.url ? undefined : await startFixedServer();
  const url = values.url ?? fixed.url;
  try {
    const serverCpu = {};
    const measure = async (name, fn) => {
      const before = fixed ? procCpuSeconds(fixed.pid) : null;
      const result = await fn(url, duration, connections);
      const after = fixed ? procCpuSeconds(fixed.pid) : null;
      if (before !== null && after !== null) (serverCpu[name] ??= []).push(Math.round(((after - before) / duration) * 1000) / 10);
      return result;
    };
    await runAutocannon(url, Math.min(2, duration), connections); // warm-up, not reported
    const runs = { cifarBench: [], autocannon: [] };
    const tools = { cifarBench: runCifarBench, autocannon: runAutocannon };
    for (let round = 0; round < Number(values.rounds); round++) {
      const order = round % 2 === 0 ? ['cifarBench', 'autocannon'] : ['autocannon', 'cifarBench'];
      for (const name of order) runs[name].push(await measure(name, tools[name]));
    }
    const mean = (list, key) => (list.every((r) => r[key] !== null) ? Math.round((list.reduce((a, r) => a + r[key], 0) / list.length) * 1000) / 1000 : null);
    const summary = (list) => ({ command: list[0].command, requestsPerSecond: mean(list, 'requestsPerSecond'), p50Ms: mean(list, 'p50Ms'), p99Ms: mean(list, 'p99Ms'), errors: list.reduce((a, r) => a + r.errors, 0), cpuPercentOfOneCore: mean(list, 'cpuPercentOfOneCore'), runs: list.map(({ command, ...r }) => r) });
    const cifar = summary(runs.cifarBench);
    const cannon = summary(runs.autocannon);
    const ratio = (a, b) => (a && b ? Math.round((a / b) * 1000) / 1000 : null);
    const rpsRatio = ratio(cifar.requestsPerSecond, cannon.requestsPerSecond);
    const report = {
      scenario: { url, rounds: Number(values.rounds), server: fixed ? 'fixed-answer Node server in a child process' : 'given --url', endpoint: 'POST /predict', cache: 'one image, all hits', connections, durationSeconds: duration },
      machine: { cpus: cpus().length, loadAverage1m: Math.round(loadavg()[0] * 100) / 100, node: process.version },
      cifarBench: cifar,
      autocannon: cannon,
      ratio: { requestsPerSecond: rpsRatio, p50: ratio(cifar.p50Ms, cannon.p50Ms), p99: ratio(cifar.p99Ms, cannon.p99Ms) },
      withinTenPercent: rpsRatio !== null && Math.abs(rpsRatio - 1) <= 0.1,
      ...(fixed ? { serverCpuPercentOfOneCore: serverCpu } : {}),
      // Client CPU per request: on a shared machine, what a client burns the server does not get.
      clientCpuMicrosecondsPerRequest: {
        cifarBench: Math.round((cifar.cpuPercentOfOneCore * 1e4) / cifar.requestsPerSecond),
        autocannon: Math.round((cannon.cpuPercentOfOneCore * 1e4) / cannon.requestsPerSecond),
      },
      ...(rpsRatio !== null && Math.abs(rpsRatio - 1) > 0.1
        ? { explanation: 'closed model: throughput = connections / latency, so the gap is the extra latency per request. When the server and client share the CPUs, a client spending more CPU per request (see clientCpuMicrosecondsPerRequest: undici Pool plus parsing every JSON answer, against autocannon\'s hand-written HTTP/1 writer that reads no body) leaves the server less; on a machine with cores to spare for both, the two should agree.' }
        : {}),
      notes: [
        'autocannon keeps latencies in whole milliseconds; cifar bench in microseconds',
        'each tool shares the machine with the server: compare client CPU with the cores available',
      ],
    };
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } finally {
    fixed?.stop();
  }
}
