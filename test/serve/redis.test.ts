import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheKey, createPredictionCache, type SharedFlights } from '../../src/serve/cache/index.js';
import { redisStore } from '../../src/serve/cache/redis.js';
import { eventually, form, png, readyApp, startRedis, type TestRedis } from './helpers.js';

type Served = Awaited<ReturnType<typeof readyApp>>;
const predict = async (s: Served, bytes: Buffer) => {
  const res = await s.app.request('/predict', { method: 'POST', body: form('file', bytes) });
  return { status: res.status, body: (await res.json()) as { cached?: boolean; model_version?: string } };
};
const health = async (s: Served) => (await (await s.app.request('/health')).json()) as { status: string; redis_connected: boolean | null };
const metric = async (s: Served, name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(await (await s.app.request('/metrics')).text())?.[1] ?? NaN);

describe('Redis cache', () => {
  let redis: TestRedis;
  // A fresh namespace per run: CI's REDIS_URL may be shared with other runs.
  const run = `t${process.pid}${Date.now()}`;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(() => redis.close());

  it('shares answers between servers (workers) and reports redis_connected', async () => {
    const a = await readyApp({ config: { redisUrl: redis.url } });
    const b = await readyApp({ config: { redisUrl: redis.url } });
    try {
      await eventually(async () => (await health(a)).redis_connected === true && (await health(b)).redis_connected === true);
      // Same model version in both, so the key is shared; make it unique to this run.
      const bytes = Buffer.concat([await png(1), Buffer.from(run)]);
      expect((await predict(a, bytes)).body.cached).toBe(false);
      await eventually(async () => (await predict(b, bytes)).body.cached === true);
      expect(await metric(b, 'redis_up')).toBe(1);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a worker told to compute reads Redis again first: an answer stored since its first read ends the flight, computed once', async () => {
    const store = redisStore({ url: redis.url, ttlSeconds: 60 });
    try {
      await eventually(() => store.connected() === true);
      const key = `cifar:pred:${run}:late`;
      const stored = new Float32Array([0.125, 0.875]);
      const finished: [string, Float32Array | undefined][] = [];
      // The other worker's answer lands in Redis after our first read, and its flight has ended,
      // so the primary tells us to compute.
      const shared: SharedFlights = { claim: async () => (await store.set(key, stored), undefined), finish: (k, p) => finished.push([k, p]) };
      const cache = createPredictionCache(store, {}, shared);
      expect(await cache.resolve(key, () => expect.fail('computed an answer Redis already had'))).toEqual({ probs: stored, cached: true });
      expect(finished).toEqual([[key, stored]]);
    } finally {
      await store.close();
    }
  });

  it('stores and reads probabilities as SETEX entries', async () => {
    const store = redisStore({ url: redis.url, ttlSeconds: 77 });
    try {
      await eventually(() => store.connected() === true);
      const probs = new Float32Array([0.25, 0.75]);
      await store.set(`cifar:pred:${run}:k`, probs);
      expect(await store.get(`cifar:pred:${run}:k`)).toEqual(probs);
      expect(await store.get(`cifar:pred:${run}:other`)).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it('a reply that arrived while the event loop was blocked (a forward pass) is not a timeout', async () => {
    const errors: Error[] = [];
    const store = redisStore({ url: redis.url, ttlSeconds: 60, commandTimeoutMs: 50, onError: (e) => errors.push(e) });
    try {
      await eventually(() => store.connected() === true);
      const probs = new Float32Array([0.5, 0.5]);
      await store.set(`cifar:pred:${run}:blocked`, probs);
      const hold = () => {
        const until = performance.now() + 200;
        while (performance.now() < until);
      };
      for (let i = 0; i < 4; i++) {
        const pending = store.get(`cifar:pred:${run}:blocked`);
        if (i % 2 === 0) {
          // The loop is held for 4 deadlines from a setImmediate callback, where the batcher
          // starts a forward pass, while Redis answers at once: the next turn of the loop meets
          // the expired timer before it reads the reply waiting in the socket.
          await new Promise<void>((done) => setImmediate(() => (hold(), done())));
        } else {
          // Held at once, in the same turn: the auto-pipelined command is not even written yet.
          hold();
        }
        expect(await pending, `round ${i}`).toEqual(probs);
      }
      expect(store.connected()).toBe(true);
      expect(errors.map((e) => e.message)).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('a Redis outage mid-test: still 200s, /health degraded, errors counted, then recovery', async () => {
    const s = await readyApp({ config: { redisUrl: redis.url } });
    const probe = redisStore({ url: redis.url, ttlSeconds: 60 });
    try {
      await eventually(async () => (await health(s)).redis_connected === true && probe.connected() === true);
      const first = Buffer.concat([await png(2), Buffer.from(run)]);
      expect((await predict(s, first)).status).toBe(200);
      // The store write does not hold up the answer (nor does a twin in flight): wait until it lands.
      const key = cacheKey('v1', first);
      await eventually(async () => (await probe.get(key)) !== undefined);

      await redis.outage();
      await eventually(async () => (await health(s)).status === 'degraded');
      expect((await health(s)).redis_connected).toBe(false);
      const errorsBefore = await metric(s, 'cache_errors_total');
      for (let i = 0; i < 3; i++) {
        const r = await predict(s, Buffer.concat([await png(10 + i), Buffer.from(run)]));
        expect(r.status).toBe(200);
        expect(r.body.cached).toBe(false);
      }
      expect(await metric(s, 'cache_errors_total')).toBeGreaterThan(errorsBefore);
      expect(await metric(s, 'redis_up')).toBe(0);

      await redis.recover();
      await eventually(async () => (await health(s)).status === 'healthy', 10_000);
      // The entry stored before the outage is still there.
      expect((await predict(s, first)).body.cached).toBe(true);
    } finally {
      await probe.close();
      await s.close();
    }
  });
});
