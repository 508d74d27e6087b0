import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { BUNDLED_MODEL_DIR } from '../model/store.js';
import type { BackendRequest } from '../backend/index.js';

/** Everything `cifar serve` can be told; the CLI validates flags into this object. */
export interface ServeConfig {
  port: number;
  host: string;
  /** Model folder handed to the predictor factory. */
  model: string;
  /** tfjs backend, or undefined for the loader's default. */
  backend: BackendRequest | undefined;
  /** Flip test-time augmentation: two forward passes an image (predictor.ts). */
  tta: boolean;
  /** Run the model in a worker thread of each process (CPU backends), off the event loop. */
  inferenceThread: boolean;
  workers: number;
  redisUrl: string | undefined;
  cacheTtlSeconds: number;
  /** Deadline of one Redis command; a slower Redis is skipped until it answers in time again. */
  redisTimeoutMs: number;
  cacheSize: number;
  /** With several workers: how long a worker waits for another computing the same image. */
  flightWaitMs: number;
  maxBatch: number;
  batchWaitMs: number;
  maxQueue: number;
  maxUploadBytes: number;
  maxFiles: number;
  maxImagePixels: number;
  requestTimeoutMs: number;
  drainMs: number;
  apiKey: string | undefined;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

/** The defaults, in one place. */
export const SERVE_DEFAULTS: ServeConfig = {
  port: 8000,
  // Loopback unless asked: a model API should not be exposed by accident.
  host: '127.0.0.1',
  model: BUNDLED_MODEL_DIR,
  backend: undefined,
  tta: false,
  // Off: on 2 cores the thread cost 6-16% of the uncached throughput (README, cifar serve).
  inferenceThread: false,
  // One process per core: tfjs (wasm/cpu) runs one forward pass at a time per process.
  workers: usableCores(),
  redisUrl: undefined,
  // An hour: long enough to absorb repeated uploads, short enough to forget old images.
  cacheTtlSeconds: 3600,
  // A loopback or LAN Redis answers in well under 1 ms; past this a cache costs more than it saves.
  redisTimeoutMs: 100,
  // Entries, not bytes: one entry is ~10 floats plus a 64-char key, so 100k is ~20 MB.
  cacheSize: 100_000,
  // Several full queues of forward passes: past this the computing worker is likely stuck, and a
  // waiter computes itself rather than wait for it.
  flightWaitMs: 3000,
  maxBatch: 32,
  // Just enough to gather concurrent requests; at low load it costs 2 ms of latency.
  batchWaitMs: 2,
  // About 8 full batches: beyond that a client waits longer than retrying elsewhere would.
  maxQueue: 256,
  maxUploadBytes: 10 * 1024 * 1024,
  maxFiles: 64,
  // 40 megapixels covers any real photo; a decompression bomb is far larger.
  maxImagePixels: 40_000_000,
  // Deadline of one request, body upload included: slow clients are cut off here.
  requestTimeoutMs: 30_000,
  // How long SIGTERM waits for in-flight requests before closing their connections.
  drainMs: 10_000,
  apiKey: undefined,
  logLevel: 'info',
};

/**
 * Cores this process may use: the machine's, capped by a cgroup v2 CPU quota (a container with
 * `cpus: 2` on a 64-core host must not start 64 workers).
 */
export function usableCores(cpuMax = readCpuMax()): number {
  const cores = availableParallelism();
  const m = /^(\d+)\s+(\d+)/.exec(cpuMax ?? '');
  if (!m) return cores;
  return Math.max(1, Math.min(cores, Math.floor(Number(m[1]) / Number(m[2]))));
}

function readCpuMax(): string | undefined {
  try {
    return readFileSync('/sys/fs/cgroup/cpu.max', 'utf8');
  } catch {
    return undefined;
  }
}
