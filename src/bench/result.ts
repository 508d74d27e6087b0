import type { BenchEndpoint, BenchThresholds } from './config.js';
import { createRecorder, type LatencyRecorder, type LatencySummary } from './histogram.js';
import type { ErrorKind, Outcome } from './http.js';

/** The run's parameters, as resolved (defaults filled in), so a result file says what was measured. */
export interface BenchParameters {
  url: string;
  endpoint: BenchEndpoint;
  /** closed: each connection waits for its answer; open: requests start on a fixed schedule. */
  model: 'closed' | 'open';
  concurrency: number;
  rate: number | null;
  requests: number | null;
  durationSeconds: number | null;
  batchSize: number;
  warmup: number;
  warmupSeconds: number | null;
  timeoutMs: number;
  images: { source: 'folder' | 'dataset' | 'generated'; path: string | null; bases: number; distinct: number | null };
  spawned: boolean;
}

export interface ThresholdCheck {
  name: 'max-p99' | 'min-rps' | 'max-error-rate' | 'no-errors';
  limit: number;
  actual: number | null;
  passed: boolean;
}

/** One benchmark run: everything `--json` prints and the table shows. */
export interface BenchResult {
  parameters: BenchParameters;
  server: { modelVersion: string | null; modelVersionsSeen: string[] };
  startedAt: string;
  /** From the first measured request to the last answer. */
  elapsedSeconds: number;
  /** True when Ctrl-C stopped the run early; the numbers cover what was done. */
  interrupted: boolean;
  requests: {
    sent: number;
    completed: number;
    succeeded: number;
    failed: number;
    /** Open model: requests that started later than scheduled because every connection was busy. */
    late: number;
  };
  /** Successful answers only: a server failing fast must not look fast. */
  throughput: { requestsPerSecond: number; imagesPerSecond: number };
  latencyMs: LatencySummary | null;
  cache: {
    /** Cached images / images answered with cache information; null when the server never says. */
    hitRatio: number | null;
    hits: number;
    misses: number;
    /** Latency of requests answered entirely from the cache, and entirely without it. */
    cachedLatencyMs: LatencySummary | null;
    uncachedLatencyMs: LatencySummary | null;
  };
  errors: {
    total: number;
    connect: number;
    timeout: number;
    invalid: number;
    /** Error answers by HTTP status, and by the API's error code. */
    byStatus: Record<string, number>;
    byCode: Record<string, number>;
    /** A few distinct messages, to say what went wrong. */
    samples: string[];
  };
  /** This process's CPU while measuring: it shares the machine with the server it loads. */
  client: { cpuUserSeconds: number; cpuSystemSeconds: number; cpuPercent: number };
  thresholds: { passed: boolean; checks: ThresholdCheck[] };
}

/** Counts outcomes and latencies while the run goes. */
export class Tally {
  sent = 0;
  late = 0;
  succeeded = 0;
  images = 0;
  hits = 0;
  misses = 0;
  readonly latency: LatencyRecorder = createRecorder();
  readonly cached: LatencyRecorder = createRecorder();
  readonly uncached: LatencyRecorder = createRecorder();
  readonly errorKinds: Record<ErrorKind, number> = { connect: 0, timeout: 0, status: 0, invalid: 0 };
  readonly byStatus: Record<string, number> = {};
  readonly byCode: Record<string, number> = {};
  readonly samples = new Set<string>();
  readonly versions = new Set<string>();

  get failed(): number {
    const k = this.errorKinds;
    return k.connect + k.timeout + k.status + k.invalid;
  }

  get completed(): number {
    return this.succeeded + this.failed;
  }

