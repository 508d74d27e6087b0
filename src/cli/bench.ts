import { Command } from 'commander';
import { z } from 'zod';
import { BENCH_DEFAULTS as D, type BenchConfig } from '../bench/config.js';
import { runBench, type BenchOptions } from '../bench/run.js';
import { CifarError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { benchJson, formatBench, thresholdFailures } from '../report/bench.js';
import { createProgress } from '../report/progress.js';
import { action, flagName } from './run.js';

const int = (min: number) => z.coerce.number({ message: 'expected an integer' }).int({ message: 'expected an integer' }).min(min, { message: `expected an integer ≥ ${min}` });
const positive = z.coerce.number({ message: 'expected a number' }).positive({ message: 'expected a number above 0' });
const fraction = z
  .string()
  .transform((v) => (v.trim().endsWith('%') ? Number(v.trim().slice(0, -1)) / 100 : Number(v)))
  .pipe(z.number({ message: 'expected a fraction 0–1 or a percentage' }).min(0).max(1, { message: 'expected a fraction 0–1 or a percentage' }));

const Options = z.object({
  url: z.string().url({ message: 'expected an http(s) URL' }).regex(/^https?:/i, { message: 'expected an http(s) URL' }).optional(),
  requests: int(1).optional(),
  duration: positive.optional(),
  concurrency: int(1).max(10_000).default(D.concurrency),
  rate: positive.optional(),
  endpoint: z.enum(['predict', 'batch']).default(D.endpoint),
  batchSize: int(1).max(4096).optional(),
  images: z.string().min(1).optional(),
  data: z.string().min(1).default(D.dataDir),
  unique: int(1).optional(),
  warmup: int(0).default(D.warmup),
  warmupSeconds: positive.optional(),
  timeout: int(1).default(D.timeoutMs),
  spawn: z.boolean().default(false),
  model: z.string().min(1).optional(),
  workers: int(1).optional(),
  redisUrl: z.string().regex(/^rediss?:\/\//, { message: 'expected a redis:// or rediss:// URL' }).optional(),
  json: z.boolean().default(false),
  out: z.string().min(1).optional(),
  quiet: z.boolean().default(false),
  maxP99: positive.optional(),
  minRps: positive.optional(),
  maxErrorRate: fraction.optional(),
});


/** Validate raw commander options into the run's config and spawn settings (USAGE errors name the flag). */
export function parseBenchOptions(raw: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): { config: BenchConfig; spawn: BenchOptions['spawn']; opts: z.infer<typeof Options> } {
  const parsed = Options.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0]);
    throw new CifarError('USAGE', `${flagName(key)} ${String(raw[key])}: ${issue.message}`);
  }
  const o = parsed.data;
  if (o.requests !== undefined && o.duration !== undefined) throw new CifarError('USAGE', '--requests and --duration both set when to stop: give one');
  if (o.warmupSeconds !== undefined && raw['warmup'] !== undefined) throw new CifarError('USAGE', '--warmup and --warmup-seconds both set the warm-up: give one');
  if (o.batchSize !== undefined && o.endpoint !== 'batch') throw new CifarError('USAGE', '--batch-size applies to --endpoint batch only');
  if (o.spawn && o.url !== undefined) throw new CifarError('USAGE', '--spawn starts its own server on a free port: drop --url');
  for (const key of ['model', 'workers', 'redisUrl'] as const) {
    if (!o.spawn && o[key] !== undefined) throw new CifarError('USAGE', `${flagName(key)} is passed to the server that --spawn starts: add --spawn, or drop it`);
  }
  const config: BenchConfig = {
    url: o.url ?? D.url,
    ...(o.requests !== undefined ? { requests: o.requests } : { durationSeconds: o.duration ?? D.durationSeconds }),
    concurrency: o.concurrency,
    ...(o.rate !== undefined ? { rate: o.rate } : {}),
    endpoint: o.endpoint,
    batchSize: o.batchSize ?? D.batchSize,
    ...(o.images !== undefined ? { imagesDir: o.images } : {}),
    dataDir: o.data,
    ...(o.unique !== undefined ? { unique: o.unique } : {}),
    warmup: o.warmup,
    ...(o.warmupSeconds !== undefined ? { warmupSeconds: o.warmupSeconds } : {}),
    timeoutMs: o.timeout,
    ...(env.CIFAR_API_KEY ? { apiKey: env.CIFAR_API_KEY } : {}),
    thresholds: {
      ...(o.maxP99 !== undefined ? { maxP99Ms: o.maxP99 } : {}),
      ...(o.minRps !== undefined ? { minRps: o.minRps } : {}),
      ...(o.maxErrorRate !== undefined ? { maxErrorRate: o.maxErrorRate } : {}),
    },
  };
  const spawn = o.spawn ? { ...(o.model ? { model: o.model } : {}), ...(o.workers ? { workers: o.workers } : {}), ...(o.redisUrl ? { redisUrl: o.redisUrl } : {}) } : undefined;
  return { config, spawn, opts: o };
}

