import cluster, { type Worker } from 'node:cluster';
import { LRUCache } from 'lru-cache';
import type { SharedFlights } from './index.js';

// IPC messages between the workers and the cluster primary. Probabilities travel as plain number
// arrays: IPC serialises to JSON, and a float32 survives the round trip through a double exactly.
const CLAIM = 'cifar:cache-claim';
const ANSWER = 'cifar:cache-answer';
const FINISH = 'cifar:cache-finish';

interface CacheMessage {
  type?: string;
  id?: number;
  key?: string;
  probs?: number[];
}

export interface PrimaryCacheOptions {
  /** Entries of the shared LRU; 0 when Redis is the shared store and the primary only coordinates. */
  maxEntries: number;
  /** How long other workers wait for the one computing a key before computing it themselves. */
  waitMs: number;
}

interface Flight {
  leader: Worker;
  waiters: { worker: Worker; id: number }[];
  timer: NodeJS.Timeout;
}

/**
 * Primary side of the cross-worker cache: a shared LRU (memory mode) and the table of keys being
 * computed. A claim is answered with the stored probabilities, with "compute it" for the first
 * asker, or, for the others, with the first asker's answer once it finishes (or "compute it" if
 * it fails, exits, or takes longer than `waitMs`).
 *
 * @example
 *   const cache = serveClusterCache({ maxEntries: 100_000, waitMs: 3000 });
 *   // ... cluster runs ...
 *   cache.dispose();
 */
export function serveClusterCache(options: PrimaryCacheOptions): { dispose(): void } {
  const lru = options.maxEntries > 0 ? new LRUCache<string, number[]>({ max: options.maxEntries }) : undefined;
  const flights = new Map<string, Flight>();

  const answer = (worker: Worker, id: number, probs: number[] | undefined) => {
    if (worker.isConnected()) worker.send({ type: ANSWER, id, probs });
  };
  const settle = (key: string, probs: number[] | undefined) => {
    const flight = flights.get(key);
    if (!flight) return;
    clearTimeout(flight.timer);
    flights.delete(key);
    for (const w of flight.waiters) answer(w.worker, w.id, probs);
  };

  const onMessage = (worker: Worker, msg: CacheMessage) => {
    if (msg?.type === CLAIM && typeof msg.key === 'string' && typeof msg.id === 'number') {
      const key = msg.key;
      const stored = lru?.get(key);
      if (stored) return answer(worker, msg.id, stored);
      const flight = flights.get(key);
      if (flight) {
        flight.waiters.push({ worker, id: msg.id });
        return;
      }
      // A leader that never reports must not hold its key for ever: past the wait, everyone
      // still waiting computes, and the next claim starts a new flight.
      flights.set(key, { leader: worker, waiters: [], timer: setTimeout(() => settle(key, undefined), options.waitMs) });
      answer(worker, msg.id, undefined);
    } else if (msg?.type === FINISH && typeof msg.key === 'string') {
      if (msg.probs) lru?.set(msg.key, msg.probs);
      settle(msg.key, msg.probs);
    }
  };
  const onExit = (worker: Worker) => {
    for (const [key, flight] of flights) {
      if (flight.leader === worker) settle(key, undefined);
      else flight.waiters = flight.waiters.filter((w) => w.worker !== worker);
    }
  };
  cluster.on('message', onMessage);
  cluster.on('exit', onExit);
  return {
    dispose() {
      cluster.off('message', onMessage);
      cluster.off('exit', onExit);
      for (const key of [...flights.keys()]) settle(key, undefined);
      lru?.clear();
    },
  };
}

/**
 * Worker side: claims go to the primary over IPC. If the primary does not answer in time (or the
 * channel is gone) the worker computes itself: coordination saves work, it never blocks an answer.
 */
export function clusterFlights(options: { waitMs: number }): SharedFlights & { dispose(): void } {
  const pending = new Map<number, (probs: Float32Array | undefined) => void>();
  let nextId = 0;
  const onMessage = (msg: CacheMessage) => {
    if (msg?.type !== ANSWER || typeof msg.id !== 'number') return;
    pending.get(msg.id)?.(msg.probs ? Float32Array.from(msg.probs) : undefined);
  };
  process.on('message', onMessage);
  const send = (msg: CacheMessage, onFail: () => void) => {
    if (!process.send || !process.connected) return onFail();
    process.send(msg, undefined, undefined, (err: Error | null) => err && onFail());
  };
  return {
    claim(key) {
      return new Promise((resolve) => {
        const id = nextId++;
        const done = (probs: Float32Array | undefined) => {
          clearTimeout(timer);
          pending.delete(id);
          resolve(probs);
        };
        // The primary answers "compute" itself after waitMs; this covers a primary that cannot.
        const timer = setTimeout(() => done(undefined), options.waitMs + 1000);
        pending.set(id, done);
        send({ type: CLAIM, id, key }, () => done(undefined));
      });
    },
    finish(key, probs) {
      send({ type: FINISH, key, ...(probs ? { probs: Array.from(probs) } : {}) }, () => {});
    },
    dispose() {
      process.off('message', onMessage);
      for (const done of [...pending.values()]) done(undefined);
    },
  };
}
