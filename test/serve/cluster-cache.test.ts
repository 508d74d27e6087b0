import cluster, { type Worker } from 'node:cluster';
import { afterEach, describe, expect, it } from 'vitest';
import { serveClusterCache } from '../../src/serve/cache/cluster.js';
import { createPredictionCache, memoryStore, type SharedFlights } from '../../src/serve/cache/index.js';

const probs = (v: number) => new Float32Array([v, 1 - v]);

/** A stand-in worker: what the primary sends it is recorded instead of crossing IPC. */
function fakeWorker(): Worker & { inbox: { id?: number; probs?: number[] }[] } {
  const inbox: { id?: number; probs?: number[] }[] = [];
  return { inbox, isConnected: () => true, send: (m: { id?: number; probs?: number[] }) => (inbox.push(m), true) } as unknown as Worker & { inbox: typeof inbox };
}
const claim = (w: Worker, id: number, key: string) => cluster.emit('message', w, { type: 'cifar:cache-claim', id, key });
const finish = (w: Worker, key: string, p?: number[]) => cluster.emit('message', w, { type: 'cifar:cache-finish', key, probs: p });

describe('the primary of the cross-worker cache', () => {
  let dispose = () => {};
  afterEach(() => dispose());

  it('tells the first asker to compute, holds the others, then answers them and remembers', () => {
    ({ dispose } = serveClusterCache({ maxEntries: 10, waitMs: 1000 }));
    const [a, b, c] = [fakeWorker(), fakeWorker(), fakeWorker()];
    claim(a, 1, 'k');
    claim(b, 7, 'k');
    expect(a.inbox).toEqual([{ type: 'cifar:cache-answer', id: 1, probs: undefined }]);
    expect(b.inbox).toEqual([]);
    finish(a, 'k', [0.25, 0.75]);
    expect(b.inbox).toEqual([{ type: 'cifar:cache-answer', id: 7, probs: [0.25, 0.75] }]);
    claim(c, 3, 'k');
    expect(c.inbox).toEqual([{ type: 'cifar:cache-answer', id: 3, probs: [0.25, 0.75] }]);
  });

  it('with Redis as the store (no LRU) it only coordinates: a finished key is computed again', () => {
    ({ dispose } = serveClusterCache({ maxEntries: 0, waitMs: 1000 }));
    const a = fakeWorker();
    claim(a, 1, 'k');
    finish(a, 'k', [0.5, 0.5]);
    claim(a, 2, 'k');
    expect(a.inbox.map((m) => m.probs)).toEqual([undefined, undefined]);
  });

  it('waiters compute themselves when the leader fails, exits, or passes the deadline', async () => {
    ({ dispose } = serveClusterCache({ maxEntries: 10, waitMs: 50 }));
    const [a, b] = [fakeWorker(), fakeWorker()];
    claim(a, 1, 'failed');
    claim(b, 2, 'failed');
    finish(a, 'failed');
    claim(a, 3, 'exited');
    claim(b, 4, 'exited');
    cluster.emit('exit', a, 1, null);
    claim(a, 5, 'slow');
    claim(b, 6, 'slow');
    expect(b.inbox).toEqual([
      { type: 'cifar:cache-answer', id: 2, probs: undefined },
      { type: 'cifar:cache-answer', id: 4, probs: undefined },
    ]);
    await new Promise((r) => setTimeout(r, 80));
    expect(b.inbox.at(-1)).toEqual({ type: 'cifar:cache-answer', id: 6, probs: undefined });
  });
});

describe('prediction cache with shared flights', () => {
  it('takes an answer from elsewhere as a hit, keeps it locally, and computes nothing', async () => {
    const store = memoryStore(10);
    const shared: SharedFlights = { claim: async () => probs(0.2), finish: () => expect.fail('nothing was computed') };
    const counts = { hit: 0, miss: 0 };
    const cache = createPredictionCache(store, { onHit: () => counts.hit++, onMiss: () => counts.miss++ }, shared);
    expect(await cache.resolve('k', () => expect.fail('must not compute'))).toEqual({ probs: probs(0.2), cached: true });
    expect(await store.get('k')).toEqual(probs(0.2));
    expect(counts).toEqual({ hit: 1, miss: 0 });
  });

  it('computes when told to and reports the outcome once it is stored, or the failure', async () => {
    const finished: [string, Float32Array | undefined][] = [];
    const shared: SharedFlights = { claim: async () => undefined, finish: (k, p) => finished.push([k, p]) };
    const cache = createPredictionCache(memoryStore(10), {}, shared);
    expect(await cache.resolve('ok', async () => probs(0.4))).toEqual({ probs: probs(0.4), cached: false });
    await expect(cache.resolve('bad', () => Promise.reject(new Error('bad image')))).rejects.toThrow('bad image');
    await new Promise((r) => setImmediate(r));
    expect(new Map(finished)).toEqual(
      new Map<string, Float32Array | undefined>([
        ['ok', probs(0.4)],
        ['bad', undefined],
      ]),
    );
  });
});
