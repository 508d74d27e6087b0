import { LRUCache } from 'lru-cache';
import type { CacheStore } from './store.js';

/**
 * A process-local LRU bounded by entry count: `cifar serve` caches with nothing else installed.
 * Each worker has its own, so with several workers an image may miss once per worker.
 */
export function memoryStore(maxEntries: number): CacheStore {
  const lru = new LRUCache<string, Float32Array>({ max: maxEntries });
  return {
    kind: 'memory',
    get: (key) => Promise.resolve(lru.get(key)),
    set: (key, probs) => {
      lru.set(key, probs);
      return Promise.resolve();
    },
    connected: () => null,
    close: () => {
      lru.clear();
      return Promise.resolve();
    },
  };
}
