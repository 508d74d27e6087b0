import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { CifarError } from '../errors.js';
import { type Batch, type BatchPlan, plansMixing } from './batches.js';

export interface BatchLoader {
  /**
   * The batches of an epoch from `fromStep` on, made in a worker thread `prefetch` ahead of the
   * consumer.
   */
  epoch(epoch: number, fromStep: number, steps: number): AsyncGenerator<Batch>;
  /** Seconds the consumer has spent waiting for a batch that was not ready yet, since the start. */
  waitedSeconds(): number;
  /** Mix the run's first `n` steps from now on (batches made ahead under another number are made again). */
  setMixSteps(n: number): void;
  close(): Promise<void>;
}

/**
 * Where the compiled worker `file` is, beside the module `from` (default: this folder's), the one
 * `what` names in an error. Under vitest these modules run from src/ (TypeScript), which a worker
 * thread cannot load, so fall back to the build in dist/ (`npm test` builds first).
 */
export function workerUrl(file: string, what: string, from: string = import.meta.url): URL {
  const here = new URL(`./${file}`, from);
  if (existsSync(fileURLToPath(here))) return here;
  const at = here.href.lastIndexOf('/src/');
  const built = new URL(`${here.href.slice(0, at)}/dist/${here.href.slice(at + 5)}`);
  if (existsSync(fileURLToPath(built))) return built;
  throw new CifarError('NOT_BUILT', `the ${what} is not built; run \`npm run build\``);
}

/** Start a worker that holds the training set (copied once) and makes augmented batches. */
export function createBatchLoader(plan: BatchPlan, prefetch = 3): BatchLoader {
  const worker = new Worker(workerUrl('loader-worker.js', 'batch-loader worker'), { workerData: plan });
  const pending = new Map<number, { resolve: (b: Batch) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  let failure: Error | undefined;
  let waited = 0;
  let mixSteps = plan.mixSteps;
  worker.on('message', (msg: { id: number; batch: Batch }) => {
    pending.get(msg.id)?.resolve(msg.batch);
    pending.delete(msg.id);
  });
  worker.on('error', (err) => {
    failure = err;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  });
  const mixing = plansMixing(plan);
  // Each batch with the mixSteps it was made under.
  const request = (epoch: number, step: number) => {
    const made = mixSteps;
    const batch = new Promise<Batch>((resolve, reject) => {
      if (failure) return reject(failure);
      const id = nextId++;
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, epoch, step, mixSteps: made });
    });
    return { step, mixSteps: made, batch };
  };
  return {
    async *epoch(epoch, fromStep, steps) {
      const queue: ReturnType<typeof request>[] = [];
      let asked = fromStep;
      while (asked < steps && queue.length < prefetch) queue.push(request(epoch, asked++));
      while (queue.length > 0) {
        const start = performance.now();
        let next = queue.shift()!;
        // Made ahead before the run's mixed steps changed: made again, as a resumed run makes it.
        if (mixing && next.mixSteps !== mixSteps) {
          next.batch.catch(() => undefined); // dropped: its failure, if any, is the next one's too
          next = request(epoch, next.step);
        }
        const batch = await next.batch;
        waited += (performance.now() - start) / 1000;
        if (asked < steps) queue.push(request(epoch, asked++));
        yield batch;
      }
    },
    waitedSeconds: () => waited,
    setMixSteps(n) {
      mixSteps = n;
    },
    async close() {
      await worker.terminate();
    },
  };
}
