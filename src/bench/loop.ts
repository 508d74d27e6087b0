import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Outcome } from './http.js';

/** How a load loop runs, independent of what a request is. */
export interface LoopOptions {
  /** Closed model: connections; open model: the most requests in flight at once. */
  concurrency: number;
  /** Stop after this many requests… */
  requests?: number;
  /** …or stop starting new ones after this long. */
  durationMs?: number;
  /** Open model: requests per second on a fixed schedule. */
  rate?: number;
  signal?: AbortSignal;
  /** Build request `i` (done before its scheduled time, so building costs no measured latency). */
  prepare(i: number): Buffer;
  send(body: Buffer): Promise<Outcome>;
  /** One finished request: its outcome, latency in ms and, in the open model, whether it started late. */
  record(outcome: Outcome, ms: number, late: boolean): void;
  /** Called as each request starts. */
  onSend?(): void;
}

export interface LoopStats {
  /** From the loop's start to its last answer. */
  elapsedMs: number;
}

/**
 * A request counts as late when it starts this long after its scheduled time: beyond timer
 * jitter, it means no connection was free when it was due.
 */
export const LATE_SLACK_MS = 2;

/**
 * Run the closed model (without `rate`) or the open model (with `rate`) until `requests` are
 * done, `durationMs` has passed, or `signal` aborts.
 *
 * In the open model request i is due at start + i/rate whatever happened before, and its latency
 * is measured from that due time, not from when it could be sent: a server that stalls for a
 * second makes every request due in that second wait, and the percentiles show it (the
 * "coordinated omission" correction of wrk2). The closed model measures from the actual send.
 */
export async function runLoop(options: LoopOptions): Promise<LoopStats> {
  const start = performance.now();
  let last = start;
  let next = 0;
  const { rate, requests, durationMs, signal } = options;
  const intervalMs = rate === undefined ? 0 : 1000 / rate;
  // The open model has a fixed request count: the schedule over the duration.
  const total = rate !== undefined && requests === undefined ? Math.max(1, Math.floor(((durationMs ?? 0) / 1000) * rate)) : requests;
  const endAt = rate === undefined && durationMs !== undefined ? start + durationMs : Infinity;

  const finish = (outcome: Outcome, from: number, late: boolean) => {
    const now = performance.now();
    last = Math.max(last, now);
    if (!signal?.aborted) options.record(outcome, now - from, late);
  };

  const closedWorker = async () => {
    while (!signal?.aborted && (total === undefined || next < total) && performance.now() < endAt) {
      const body = options.prepare(next++);
      options.onSend?.();
      const sentAt = performance.now();
      finish(await options.send(body), sentAt, false);
    }
  };

  const openWorker = async () => {
    while (!signal?.aborted && next < total!) {
      const i = next++;
      const body = options.prepare(i);
      const due = start + i * intervalMs;
      const wait = due - performance.now();
      if (wait > 0) {
        try {
          await sleep(wait, undefined, { signal });
        } catch {
          return; // aborted while waiting
        }
      }
      const late = performance.now() - due > LATE_SLACK_MS;
      options.onSend?.();
      finish(await options.send(body), due, late);
    }
  };

  const worker = rate === undefined ? closedWorker : openWorker;
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return { elapsedMs: last - start };
}
