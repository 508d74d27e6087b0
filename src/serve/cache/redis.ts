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
 * `promise`, or a "Command timed out" error once `ms` have passed without an answer while the
 * process could have read one. A serving worker runs its forward passes on the event loop
 * (100–250 ms a batch on two busy cores). A timer that expires during one fires late, and before
 * the loop reads the socket, where the reply may have waited all along; with auto-pipelining
 * the command may not even have been written before the pass began. So a timer that fired late
 * (the loop was held for over half the deadline) starts the deadline again instead of failing,
 * up to `MAX_LATE_FIRES` times; one that fired on time fails from a setImmediate, which runs
 * after the loop's next read of the socket. Without this, under inference load most cache
 * commands "timed out" (up to 450 cache errors/s in `npm run dashboard:demo`'s overload phase)
 * and the cache was skipped just when it saves the most work.
 */
export function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout;
    let lateFires = 0;
    const arm = () => {
      const due = performance.now() + ms;
      timer = setTimeout(() => {
        if (settled) return;
        if (performance.now() - due > ms / 2 && lateFires < MAX_LATE_FIRES) {
          lateFires++;
          arm();
          return;
        }
        setImmediate(() => {
          if (settled) return;
          settled = true;
          reject(new Error(TIMED_OUT));
        });
      }, ms);
    };
    arm();
    promise.then(
      (value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** Late timer fires that restart a deadline: a loop held again and again still ends a stalled command. */
const MAX_LATE_FIRES = 4;

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
    // `run` keeps the deadline instead (withDeadline).
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
      const result = await withDeadline(command(), timeoutMs);
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
