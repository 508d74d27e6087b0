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
    commandTimeout: timeoutMs,
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

  let lastAnswer = Date.now();
  const run = async <T>(command: () => Promise<T>): Promise<T> => {
    if (slow) throw new CifarError('IO', `redis missed a ${timeoutMs} ms deadline; skipping the cache until it answers in time`);
    try {
      const result = await command();
      lastAnswer = Date.now();
      return result;
    } catch (err) {
      if (err instanceof Error && err.message === 'Command timed out') markSlow(err);
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
