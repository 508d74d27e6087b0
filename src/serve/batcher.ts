import { CifarError } from '../errors.js';
import { IMAGE_BYTES } from '../image/preprocess.js';

export interface BatcherOptions {
  /** One forward pass over `count` images given back to back; returns count × classes floats. */
  run: (pixels: Uint8Array, count: number) => Promise<Float32Array>;
  classes: number;
  maxBatch: number;
  /**
   * How long the first waiting image waits for others before its batch runs anyway; no wait
   * (the end of the event-loop turn) when the last pass held one image.
   */
  waitMs: number;
  /** Images allowed to wait; past this, `submit` refuses at once with OVERLOADED. */
  maxQueue: number;
  /** Called after each forward pass, for metrics. */
  onBatch?: (size: number, seconds: number) => void;
}

interface Item {
  pixels: Uint8Array;
  deadline: number;
  resolve: (probs: Float32Array) => void;
  reject: (err: unknown) => void;
}

export interface Batcher {
  /** Probabilities of one prepared 32×32×3 image, computed in a batch with its neighbours. */
  submit(pixels: Uint8Array, deadline: number): Promise<Float32Array>;
  /** Images waiting for a forward pass. */
  readonly depth: number;
  /** Resolves once every image already submitted has its answer. */
  drain(): Promise<void>;
}

/**
 * Gather images from concurrent requests into batches of up to `maxBatch`, run one forward pass
 * at a time (tfjs on a CPU backend is one thread, so two passes at once only interleave), and
 * refuse work at once when the queue is full instead of letting every client time out.
 *
 * @example
 *   const batcher = createBatcher({ run: (px, n) => predictor.predict(px, n), classes: 10, maxBatch: 32, waitMs: 2, maxQueue: 256 });
 *   const probs = await batcher.submit(pixels, Date.now() + 5000);
 */
export function createBatcher(options: BatcherOptions): Batcher {
  const queue: Item[] = [];
  let running = false;
  let cancelWait: (() => void) | undefined;
  /** Images in the last pass (0 before the first). */
  let lastSize = 0;
  let idle: (() => void)[] = [];

  const settleIdle = () => {
    if (running || queue.length > 0) return;
    const waiters = idle;
    idle = [];
    for (const w of waiters) w();
  };

  const schedule = () => {
    if (running || queue.length === 0) return;
    if (queue.length >= options.maxBatch || options.waitMs <= 0) {
      cancelWait?.();
      cancelWait = undefined;
      void runBatch();
    } else if (!cancelWait) {
      const fire = () => {
        cancelWait = undefined;
        void runBatch();
      };
      // A pass that had no companion says the clients are not concurrent now: waiting would only
      // add latency, so run what this event-loop turn submitted (one /predict/batch request's
      // images, say) right after it. Concurrent load keeps making larger passes, and so waits.
      if (lastSize <= 1) {
        const immediate = setImmediate(fire);
        cancelWait = () => clearImmediate(immediate);
      } else {
        const timeout = setTimeout(fire, options.waitMs);
        cancelWait = () => clearTimeout(timeout);
      }
    }
  };

  const runBatch = async () => {
    if (running) return;
    const now = Date.now();
    const batch: Item[] = [];
    while (batch.length < options.maxBatch && queue.length > 0) {
      const item = queue.shift()!;
      // An answer after the deadline is useless to the client: skip the work.
      if (item.deadline <= now) item.reject(new CifarError('DEADLINE_EXCEEDED', 'the request waited too long for the model', { hint: 'retry later' }));
      else batch.push(item);
    }
    if (batch.length === 0) return settleIdle();
    running = true;
    lastSize = batch.length;
    const pixels = new Uint8Array(batch.length * IMAGE_BYTES);
    batch.forEach((item, i) => pixels.set(item.pixels, i * IMAGE_BYTES));
    const started = process.hrtime.bigint();
    try {
      const probs = await options.run(pixels, batch.length);
      options.onBatch?.(batch.length, Number(process.hrtime.bigint() - started) / 1e9);
      const k = options.classes;
      batch.forEach((item, i) => item.resolve(probs.slice(i * k, (i + 1) * k)));
    } catch (err) {
      for (const item of batch) item.reject(err);
    } finally {
      running = false;
    }
    // Images that arrived during the pass have already waited: run them now, not after waitMs.
    if (queue.length > 0) void runBatch();
    else settleIdle();
  };

  return {
    submit(pixels, deadline) {
      if (queue.length >= options.maxQueue) {
        return Promise.reject(new CifarError('OVERLOADED', 'the server is at capacity', { hint: 'retry after a second' }));
      }
      return new Promise<Float32Array>((resolve, reject) => {
        queue.push({ pixels, deadline, resolve, reject });
        schedule();
      });
    },
    get depth() {
      return queue.length;
    },
    drain() {
      if (!running && queue.length === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idle.push(resolve));
    },
  };
}
