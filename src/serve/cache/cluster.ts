import cluster, { type Worker } from 'node:cluster';
import { LRUCache } from 'lru-cache';
import type { SharedFlights } from './index.js';

// IPC between the workers and the cluster primary. Probabilities travel as plain number arrays:
// IPC serialises to JSON, and a float32 survives the round trip through a double exactly.
//
// What one side has to say in one event-loop turn goes as one message: a worker sends the claims
// and finishes of the requests it read in that turn together, the primary its answers to each
// worker. A message costs more than its bytes (a write, and waking the process at the other end
// on another core): sent one by one, claims took 2.7% of a worker's time in the write alone,
// and two workers served ~3.5% fewer uncached requests (5 paired rounds of bench, c=64).
const TO_PRIMARY = 'cifar:cache';
const TO_WORKER = 'cifar:cache-answers';

interface Claim {
  id: number;
  key: string;
}
interface Finish {
  key: string;
  probs?: number[];
}
interface Answer {
  id: number;
  probs?: number[];
}
interface ToPrimary {
  type?: string;
  claims?: Claim[];
  finishes?: Finish[];
}
interface ToWorker {
  type?: string;
  answers?: Answer[];
}

/** `run`, once, after the current event-loop turn, however many times this is called in it. */
function afterTurn(run: () => void): () => void {
  let scheduled = false;
  return () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      run();
    });
  };
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

  const outboxes = new Map<Worker, Answer[]>();
  const flush = afterTurn(() => {
    for (const [worker, answers] of outboxes) if (worker.isConnected()) worker.send({ type: TO_WORKER, answers } satisfies ToWorker);
    outboxes.clear();
  });
  const answer = (worker: Worker, id: number, probs: number[] | undefined) => {
    const outbox = outboxes.get(worker);
    if (outbox) outbox.push(probs ? { id, probs } : { id });
    else outboxes.set(worker, [probs ? { id, probs } : { id }]);
    flush();
  };
  const settle = (key: string, probs: number[] | undefined) => {
    const flight = flights.get(key);
    if (!flight) return;
    clearTimeout(flight.timer);
    flights.delete(key);
    for (const w of flight.waiters) answer(w.worker, w.id, probs);
  };

  const onClaim = (worker: Worker, { id, key }: Claim) => {
    const stored = lru?.get(key);
    if (stored) return answer(worker, id, stored);
    const flight = flights.get(key);
    if (flight) {
      flight.waiters.push({ worker, id });
      return;
    }
    // A leader that never reports must not hold its key for ever: past the wait, everyone
    // still waiting computes, and the next claim starts a new flight.
    flights.set(key, { leader: worker, waiters: [], timer: setTimeout(() => settle(key, undefined), options.waitMs) });
    answer(worker, id, undefined);
  };
  const onFinish = ({ key, probs }: Finish) => {
    if (probs) lru?.set(key, probs);
    settle(key, probs);
  };
  const onMessage = (worker: Worker, msg: ToPrimary) => {
    if (msg?.type !== TO_PRIMARY) return;
    // Finishes first: a claim in the same message may be for a key that has just been computed.
    for (const f of msg.finishes ?? []) if (typeof f?.key === 'string') onFinish(f);
    for (const c of msg.claims ?? []) if (typeof c?.key === 'string' && typeof c.id === 'number') onClaim(worker, c);
  };
  const onExit = (worker: Worker) => {
    outboxes.delete(worker);
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

/** The worker's end of the IPC channel to the primary: the process itself in a cluster worker. */
export interface PrimaryChannel {
  /** Send `msg`; false when it cannot go (no channel, or disconnected). `onError` hears of a failed write. */
  send(msg: unknown, onError: () => void): boolean;
  /** Listen to what the primary sends; the returned function stops listening. */
  listen(listener: (msg: unknown) => void): () => void;
}

const processChannel: PrimaryChannel = {
  send(msg, onError) {
    if (!process.send || !process.connected) return false;
    process.send(msg as object, undefined, undefined, (err: Error | null) => err && onError());
    return true;
  },
  listen(listener) {
    process.on('message', listener);
    return () => process.off('message', listener);
  },
};

/**
 * Worker side: claims go to the primary over IPC. If the primary does not answer in time (or the
 * channel is gone) the worker computes itself: coordination saves work, it never blocks an answer.
 */
export function clusterFlights(options: { waitMs: number; channel?: PrimaryChannel }): SharedFlights & { dispose(): void } {
  const channel = options.channel ?? processChannel;
  const pending = new Map<number, (probs: Float32Array | undefined) => void>();
  let nextId = 0;
  const stopListening = channel.listen((raw) => {
    const msg = raw as ToWorker;
    if (msg?.type !== TO_WORKER || !Array.isArray(msg.answers)) return;
    for (const a of msg.answers) if (typeof a?.id === 'number') pending.get(a.id)?.(a.probs ? Float32Array.from(a.probs) : undefined);
  });
  const claims: { claim: Claim; fail: () => void }[] = [];
  const finishes: Finish[] = [];
  const flush = afterTurn(() => {
    const sent = claims.splice(0);
    const msg: ToPrimary = { type: TO_PRIMARY, claims: sent.map((c) => c.claim), finishes: finishes.splice(0) };
    const failAll = () => sent.forEach((c) => c.fail());
    if (!channel.send(msg, failAll)) failAll();
  });
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
        claims.push({ claim: { id, key }, fail: () => done(undefined) });
        flush();
      });
    },
    finish(key, probs) {
      finishes.push(probs ? { key, probs: Array.from(probs) } : { key });
      flush();
    },
    dispose() {
      stopListening();
      for (const done of [...pending.values()]) done(undefined);
    },
  };
}
