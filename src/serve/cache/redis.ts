import { Redis } from 'ioredis';
import { CifarError } from '../../errors.js';
import type { CacheStore } from './store.js';

export interface RedisStoreOptions {
  url: string;
  ttlSeconds: number;
  /** A command slower than this fails (and the request is served uncached). */
  commandTimeoutMs?: number;
  /** While Redis is marked down, how often one PING checks whether it answers again. */
  probeMs?: number;
  /**
   * With no cache traffic, how often one PING checks that Redis still answers in time, so
   * `/health` reports a stalled Redis before the next request pays for finding out. Default 1000.
   */
  heartbeatMs?: number;
  /** Connection errors and slow commands, for logs; commands that fail reject instead. */
  onError?: (err: Error) => void;
}

/** Default deadline of one cache command: a loopback or LAN Redis answers in well under 1 ms. */
export const REDIS_COMMAND_TIMEOUT_MS = 100;

const TIMED_OUT = 'Command timed out';

/**
 * Deadlines that count only the time the process was free to read an answer. A serving worker
 * runs its forward passes on the event loop (100–400 ms a batch on a busy 2-core machine). A plain
 * timer that expires during one fires before the loop reads the socket, where the reply may have
 * waited all along; and with auto-pipelining the command may not even have been written before
 * the pass began. ioredis's own `commandTimeout` is such a timer: under inference load it failed
 * most cache commands and the cache was skipped just when it saves the most work (2 workers on 2
 * cores, a client of 100 cached images beside 96 connections of new ones: 41–45 req/s for the
 * cached images, 8,500–10,300 cache errors in 20 s).
 *
 * One ticker per store, running only while commands wait, keeps a clock of available time: each
 * tick adds the time since the last one, but at most 1.5 ticks' worth, so a hold of the loop adds
 * little. A command fails once that clock has advanced `ms` since it was sent — from a
 * setImmediate, after the loop's next read of the socket — or, whatever the clock says, once
 * `HARD_LIMIT` deadlines of wall time have passed, so a stalled Redis is still noticed under
 * continuous load.
 */
export function createDeadline(ms: number): <T>(promise: Promise<T>) => Promise<T> {
  const tickMs = Math.max(5, ms / 10);
  const waiting = new Set<{ since: number; startedAt: number; fail: () => void }>();
  let available = 0;
  let lastTick = performance.now();
  let ticker: NodeJS.Timeout | undefined;
  const now = () => available + Math.min(performance.now() - lastTick, tickMs * 1.5);
  const tick = () => {
    const t = performance.now();
    available += Math.min(t - lastTick, tickMs * 1.5);
    lastTick = t;
    for (const w of waiting) {
      if (available - w.since >= ms || t - w.startedAt >= ms * HARD_LIMIT) {
        waiting.delete(w);
        setImmediate(w.fail);
      }
    }
    if (waiting.size === 0) {
      clearInterval(ticker);
      ticker = undefined;
    }
  };
  return <T>(promise: Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      if (!ticker) {
        lastTick = performance.now();
        ticker = setInterval(tick, tickMs);
        ticker.unref();
      }
      let settled = false;
      const entry = {
        since: now(),
        startedAt: performance.now(),
        fail: () => {
          if (settled) return;
          settled = true;
          reject(new Error(TIMED_OUT));
        },
      };
      waiting.add(entry);
      const done = () => {
        settled = true;
        waiting.delete(entry);
      };
      promise.then(
        (value) => {
          if (settled) return;
          done();
          resolve(value);
        },
        (err: unknown) => {
          if (settled) return;
          done();
          reject(err);
        },
      );
    });
}

/** Wall time, in deadlines, after which a command fails however held the loop was. */
const HARD_LIMIT = 10;

/**
 * A Redis cache shared by all workers: `SETEX` with a TTL, commands pipelined automatically.
 * It never queues commands while disconnected and times out slow ones, so a Redis outage turns
 * into fast cache errors (served uncached) rather than hung requests; ioredis keeps reconnecting.
 *
 * A slow Redis (connected, but a command missed its deadline) is marked down: until one PING
 * answers in time, commands fail at once instead of each costing a client the whole timeout,
 * and `connected()` says false. A timed-out command stays in ioredis's reply queue, so its late
 * reply is matched to it and discarded; later commands still get their own replies.
 */
export function redisStore(options: RedisStoreOptions): CacheStore {
  const timeoutMs = options.commandTimeoutMs ?? REDIS_COMMAND_TIMEOUT_MS;
  const probeMs = options.probeMs ?? 250;
  const heartbeatMs = options.heartbeatMs ?? 1000;
  const client = new Redis(options.url, {
    enableAutoPipelining: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // No commandTimeout: ioredis's timer rejects when it fires, and after a forward pass has held
    // the event loop past the deadline it fires before the reply waiting in the socket is read.
    // `run` keeps the deadline instead (createDeadline).
    connectTimeout: 2000,
    // Reconnect for ever, backing off to one try every 2 s.
    retryStrategy: (times) => Math.min(times * 100, 2000),
  });
  let slow = false;
  let probe: NodeJS.Timeout | undefined;
  const recovered = () => {
    slow = false;
    clearTimeout(probe);
    probe = undefined;
  };
  const markSlow = (err: Error) => {
    if (slow) return;
    slow = true;
    options.onError?.(err);
    const check = () => {
      client.ping().then(recovered, () => {
        if (slow) probe = setTimeout(check, probeMs);
      });
    };
    probe = setTimeout(check, probeMs);
  };
  client.on('error', (err: Error) => options.onError?.(err));
  // A fresh connection has answered its ready check.
  client.on('ready', recovered);

  const deadline = createDeadline(timeoutMs);
  let lastAnswer = Date.now();
  const run = async <T>(command: () => Promise<T>): Promise<T> => {
    if (slow) throw new CifarError('IO', `redis missed a ${timeoutMs} ms deadline; skipping the cache until it answers in time`);
    try {
      const result = await deadline(command());
      lastAnswer = Date.now();
      return result;
    } catch (err) {
      if (err instanceof Error && err.message === TIMED_OUT) markSlow(err);
      throw err;
    }
  };
  // Idle heartbeat: only when nothing has answered for a while, so a busy server sends none.
  const heartbeat = setInterval(() => {
    if (slow || client.status !== 'ready' || Date.now() - lastAnswer < heartbeatMs) return;
    run(() => client.ping()).catch(() => undefined);
  }, heartbeatMs);
  heartbeat.unref();

  return {
    kind: 'redis',
    async get(key) {
      const buf = await run(() => client.getBuffer(key));
      if (!buf || buf.length % 4 !== 0) return undefined;
      // Copy: the buffer Redis hands back may not be 4-byte aligned for a Float32Array view.
      return new Float32Array(new Uint8Array(buf).buffer);
    },
    async set(key, probs) {
      await run(() => client.setex(key, options.ttlSeconds, Buffer.from(probs.buffer, probs.byteOffset, probs.byteLength)));
    },
    connected: () => client.status === 'ready' && !slow,
    async close() {
      clearInterval(heartbeat);
      recovered();
      try {
        await client.quit();
      } catch {
        client.disconnect();
      }
    },
  };
}
