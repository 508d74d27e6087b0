import { Command } from 'commander';
import { z } from 'zod';
import { BACKEND_NAMES, type BackendRequest } from '../backend/index.js';
import { CifarError } from '../errors.js';
import type { Predictor } from '../model/predictor.js';
import { SERVE_DEFAULTS, startServe, type ServeConfig } from '../serve/index.js';
import { action, flagName } from './run.js';

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int({ message: 'expected an integer' }).min(min).max(max);
const D = SERVE_DEFAULTS;

const Options = z.object({
  port: int(0, 65535).default(D.port),
  host: z.string().min(1).default(D.host),
  model: z.string().min(1).default(D.model),
  backend: z.enum(BACKEND_NAMES).optional(),
  tta: z.boolean().default(D.tta),
  inferenceThread: z.boolean().default(D.inferenceThread),
  workers: int(1, 256).default(D.workers),
  redisUrl: z.string().regex(/^rediss?:\/\//, { message: 'expected a redis:// or rediss:// URL' }).optional(),
  cacheTtl: int(1).default(D.cacheTtlSeconds),
  redisTimeout: int(1, 60_000).default(D.redisTimeoutMs),
  cacheSize: int(1).default(D.cacheSize),
  maxBatch: int(1, 4096).default(D.maxBatch),
  batchWaitMs: z.coerce.number().min(0).max(1000).default(D.batchWaitMs),
  maxQueue: int(1).default(D.maxQueue),
  maxUploadBytes: int(1).default(D.maxUploadBytes),
  maxFiles: int(1, 10_000).default(D.maxFiles),
  maxPixels: int(1).default(D.maxImagePixels),
  requestTimeout: int(1, 3_600_000).default(D.requestTimeoutMs),
  drainTimeout: z.coerce.number().min(0).max(3600).default(D.drainMs / 1000),
  apiKey: z.string().min(1, { message: 'must not be empty' }).optional(),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default(D.logLevel),
});

/**
 * Options an operator may set in the environment instead (a flag wins): where to reach Redis,
 * the secret, and the timings a deployment tunes to its orchestrator (grace period, proxies).
 */
const ENV: Partial<Record<keyof z.input<typeof Options>, string>> = {
  redisUrl: 'REDIS_URL',
  apiKey: 'CIFAR_API_KEY',
  drainTimeout: 'CIFAR_DRAIN_TIMEOUT',
  requestTimeout: 'CIFAR_REQUEST_TIMEOUT',
  redisTimeout: 'CIFAR_REDIS_TIMEOUT',
};


/** Validate raw commander options (plus the variables of ENV) into the server config. */
export function parseServeOptions(raw: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): ServeConfig {
  const withEnv: Record<string, unknown> = { ...raw };
  const fromEnv = new Set<string>();
  for (const [key, name] of Object.entries(ENV)) {
    if (withEnv[key] === undefined && env[name]) {
      withEnv[key] = env[name];
      fromEnv.add(key);
    }
  }
  const parsed = Options.safeParse(withEnv);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0]);
    // Never echo a secret back into logs.
    const shown = key === 'apiKey' ? '' : `${fromEnv.has(key) ? '=' : ' '}${String(withEnv[key])}`;
    throw new CifarError('USAGE', `${fromEnv.has(key) ? ENV[key as keyof typeof ENV] : flagName(key)}${shown}: ${issue.message}`);
  }
  const o = parsed.data;
  return {
    ...D,
    port: o.port,
    host: o.host,
    model: o.model,
    backend: o.backend,
    tta: o.tta,
    inferenceThread: o.inferenceThread,
    workers: o.workers,
    redisUrl: o.redisUrl,
    cacheTtlSeconds: o.cacheTtl,
    redisTimeoutMs: o.redisTimeout,
    cacheSize: o.cacheSize,
    maxBatch: o.maxBatch,
    batchWaitMs: o.batchWaitMs,
    maxQueue: o.maxQueue,
    maxUploadBytes: o.maxUploadBytes,
    maxFiles: o.maxFiles,
    maxImagePixels: o.maxPixels,
    requestTimeoutMs: o.requestTimeout,
    drainMs: Math.round(o.drainTimeout * 1000),
    apiKey: o.apiKey,
    logLevel: o.logLevel,
  };
}

/** `cifar serve`: the prediction API. `load` turns a model folder into a Predictor. */
export function serveCommand(load: (modelDir: string, backend: BackendRequest | undefined, options: { tta: boolean; thread: boolean }) => Promise<Predictor>): Command {
  return new Command('serve')
    .description('serve the prediction API (Hono): dynamic batching, cache, metrics, one worker per core')
    .option('--port <n>', `port to listen on (default ${D.port})`)
    .option('--host <addr>', `address to bind (default ${D.host})`)
    .option('--model <dir>', `model folder (default ${D.model})`)
    .option('--backend <name>', `tfjs backend: ${BACKEND_NAMES.join(', ')} (default: the loader's)`)
    .option('--tta', 'flip test-time augmentation: answer with the mean of each image\'s and its mirror image\'s probabilities (twice the compute an image)')
    .option('--inference-thread', 'run the model in a worker thread of each process (wasm, cpu), so forward passes never delay cache hits, /health or /metrics (costs some uncached throughput on few cores)')
    .option('--workers <n>', `processes, each with its own model (default: CPU cores, ${D.workers})`)
    .option('--redis-url <url>', 'share the cache in Redis (default: in-process LRU; env REDIS_URL)')
    .option('--cache-ttl <seconds>', `Redis cache entry lifetime (default ${D.cacheTtlSeconds})`)
    .option('--redis-timeout <ms>', `deadline of one Redis command; a slower Redis is skipped, answers served uncached (default ${D.redisTimeoutMs}; env CIFAR_REDIS_TIMEOUT)`)
    .option('--cache-size <n>', `memory cache entries, per worker and shared by the workers (default ${D.cacheSize})`)
    .option('--max-batch <n>', `images per forward pass (default ${D.maxBatch})`)
    .option('--batch-wait-ms <ms>', `longest wait to fill a batch; none after a pass of one image (default ${D.batchWaitMs})`)
    .option('--max-queue <n>', `images waiting before 503 (default ${D.maxQueue})`)
    .option('--max-upload-bytes <n>', `largest request body (default ${D.maxUploadBytes})`)
    .option('--max-files <n>', `files in one /predict/batch request (default ${D.maxFiles})`)
    .option('--max-pixels <n>', `largest image, width × height, refused before decoding (default ${D.maxImagePixels})`)
    .option('--request-timeout <ms>', `deadline of one request, upload included: slow clients get 408 (default ${D.requestTimeoutMs}; env CIFAR_REQUEST_TIMEOUT)`)
    .option('--drain-timeout <s>', `on SIGTERM/SIGINT, how long in-flight requests may finish (default ${D.drainMs / 1000}; env CIFAR_DRAIN_TIMEOUT)`)
    .option('--api-key <key>', 'require this key on prediction routes (env CIFAR_API_KEY)')
    .option('--log-level <level>', `fatal, error, warn, info, debug, trace or silent (default ${D.logLevel})`)
    .action(
      action(async ({ signal }, raw: Record<string, unknown>) => {
        const config = parseServeOptions(raw);
        await startServe(config, {
          loadPredictor: () => load(config.model, config.backend, { tta: config.tta, thread: config.inferenceThread }),
          signal,
          onListening: ({ url, workers }) => process.stderr.write(`serving on ${url} (${workers} worker${workers === 1 ? '' : 's'})\n`),
        });
      }),
    );
}
