import { describe, expect, it } from 'vitest';
import { cacheKey, createPredictionCache, memoryStore, type CacheStore } from '../../src/serve/cache/index.js';

const probs = (v: number) => new Float32Array([v, 1 - v]);

describe('prediction cache', () => {
  it('keys on the bytes, the model version and flip TTA', () => {
    const a = new Uint8Array([1, 2, 3]);
    expect(cacheKey('v1', a)).toBe(cacheKey('v1', new Uint8Array([1, 2, 3])));
    expect(cacheKey('v1', a)).not.toBe(cacheKey('v2', a));
    expect(cacheKey('v1', a)).toMatch(/^cifar:pred:v1:[0-9a-f]{64}$/);
    expect(cacheKey('v1', a, true)).toBe(cacheKey('v1', a).replace('v1:', 'v1+flip:'));
  });

  it('the memory store is an LRU bounded by entry count', async () => {
    const store = memoryStore(2);
    await store.set('a', probs(0.1));
    await store.set('b', probs(0.2));
    await store.get('a');
    await store.set('c', probs(0.3));
    expect(await store.get('b')).toBeUndefined();
    expect(await store.get('a')).toEqual(probs(0.1));
    expect(store.connected()).toBeNull();
  });

  it('runs concurrent identical misses once (single-flight) and stores the answer', async () => {
    const counts = { hit: 0, miss: 0 };
    const cache = createPredictionCache(memoryStore(10), { onHit: () => counts.hit++, onMiss: () => counts.miss++ });
    let computed = 0;
    const compute = async () => {
      computed++;
      await new Promise((r) => setTimeout(r, 20));
      return probs(0.5);
    };
    const results = await Promise.all(Array.from({ length: 5 }, () => cache.resolve('k', compute)));
    expect(computed).toBe(1);
    expect(results.filter((r) => !r.cached)).toHaveLength(1);
    expect(counts).toEqual({ hit: 4, miss: 1 });
    await new Promise((r) => setImmediate(r));
    expect(await cache.resolve('k', compute)).toMatchObject({ cached: true });
    expect(computed).toBe(1);
  });

  it('a failing store means uncached answers and counted errors, never a failure', async () => {
    const broken: CacheStore = {
      kind: 'redis',
      get: () => Promise.reject(new Error('ECONNREFUSED')),
      set: () => Promise.reject(new Error('ECONNREFUSED')),
      connected: () => false,
      close: () => Promise.resolve(),
    };
    let errors = 0;
    const cache = createPredictionCache(broken, { onError: () => errors++ });
    const r = await cache.resolve('k', async () => probs(0.3));
    expect(r).toEqual({ probs: probs(0.3), cached: false });
    await new Promise((res) => setTimeout(res, 5));
    expect(errors).toBe(2);
  });

  it('a failed computation reaches every waiter and is not cached', async () => {
    const cache = createPredictionCache(memoryStore(10));
    const fail = () => Promise.reject(new Error('bad image'));
    await expect(Promise.all([cache.resolve('k', fail), cache.resolve('k', fail)])).rejects.toThrow('bad image');
    expect(await cache.resolve('k', async () => probs(0.9))).toMatchObject({ cached: false });
  });
});