/** `cifar bench`: load-test the prediction API over HTTP. */
export function benchCommand(): Command {
  return new Command('bench')
    .description('load-test the prediction API: closed or open (--rate) model, HDR latency percentiles, cache hits, CI thresholds')
    .option('--url <url>', `server to load (default ${D.url})`)
    .option('--requests <n>', 'measured requests (instead of --duration)')
    .option('--duration <s>', `measured seconds (default ${D.durationSeconds})`)
    .option('--concurrency <n>', `connections (open model: most requests in flight) (default ${D.concurrency})`)
    .option('--rate <r>', 'open model: start R requests/s on schedule; latency counts from the scheduled time')
    .option('--endpoint <name>', `predict or batch (default ${D.endpoint})`)
    .option('--batch-size <k>', `images per request with --endpoint batch (default ${D.batchSize})`)
    .option('--images <dir>', 'send these image files (default: the test split under --data, else generated PNGs)')
    .option('--data <dir>', `data directory (default ${D.dataDir})`)
    .option('--unique <n>', 'cycle N distinct images (1: all cache hits); default every image is new')
    .option('--warmup <n>', `unmeasured requests first (default ${D.warmup})`)
    .option('--warmup-seconds <s>', 'or: seconds of unmeasured load first (a freshly started server runs slower for its first ~10 s)')
    .option('--timeout <ms>', `a request without an answer after MS fails (default ${D.timeoutMs})`)
    .option('--spawn', 'start `cifar serve` on a free port for this run, and stop it after')
    .option('--model <dir>', 'with --spawn: model folder for the server')
    .option('--workers <n>', 'with --spawn: server processes')
    .option('--redis-url <url>', 'with --spawn: the server shares its cache in Redis')
    .option('--json', 'print one JSON object with everything instead of the table')
    .option('--out <file>', 'also write that JSON object to FILE (atomically)')
    .option('--quiet', 'no progress output')
    .option('--max-p99 <ms>', 'exit 1 when the p99 latency is above MS')
    .option('--min-rps <x>', 'exit 1 when throughput is below X requests/s')
    .option('--max-error-rate <f>', 'exit 1 when more than F (0–1 or N%) of requests fail; without it any failure exits 1')
    .action(
      action(async ({ signal }, raw: Record<string, unknown>) => {
        const { config, spawn, opts } = parseBenchOptions(raw);
        const progress = createProgress({ quiet: opts.quiet, labels: { warmup: 'warm-up', run: 'requests', seconds: 'seconds' } });
        try {
          const result = await runBench(config, {
            ...(spawn ? { spawn } : {}),
            signal,
            onProgress: (p) => progress.update(p.phase === 'run' && p.unit === 'seconds' ? 'seconds' : p.phase, p.done, p.total),
            onNote: (message) => progress.note(message),
          });
          progress.stop();
          process.stdout.write(opts.json ? benchJson(result) : formatBench(result));
          if (opts.out) await writeFileAtomic(opts.out, benchJson(result), `--out ${opts.out}`);
          if (result.interrupted) throw new CifarError('ABORTED', 'interrupted');
          if (!result.thresholds.passed) throw new CifarError('THRESHOLD_MISSED', `threshold missed: ${thresholdFailures(result)}`);
        } finally {
          progress.stop();
        }
      }),
    );
}
