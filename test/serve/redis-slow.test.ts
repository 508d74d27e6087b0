import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, form, png, privateRedis, readyApp, type PrivateRedis } from './helpers.js';

type Served = Awaited<ReturnType<typeof readyApp>>;
interface Answer {
  cached?: boolean;
  probabilities?: number[];
}
const predict = async (s: Served, bytes: Buffer) => {
  const started = performance.now();
  const res = await s.app.request('/predict', { method: 'POST', body: form('file', bytes) });
  return { status: res.status, ms: performance.now() - started, body: (await res.json()) as Answer };
};
const health = async (s: Served) => (await (await s.app.request('/health')).json()) as { status: string; redis_connected: boolean | null };
const metric = async (s: Served, name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(await (await s.app.request('/metrics')).text())?.[1] ?? NaN);

// Its own redis-server: CLIENT PAUSE stops every client of a server, and REDIS_URL is shared by
// the other test files running in parallel.
describe('a slow Redis (CLIENT PAUSE)', () => {
  let redis: PrivateRedis;
  let admin: Redis;
  beforeAll(async () => {
    redis = await privateRedis();
    admin = new Redis(redis.url);
  });
  afterAll(async () => {
    admin.disconnect();
    await redis.close();
  });

  /** An app on this Redis with a 100 ms command deadline, connected, closed after `run`. */
  async function withApp(run: (s: Served) => Promise<void>): Promise<void> {
    const s = await readyApp({ config: { redisUrl: redis.url, redisTimeoutMs: 100 } });
    try {
      await eventually(async () => (await health(s)).redis_connected === true);
      await run(s);
    } finally {
      await s.close();
    }
  }

  it('answers 200 uncached within the command deadline, says degraded, counts errors, then recovers', async () => {
    const PAUSE_MS = 3000;
    await withApp(async (s) => {
      const first = await png(1);
      const before = await predict(s, first);
      expect(before.body.cached).toBe(false);
      await eventually(async () => (await predict(s, first)).body.cached === true);
      const errorsBefore = await metric(s, 'cache_errors_total');

      await admin.call('CLIENT', 'PAUSE', String(PAUSE_MS), 'ALL');
      const pausedAt = Date.now();
      const during = [await predict(s, await png(2)), await predict(s, first), await predict(s, await png(3))];
      for (const r of during) {
        expect(r.status).toBe(200);
        expect(r.body.cached).toBe(false);
      }
      // The first pays the 100 ms deadline once; the next skip Redis until it answers again.
      expect(during[0]!.ms).toBeLessThan(1000);
      expect(Math.max(during[1]!.ms, during[2]!.ms)).toBeLessThan(300);
      expect(Date.now() - pausedAt).toBeLessThan(PAUSE_MS / 2);
      expect(await metric(s, 'cache_errors_total')).toBeGreaterThan(errorsBefore);
      expect(await health(s)).toMatchObject({ status: 'degraded', redis_connected: false });
      expect(await metric(s, 'redis_up')).toBe(0);

      await eventually(async () => (await health(s)).status === 'healthy', PAUSE_MS + 5000);
      expect(Date.now() - pausedAt).toBeGreaterThanOrEqual(PAUSE_MS - 100);
      // Late replies to the timed-out commands were not handed to later ones: the entry stored
      // before the pause comes back whole, and an image never stored is a miss.
      const after = await predict(s, first);
      expect(after.body).toMatchObject({ cached: true, probabilities: before.body.probabilities });
      const fresh = await predict(s, await png(4));
      expect(fresh.body.cached).toBe(false);
      await eventually(async () => (await predict(s, await png(4))).body.cached === true);
      expect(await metric(s, 'redis_up')).toBe(1);
    });
  });

  it('notices a stalled Redis with no traffic (idle heartbeat), and its return', async () => {
    // The heartbeat runs every second once nothing has answered for a second, so detection takes
    // up to ~2 s plus the command deadline; 3.5 s of slack keeps a loaded CI machine from failing it.
    const PAUSE_MS = 4000;
    await withApp(async (s) => {
      await admin.call('CLIENT', 'PAUSE', String(PAUSE_MS), 'ALL');
      const pausedAt = Date.now();
      // No request at all: only the heartbeat's PING can notice.
      await eventually(async () => (await health(s)).status === 'degraded', PAUSE_MS - 500);
      expect(Date.now() - pausedAt).toBeLessThan(PAUSE_MS);
      await eventually(async () => (await health(s)).status === 'healthy', PAUSE_MS + 5000);
    });
  });
});
