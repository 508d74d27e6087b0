import { Redis } from 'ioredis';
import type { CacheStore } from './store.js';

export interface RedisStoreOptions {
  url: string;
  ttlSeconds: number;
  /** A command slower than this fails (and the request is served uncached). */
  commandTimeoutMs?: number;
  /** Connection errors, for logs; commands that fail reject instead. */
  onError?: (err: Error) => void;
}

/**
 * A Redis cache shared by all workers: `SETEX` with a TTL, commands pipelined automatically.
 * It never queues commands while disconnected and times out slow ones, so a Redis outage turns
 * into fast cache errors (served uncached) rather than hung requests; ioredis keeps reconnecting.
 */
export function redisStore(options: RedisStoreOptions): CacheStore {
  const client = new Redis(options.url, {
    enableAutoPipelining: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: options.commandTimeoutMs ?? 250,
    connectTimeout: 2000,
    // Reconnect for ever, backing off to one try every 2 s.
    retryStrategy: (times) => Math.min(times * 100, 2000),
  });
  client.on('error', (err: Error) => options.onError?.(err));
  return {
    kind: 'redis',
    async get(key) {
      const buf = await client.getBuffer(key);
      if (!buf || buf.length % 4 !== 0) return undefined;
      // Copy: the buffer Redis hands back may not be 4-byte aligned for a Float32Array view.
      return new Float32Array(new Uint8Array(buf).buffer);
    },
    async set(key, probs) {
      await client.setex(key, options.ttlSeconds, Buffer.from(probs.buffer, probs.byteOffset, probs.byteLength));
    },
    connected: () => client.status === 'ready',
    async close() {
      try {
        await client.quit();
      } catch {
        client.disconnect();
      }
    },
  };
}