  /** Count one answered (or failed) request that took `ms`. */
  record(outcome: Outcome, ms: number): void {
    if (!outcome.ok) {
      this.errorKinds[outcome.kind]++;
      if (outcome.status !== undefined && outcome.kind === 'status') this.byStatus[outcome.status] = (this.byStatus[outcome.status] ?? 0) + 1;
      if (outcome.code !== undefined) this.byCode[outcome.code] = (this.byCode[outcome.code] ?? 0) + 1;
      if (this.samples.size < 5) this.samples.add(outcome.message);
      return;
    }
    this.succeeded++;
    this.images += outcome.images;
    this.latency.record(ms);
    if (outcome.modelVersion !== null) this.versions.add(outcome.modelVersion);
    if (outcome.cachedImages === null) return;
    this.hits += outcome.cachedImages;
    this.misses += outcome.images - outcome.cachedImages;
    // A batch partly from the cache is neither: it would blur both distributions.
    if (outcome.cachedImages === outcome.images) this.cached.record(ms);
    else if (outcome.cachedImages === 0) this.uncached.record(ms);
  }
}

/** The checks the thresholds ask for; without --max-error-rate any failed request fails the run. */
export function evaluateThresholds(t: BenchThresholds, r: Pick<BenchResult, 'latencyMs' | 'throughput' | 'requests'>): BenchResult['thresholds'] {
  const checks: ThresholdCheck[] = [];
  if (t.maxP99Ms !== undefined) {
    const p99 = r.latencyMs?.p99 ?? null;
    checks.push({ name: 'max-p99', limit: t.maxP99Ms, actual: p99, passed: p99 !== null && p99 <= t.maxP99Ms });
  }
  if (t.minRps !== undefined) {
    const rps = r.throughput.requestsPerSecond;
    checks.push({ name: 'min-rps', limit: t.minRps, actual: rps, passed: rps >= t.minRps });
  }
  const { failed, completed } = r.requests;
  if (t.maxErrorRate !== undefined) {
    const rate = completed === 0 ? null : failed / completed;
    checks.push({ name: 'max-error-rate', limit: t.maxErrorRate, actual: rate, passed: rate !== null && rate <= t.maxErrorRate });
  } else {
    checks.push({ name: 'no-errors', limit: 0, actual: failed, passed: failed === 0 && completed > 0 });
  }
  return { passed: checks.every((c) => c.passed), checks };
}

/** Assemble the result object from a finished tally. */
export function buildResult(input: {
  parameters: BenchParameters;
  thresholds: BenchThresholds;
  tally: Tally;
  modelVersion: string | null;
  startedAt: Date;
  elapsedSeconds: number;
  cpu: NodeJS.CpuUsage;
  interrupted: boolean;
}): BenchResult {
  const { tally, elapsedSeconds } = input;
  const per = (n: number) => (elapsedSeconds > 0 ? round(n / elapsedSeconds, 2) : 0);
  const answered = tally.hits + tally.misses;
  const base = {
    parameters: input.parameters,
    server: { modelVersion: input.modelVersion, modelVersionsSeen: [...tally.versions].sort() },
    startedAt: input.startedAt.toISOString(),
    elapsedSeconds: round(elapsedSeconds, 3),
    interrupted: input.interrupted,
    requests: { sent: tally.sent, completed: tally.completed, succeeded: tally.succeeded, failed: tally.failed, late: tally.late },
    throughput: { requestsPerSecond: per(tally.succeeded), imagesPerSecond: per(tally.images) },
    latencyMs: tally.latency.summary(),
    cache: {
      hitRatio: answered === 0 ? null : round(tally.hits / answered, 4),
      hits: tally.hits,
      misses: tally.misses,
      cachedLatencyMs: tally.cached.summary(),
      uncachedLatencyMs: tally.uncached.summary(),
    },
    errors: {
      total: tally.failed,
      connect: tally.errorKinds.connect,
      timeout: tally.errorKinds.timeout,
      invalid: tally.errorKinds.invalid,
      byStatus: tally.byStatus,
      byCode: tally.byCode,
      samples: [...tally.samples],
    },
    client: {
      cpuUserSeconds: round(input.cpu.user / 1e6, 3),
      cpuSystemSeconds: round(input.cpu.system / 1e6, 3),
      cpuPercent: elapsedSeconds > 0 ? round(((input.cpu.user + input.cpu.system) / 1e6 / elapsedSeconds) * 100, 1) : 0,
    },
  };
  return { ...base, thresholds: evaluateThresholds(input.thresholds, base) };
}

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;
