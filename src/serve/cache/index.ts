import * as crypto from 'node:crypto';
import { memoryStore } from './memory.js';
import { redisStore } from './redis.js';
import type { CacheStore } from './store.js';

export type { CacheStore } from './store.js';
export { memoryStore } from './memory.js';
export { redisStore } from './redis.js';

export interface CacheEvents {
  onHit?: () => void;
  onMiss?: () => void;
  /** A store command failed; the request goes on uncached. */
  onError?: (err: unknown) => void;
}

export interface CacheResult {
  probs: Float32Array;
  /** True when this request cost no inference: a stored answer, or one computed for a twin in flight. */
  cached: boolean;
}

/** The prediction cache in front of the model: never throws because of the store. */
export interface PredictionCache {
  readonly store: CacheStore;
  /**
   * The stored probabilities for `key`, or `compute()`'s, run once however many requests for the
   * same key arrive while it runs (single-flight), then stored without making the client wait.
   */
  resolve(key: string, compute: () => Promise<Float32Array>): Promise<CacheResult>;
  connected(): boolean | null;
  close(): Promise<void>;
}

/**
 * Key of one upload under one model: a new model version never serves an old model's answer,
 * identical bytes under another file name still hit, and a server with flip TTA (`tta`) never
 * shares answers with one without, in a Redis they share.
 */
export function cacheKey(modelVersion: string, bytes: Uint8Array, tta = false): string {
  return `cifar:pred:${modelVersion}${tta ? '+flip' : ''}:${sha256Hex(bytes)}`;
}

// The one-shot crypto.hash (Node ≥ 20.12) skips building a Hash object for each upload.
const sha256Hex: (bytes: Uint8Array) => string =
  typeof crypto.hash === 'function' ? (bytes) => crypto.hash('sha256', bytes, 'hex') : (bytes) => crypto.createHash('sha256').update(bytes).digest('hex');

/** Memory LRU by default, Redis when a URL is given. */
export function createStore(options: {
  redisUrl?: string | undefined;
  ttlSeconds: number;
  maxEntries: number;
  commandTimeoutMs?: number;
  onConnectionError?: (err: Error) => void;
}): CacheStore {
  return options.redisUrl
    ? redisStore({ url: options.redisUrl, ttlSeconds: options.ttlSeconds, commandTimeoutMs: options.commandTimeoutMs, onError: options.onConnectionError })
    : memoryStore(options.maxEntries);
}

/**
 * The cache beyond this process (the other workers of a cluster): asked on a local miss, it
 * hands back an answer stored or computed elsewhere, or tells this process to compute.
 */
export interface SharedFlights {
  /**
   * The answer for `key` from elsewhere (possibly after waiting for another worker computing
   * it), or undefined: compute it here, then call `finish`.
   */
  claim(key: string): Promise<Float32Array | undefined>;
  /** The outcome of a claim answered undefined: the probabilities, or undefined if it failed. */
  finish(key: string, probs: Float32Array | undefined): void;
}

/**
 * Wrap a store with single-flight and failure isolation. With `shared`, a miss here asks the
 * other workers before computing, so one image is inferred once across the cluster.
 */
export function createPredictionCache(store: CacheStore, events: CacheEvents = {}, shared?: SharedFlights): PredictionCache {
  const inflight = new Map<string, Promise<Float32Array>>();
  // A memory store is this process's own: an answer from another worker is kept in it too.
  const nearCache = store.kind === 'memory';

  const join = async (pending: Promise<Float32Array>): Promise<CacheResult> => {
    events.onHit?.();
    return { probs: await pending, cached: true };
  };

  /** The stored answer, or undefined when there is none or the store failed (counted, never thrown). */
  const read = async (key: string): Promise<Float32Array | undefined> => {
    try {
      return await store.get(key);
    } catch (err) {
      events.onError?.(err);
      return undefined;
    }
  };

  const run = async (key: string, compute: () => Promise<Float32Array>, state: { computed: boolean }): Promise<Float32Array> => {
    const elsewhere = shared ? await shared.claim(key) : undefined;
    if (elsewhere) return elsewhere;
    // Told to compute. With a store the workers share (Redis), the previous computation of this
    // key may have been stored between our read and our claim, and its flight ended with it:
    // read again, so that one image is computed once however the requests interleave.
    if (shared && !nearCache) {
      const late = await read(key);
      if (late) {
        shared.finish(key, late);
        return late;
      }
    }
    state.computed = true;
    events.onMiss?.();
    try {
      return await compute();
    } catch (err) {
      shared?.finish(key, undefined);
      throw err;
    }
  };

  return {
    store,
    async resolve(key, compute) {
      const pending = inflight.get(key);
      if (pending) return join(pending);
      const stored = await read(key);
      if (stored) {
        events.onHit?.();
        return { probs: stored, cached: true };
      }
      // A twin may have started while we asked the store.
      const twin = inflight.get(key);
      if (twin) return join(twin);
      const state = { computed: false };
      const flight = run(key, compute, state);
      inflight.set(key, flight);
      let probs: Float32Array;
      try {
        probs = await flight;
      } catch (err) {
        inflight.delete(key);
        throw err;
      }
      if (!state.computed) {
        events.onHit?.();
        if (nearCache) void store.set(key, probs);
        inflight.delete(key);
        return { probs, cached: true };
      }
      // Keep the flight open until the store has it, so a request arriving meanwhile neither
      // misses in the store nor recomputes; the other workers hear of it once it is stored too.
      void store
        .set(key, probs)
        .catch((err: unknown) => events.onError?.(err))
        .finally(() => {
          shared?.finish(key, probs);
          inflight.delete(key);
        });
      return { probs, cached: false };
    },
    connected: () => store.connected(),
    close: () => store.close(),
  };
}
