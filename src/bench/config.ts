/** Which route a benchmark drives. */
export type BenchEndpoint = 'predict' | 'batch';

/** Pass/fail limits for CI; an unset limit is not checked. */
export interface BenchThresholds {
  /** Highest acceptable p99 latency of successful answers, in ms. */
  maxP99Ms?: number;
  /** Lowest acceptable throughput, successful requests per second. */
  minRps?: number;
  /** Highest acceptable share of failed requests (0–1); unset means any failure fails the run. */
  maxErrorRate?: number;
}

/** Everything one `cifar bench` run needs, already validated. */
export interface BenchConfig {
  /** Base URL of the server (ignored with `spawn`, which picks its own). */
  url: string;
  /** Stop after this many measured requests… */
  requests?: number;
  /** …or after this many seconds (exactly one of the two is set). */
  durationSeconds?: number;
  /** Closed model: connections each sending its next request on the last answer. Open model: most requests in flight. */
  concurrency: number;
  /** Open model: requests per second on a fixed schedule; undefined for the closed model. */
  rate?: number;
  endpoint: BenchEndpoint;
  /** Images per request on the batch endpoint (1 on /predict). */
  batchSize: number;
  /** A folder of image files to send; otherwise the dataset's test split, otherwise generated noise. */
  imagesDir?: string;
  /** Data directory holding cifar-10-batches-bin (the second image source). */
  dataDir: string;
  /** Cycle this many distinct images; undefined means every image sent is new. */
  unique?: number;
  /** Requests sent before measuring, not counted. */
  warmup: number;
  /** Or: seconds of load before measuring, not counted (a fresh server's JIT takes seconds to settle). */
  warmupSeconds?: number;
  /** A request without a full answer after this many ms counts as a timeout. */
  timeoutMs: number;
  /** Sent as `X-API-Key` when the server requires one. */
  apiKey?: string;
  thresholds: BenchThresholds;
}

/** The defaults, in one place. */
export const BENCH_DEFAULTS = {
  /** Where `cifar serve` listens by default. */
  url: 'http://127.0.0.1:8000',
  /** wrk and autocannon default to a 10 s run: long enough to leave warm-up noise behind. */
  durationSeconds: 10,
  /** autocannon's default connection count. */
  concurrency: 10,
  endpoint: 'predict' as BenchEndpoint,
  /** A typical client batch, well under the server's --max-batch. */
  batchSize: 8,
  dataDir: 'data',
  /** The server warms its model before /ready; its JIT still needs seconds of load (see --warmup-seconds). */
  warmup: 0,
  /** autocannon's default. */
  timeoutMs: 10_000,
  /** How long to wait for /ready (a spawned server loads and warms its model first). */
  readyTimeoutMs: 120_000,
} as const;
