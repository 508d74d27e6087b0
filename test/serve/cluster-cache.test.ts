import cluster, { type Worker } from 'node:cluster';
import { afterEach, describe, expect, it } from 'vitest';
import { clusterFlights, serveClusterCache } from '../../src/serve/cache/cluster.js';
import { createPredictionCache, memoryStore, type SharedFlights } from '../../src/serve/cache/index.js';

const probs = (v: number) => new Float32Array([v, 1 - v]);
/** The primary and the workers send what one event-loop turn produced after that turn. */
const turn = () => new Promise((r) => setImmediate(r));

type Answer = { id: number; probs?: number[] };
/** A stand-in worker: what the primary sends it is recorded instead of crossing IPC. */
function fakeWorker(): Worker & { messages: { type: string; answers: Answer[] }[]; inbox: Answer[] } {
  const messages: { type: string; answers: Answer[] }[] = [];
  return {
    messages,
    get inbox() {
      return messages.flatMap((m) => m.answers);
    },
    isConnected: () => true,
    send: (m: (typeof messages)[number]) => (messages.push(m), true),
  } as unknown as Worker & { messages: typeof messages; inbox: Answer[] };
}
const claim = (w: Worker, id: number, key: string) => cluster.emit('message', w, { type: 'cifar:cache', claims: [{ id, key }] });
const finish = (w: Worker, key: string, p?: number[]) => cluster.emit('message', w, { type: 'cifar:cache', finishes: [p ? { key, probs: p } : { key }] });

describe('the primary of the cross-worker cache', () => {
  let dispose = () => {};
  afterEach(() => dispose());

  it('tells the first asker to compute, holds the others, then answers them and remembers', async () => {
    ({ dispose } = serveClusterCache({ maxEntries: 10, waitMs: 1000 }));
    const [a, b, c] = [fakeWorker(), fakeWorker(), fakeWorker()];
    claim(a, 1, 'k');
    claim(b, 7, 'k');
    await turn();
    expect(a.inbox).toEqual([{ id: 1 }]);
    expect(b.inbox).toEqual([]);
    finish(a, 'k', [0.25, 0.75]);
    await turn();
    expect(b.inbox).toEqual([{ id: 7, probs: [0.25, 0.75] }]);
    claim(c, 3, 'k');
    await turn();
    expect(c.inbox).toEqual([{ id: 3, probs: [0.25, 0.75] }]);
  });

  it('answers all the claims of one turn in one message per worker', async () => {
    ({ dispose } = serveClusterCache({ maxEntries: 10, waitMs: 1000 }));
    const a = fakeWorker();
    cluster.emit('message', a, { type: 'cifar:cache', finishes: [{ key: 'done', probs: [1, 0] }], claims: [{ id: 1, key: 'new' }, { id: 2, key: 'done' }] });
    claim(a, 3, 'other');
    await turn();
    expect(a.messages).toEqual([{ type: 'cifar:cache-answers', answers: [{ id: 1 }, { id: 2, probs: [1, 0] }, { id: 3 }] }]);
  });

  it('with Redis as the store (no LRU) it only coordinates: a finished key is computed again', async () => {
    ({ dispose } = serveClusterCache({ maxEntries: 0, waitMs: 1000 }));
    const a = fakeWorker();
    claim(a, 1, 'k');
    finish(a, 'k', [0.5, 0.5]);
    claim(a, 2, 'k');
    await turn();
    expect(a.inbox).toEqual([{ id: 1 }, { id: 2 }]);
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
    await turn();
    expect(b.inbox).toEqual([{ id: 2 }, { id: 4 }]);
    await new Promise((r) => setTimeout(r, 80));
    expect(b.inbox.at(-1)).toEqual({ id: 6 });
  });
});

describe('the worker side of the cross-worker cache', () => {
  it('sends the claims and finishes of one turn as one message and resolves each claim from the answers', async () => {
    const sent: unknown[] = [];
    let deliver: (msg: unknown) => void = () => {};
    const flights = clusterFlights({ waitMs: 1000, channel: { send: (m) => (sent.push(m), true), listen: (l) => ((deliver = l), () => {}) } });
    const claims = [flights.claim('a'), flights.claim('b')];
    flights.finish('c', probs(0.5));
    await turn();
    expect(sent).toEqual([{ type: 'cifar:cache', claims: [{ id: 0, key: 'a' }, { id: 1, key: 'b' }], finishes: [{ key: 'c', probs: [0.5, 0.5] }] }]);
    deliver({ type: 'cifar:cache-answers', answers: [{ id: 1, probs: [0.25, 0.75] }, { id: 0 }] });
    expect(await Promise.all(claims)).toEqual([undefined, probs(0.25)]);
    flights.dispose();
  });

  it('computes at once when the channel is gone', async () => {
    const flights = clusterFlights({ waitMs: 60_000, channel: { send: () => false, listen: () => () => {} } });
    expect(await flights.claim('a')).toBeUndefined();
    flights.dispose();
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
