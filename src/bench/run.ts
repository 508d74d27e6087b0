import { CifarError, isCifarError } from '../errors.js';
import { BENCH_DEFAULTS, type BenchConfig } from './config.js';
import { createClient, probeServer, type BenchClient } from './http.js';
import { loadImageSource, type ImageSource } from './images.js';
import { runLoop } from './loop.js';
import { buildResult, Tally, type BenchParameters, type BenchResult } from './result.js';
import { spawnServer, type SpawnOptions, type SpawnedServer } from './spawn.js';

/** Progress of a run: requests done of a known total, or seconds elapsed of a duration. */
export interface BenchProgress {
  phase: 'warmup' | 'run';
  unit: 'requests' | 'seconds';
  done: number;
  total: number;
}

export interface BenchOptions {
  /** Start `cifar serve` on a free port for this run (and stop it after); `config.url` is then unused. */
  spawn?: Omit<SpawnOptions, 'signal'>;
  /** Aborting stops the run; the result then covers what was done and says `interrupted`. */
  signal?: AbortSignal;
  onProgress?(progress: BenchProgress): void;
  /** One-line notes (waiting for the server, warm-up). */
  onNote?(message: string): void;
  /** Wait this long for /ready (default BENCH_DEFAULTS.readyTimeoutMs). */
  readyTimeoutMs?: number;
}

const PROGRESS_EVERY_MS = 200;

/**
 * Load-test a prediction server over HTTP and return one serialisable result. Never prints and
 * never exits: progress goes to the callbacks, failures are thrown as CifarError.
 *
 * @example
 *   const result = await runBench({ ...config, unique: 1, durationSeconds: 5 }, { onNote: console.error });
 *   result.throughput.requestsPerSecond; result.latencyMs?.p99;
 */
export async function runBench(config: BenchConfig, options: BenchOptions = {}): Promise<BenchResult> {
  // The image source first: a bad --images folder is reported before any server is touched.
  const images = await loadImageSource({ imagesDir: config.imagesDir, dataDir: config.dataDir, unique: config.unique });
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let server: SpawnedServer | undefined;
  try {
    if (options.spawn) {
      options.onNote?.('starting `cifar serve` for this run');
      server = await spawnServer({ ...options.spawn, signal: stop.signal });
      // A server dying mid-run stops the loops rather than letting them count refused connections.
      server.exited.catch(onAbort);
    }
    const url = server?.url ?? config.url;
    const probe = probeServer(url, {
      readyTimeoutMs: options.readyTimeoutMs ?? BENCH_DEFAULTS.readyTimeoutMs,
      starting: server !== undefined,
      signal: stop.signal,
      ...(config.apiKey ? { apiKey: config.apiKey } : {}),
      onWaiting: () => options.onNote?.(`waiting for ${url}/ready`),
    });
    const info = await (server ? Promise.race([probe, server.exited]) : probe);
    const client = createClient(url, { connections: config.concurrency, timeoutMs: config.timeoutMs, endpoint: config.endpoint, ...(config.apiKey ? { apiKey: config.apiKey } : {}) });
    try {
      const run = measure(config, client, images, stop.signal, options);
      const result = await (server ? Promise.race([run, server.exited]) : run);
      const parameters = describe(config, images, url, server !== undefined);
      return buildResult({ ...result, parameters, thresholds: config.thresholds, modelVersion: info.modelVersion, interrupted: options.signal?.aborted ?? false });
    } finally {
      await client.close();
    }
  } catch (err) {
    // Ctrl-C while waiting for the server surfaces as an AbortError from a timer: say it plainly.
    if (options.signal?.aborted && !isCifarError(err)) throw new CifarError('ABORTED', 'interrupted', { cause: err });
    throw err;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    await server?.stop();
  }
}

async function measure(config: BenchConfig, client: BenchClient, images: ImageSource, signal: AbortSignal, options: BenchOptions) {
  const perRequest = config.endpoint === 'batch' ? config.batchSize : 1;
  // A repeated image gets the same body object back: no copying or garbage per request.
  const bodies = new WeakMap<Buffer, Buffer>();
  const single = (image: Buffer) => bodies.get(image) ?? bodies.set(image, client.body([image])).get(image)!;
  const prepare = perRequest === 1 ? () => single(images.next()) : () => client.body(Array.from({ length: perRequest }, () => images.next()));
  const send = (body: Buffer) => client.send(body);

  if (config.warmupSeconds !== undefined) {
    const seconds = config.warmupSeconds;
    options.onNote?.(`warm-up: ${seconds} s of load, not measured`);
    const w0 = Date.now();
    const record = () => void options.onProgress?.({ phase: 'warmup', unit: 'seconds', done: Math.min(seconds, Math.floor((Date.now() - w0) / 1000)), total: seconds });
    await runLoop({ concurrency: config.concurrency, durationMs: seconds * 1000, signal, prepare, send, record });
  } else if (config.warmup > 0) {
    options.onNote?.(`warm-up: ${config.warmup} request${config.warmup === 1 ? '' : 's'}, not measured`);
    let done = 0;
    await runLoop({ concurrency: config.concurrency, requests: config.warmup, signal, prepare, send, record: () => void options.onProgress?.({ phase: 'warmup', unit: 'requests', done: ++done, total: config.warmup }) });
  }

  const tally = new Tally();
  const scheduled = config.requests ?? (config.rate !== undefined ? Math.max(1, Math.floor(config.rate * config.durationSeconds!)) : undefined);
  const startedAt = new Date();
  const t0 = Date.now();
  const tick = () =>
    options.onProgress?.(
      scheduled !== undefined
        ? { phase: 'run', unit: 'requests', done: tally.completed, total: scheduled }
        : { phase: 'run', unit: 'seconds', done: Math.min(config.durationSeconds!, Math.floor((Date.now() - t0) / 1000)), total: config.durationSeconds! },
    );
  const timer = setInterval(tick, PROGRESS_EVERY_MS);
  const cpuBefore = process.cpuUsage();
  try {
    const { elapsedMs } = await runLoop({
      concurrency: config.concurrency,
      ...(config.requests !== undefined ? { requests: config.requests } : { durationMs: config.durationSeconds! * 1000 }),
      ...(config.rate !== undefined ? { rate: config.rate } : {}),
      signal,
      prepare,
      send,
      onSend: () => void tally.sent++,
      record: (outcome, ms, late) => {
        if (late) tally.late++;
        tally.record(outcome, ms);
      },
    });
    const cpu = process.cpuUsage(cpuBefore);
    tick();
    return { tally, startedAt, elapsedSeconds: elapsedMs / 1000, cpu };
  } finally {
    clearInterval(timer);
  }
}

function describe(config: BenchConfig, images: ImageSource, url: string, spawned: boolean): BenchParameters {
  return {
    url,
    endpoint: config.endpoint,
    model: config.rate === undefined ? 'closed' : 'open',
    concurrency: config.concurrency,
    rate: config.rate ?? null,
    requests: config.requests ?? null,
    durationSeconds: config.durationSeconds ?? null,
    batchSize: config.endpoint === 'batch' ? config.batchSize : 1,
    warmup: config.warmup,
    warmupSeconds: config.warmupSeconds ?? null,
    timeoutMs: config.timeoutMs,
    images: { source: images.kind, path: images.path ?? null, bases: images.bases, distinct: images.distinct },
    spawned,
  };
}
