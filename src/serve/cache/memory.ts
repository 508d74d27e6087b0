import { LRUCache } from 'lru-cache';
import type { CacheStore } from './store.js';

/**
 * A process-local LRU bounded by entry count: `cifar serve` caches with nothing else installed.
 * Each worker has its own; with several workers it is the fast path in front of the primary's
 * shared LRU (cache/cluster.ts), asked over IPC only on a local miss.
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
