import type { LatencySummary } from '../bench/histogram.js';
import type { BenchResult, ThresholdCheck } from '../bench/result.js';
import { formatCount } from './format.js';

const COLUMNS = ['min', 'p50', 'p90', 'p95', 'p99', 'p99.9', 'max'] as const;

const num = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const plural = (n: number, word: string) => `${formatCount(n)} ${word}${n === 1 ? '' : 's'}`;

function latencyRow(label: string, s: LatencySummary | null): string {
  if (!s) return `${label.padEnd(10)}${'—'.padStart(8)}`;
  const values = [s.min, s.p50, s.p90, s.p95, s.p99, s.p99_9, s.max].map((v) => num(v).padStart(8));
  return `${label.padEnd(10)}${values.join('')}${formatCount(s.count).padStart(10)}`;
}

function imagesLine(r: BenchResult): string {
  const { images } = r.parameters;
  const where = images.source === 'generated' ? 'generated noise PNGs' : `${images.source} ${images.path ?? ''}`.trim();
  const cycle = images.distinct === null ? 'every image new' : images.distinct === 1 ? '1 image repeated' : `${formatCount(images.distinct)} distinct images cycled`;
  return `${where}, ${cycle}`;
}

function modelLine(r: BenchResult): string {
  const p = r.parameters;
  const shape = p.model === 'open' ? `open model at ${formatCount(p.rate!)} req/s, up to ${p.concurrency} in flight` : `closed model, ${plural(p.concurrency, 'connection')}`;
  const size = p.requests !== null ? plural(p.requests, 'request') : `${p.durationSeconds} s`;
  const batch = p.endpoint === 'batch' ? `, ${p.batchSize} images per request` : '';
  return `${shape}, ${size}${batch}${p.warmup > 0 ? `, ${p.warmup} warm-up` : ''}`;
}

function errorsLines(r: BenchResult): string[] {
  const e = r.errors;
  if (e.total === 0) return ['errors       none'];
  const parts: string[] = [];
  if (e.connect) parts.push(`connect ${formatCount(e.connect)}`);
  if (e.timeout) parts.push(`timeout ${formatCount(e.timeout)}`);
  if (e.invalid) parts.push(`invalid answer ${formatCount(e.invalid)}`);
  for (const [status, n] of Object.entries(e.byStatus)) parts.push(`HTTP ${status} ${formatCount(n)}`);
  const codes = Object.entries(e.byCode).map(([c, n]) => `${c} ${formatCount(n)}`);
  const lines = [`errors       ${formatCount(e.total)}: ${parts.join(', ')}${codes.length ? ` (${codes.join(', ')})` : ''}`];
  for (const sample of e.samples.slice(0, 3)) lines.push(`             e.g. ${sample}`);
  return lines;
}

const CHECK_LABEL: Record<ThresholdCheck['name'], (c: ThresholdCheck) => string> = {
  'max-p99': (c) => `p99 ${c.actual === null ? 'n/a' : `${num(c.actual)} ms`} ≤ ${c.limit} ms`,
  'min-rps': (c) => `${num(c.actual ?? 0)} req/s ≥ ${c.limit}`,
  'max-error-rate': (c) => `error rate ${c.actual === null ? 'n/a' : `${(c.actual * 100).toFixed(2)}%`} ≤ ${(c.limit * 100).toFixed(2)}%`,
  'no-errors': (c) => `no failed requests (${formatCount(c.actual ?? 0)} failed)`,
};

/** The human summary of `cifar bench` (pure: no colours, no I/O). */
export function formatBench(r: BenchResult): string {
  const q = r.requests;
  const lines = [
    `cifar bench  ${r.parameters.url}  ${r.parameters.endpoint === 'batch' ? 'POST /predict/batch' : 'POST /predict'}${r.parameters.spawned ? ' (spawned server)' : ''}`,
    `load         ${modelLine(r)}`,
    `images       ${imagesLine(r)}`,
    `server       model ${r.server.modelVersion ?? 'version unknown'}${r.server.modelVersionsSeen.some((v) => v !== r.server.modelVersion) ? ` (answers carried ${r.server.modelVersionsSeen.join(', ')})` : ''}`,
  ];
  if (r.interrupted) lines.push('interrupted  stopped early: the numbers cover what was done');
  lines.push(
    '',
    `requests     ${formatCount(q.sent)} sent, ${formatCount(q.completed)} completed, ${formatCount(q.succeeded)} ok, ${formatCount(q.failed)} failed in ${r.elapsedSeconds.toFixed(2)} s`,
    `throughput   ${num(r.throughput.requestsPerSecond)} req/s, ${num(r.throughput.imagesPerSecond)} images/s (successful answers)`,
  );
  if (r.parameters.model === 'open') {
    lines.push(`late         ${plural(q.late, 'request')} started behind schedule (every connection busy); latency counts from the scheduled time`);
  }
  lines.push('', `${'latency ms'.padEnd(10)}${COLUMNS.map((c) => c.padStart(8)).join('')}${'count'.padStart(10)}`);
  lines.push(latencyRow('all', r.latencyMs), latencyRow('cached', r.cache.cachedLatencyMs), latencyRow('uncached', r.cache.uncachedLatencyMs), '');
  const c = r.cache;
  lines.push(c.hitRatio === null ? 'cache        the server did not say which answers were cached' : `cache        hit ratio ${(c.hitRatio * 100).toFixed(1)}% (${plural(c.hits, 'hit')}, ${c.misses === 1 ? '1 miss' : `${formatCount(c.misses)} misses`}, by image)`);
  lines.push(...errorsLines(r));
  lines.push(`client CPU   ${r.client.cpuPercent.toFixed(1)}% of one core (user ${r.client.cpuUserSeconds.toFixed(2)} s, system ${r.client.cpuSystemSeconds.toFixed(2)} s): it shares the machine with the server`);
  for (const check of r.thresholds.checks) lines.push(`${check.passed ? 'pass' : 'FAIL'}         ${CHECK_LABEL[check.name](check)}`);
  return lines.join('\n') + '\n';
}

/** The `--json` object: the library's result as it is. */
export function benchJson(result: BenchResult): string {
  return JSON.stringify(result, null, 2) + '\n';
}

const MISSED: Record<ThresholdCheck['name'], (c: ThresholdCheck) => string> = {
  'max-p99': (c) => (c.actual === null ? 'no successful answer to take a p99 from' : `p99 ${num(c.actual)} ms > --max-p99 ${c.limit}`),
  'min-rps': (c) => `${num(c.actual ?? 0)} req/s < --min-rps ${c.limit}`,
  'max-error-rate': (c) => (c.actual === null ? 'no request completed' : `error rate ${(c.actual * 100).toFixed(2)}% > --max-error-rate ${c.limit}`),
  'no-errors': (c) => (c.actual ? `${formatCount(c.actual)} request${c.actual === 1 ? '' : 's'} failed (allow some with --max-error-rate)` : 'no request completed'),
};

/** One line naming each missed threshold, for the error that sets exit status 1. */
export function thresholdFailures(result: BenchResult): string {
  return result.thresholds.checks
    .filter((c) => !c.passed)
    .map((c) => MISSED[c.name](c))
    .join('; ');
}
