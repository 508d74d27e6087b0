import { Worker } from 'node:worker_threads';
import type { BackendRequest } from '../backend/index.js';
import { CifarError, type ErrorCode } from '../errors.js';
import { workerUrl } from '../train/loader.js';
import type { Predictor, PredictorInfo } from './predictor.js';

/** What the inference thread is started with. */
export interface ThreadSetup {
  dir: string;
  /** A named CPU backend: the thread starts exactly this one. */
  backend: 'wasm' | 'cpu';
  tta: boolean;
}
export interface ThreadRequest {
  id: number;
  pixels: Uint8Array;
  count: number;
}
interface ThreadFailure {
  message: string;
  code?: ErrorCode;
  hint?: string;
}
export type ThreadReply = { id: number; probs: Float32Array } | { id: number; error: ThreadFailure };
type ThreadStart = { ready: PredictorInfo } | { failed: ThreadFailure };

const rebuild = (f: ThreadFailure) => (f.code ? new CifarError(f.code, f.message, f.hint ? { hint: f.hint } : {}) : new Error(f.message));

/**
 * A Predictor whose model runs in a worker thread of its own. On the CPU backends a forward pass
 * holds its thread for 100–400 ms a batch; in the server's thread that delayed every other
 * request meanwhile — cache hits, /health, /metrics — and Redis replies behind it. Here the
 * server's event loop stays free while the thread computes. The images are copied to the thread
 * (98 KB for a batch of 32), the probabilities transferred back.
 *
 * Resolves once the thread has loaded the model; rejects with the thread's own error (a missing
 * or invalid model folder) otherwise. If the thread dies, pending and later predictions fail with
 * BACKEND_FAILED (503), naming why.
 */
export function loadThreadedPredictor(setup: ThreadSetup): Promise<Predictor> {
  const worker = new Worker(workerUrl('predictor-worker.js', 'inference thread', import.meta.url), { workerData: setup, stderr: false });
  const pending = new Map<number, { resolve: (p: Float32Array) => void; reject: (e: Error) => void }>();
  let nextId = 0;
  let dead: CifarError | undefined;
  let disposed = false;
  return new Promise<Predictor>((resolveStart, rejectStart) => {
    const stop = (reason: string) => {
      dead ??= new CifarError('BACKEND_FAILED', `the inference thread stopped: ${reason}`, { hint: 'retry; the server logs say why' });
      for (const p of pending.values()) p.reject(dead);
      pending.clear();
      rejectStart(dead);
    };
    worker.on('error', (err) => stop(err.message));
    worker.on('exit', (code) => {
      if (!disposed) stop(`exit code ${code}`);
    });
    worker.on('message', (msg: ThreadReply | ThreadStart) => {
      if ('failed' in msg) {
        disposed = true;
        void worker.terminate();
        rejectStart(rebuild(msg.failed));
        return;
      }
      if ('ready' in msg) {
        resolveStart(predictor({ ...msg.ready, thread: true }));
        return;
      }
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if ('error' in msg) p?.reject(rebuild(msg.error));
      else p?.resolve(msg.probs);
    });
  });

  function predictor(info: PredictorInfo): Predictor {
    return {
      info,
      predict(pixels, count) {
        if (dead) return Promise.reject(dead);
        if (disposed) return Promise.reject(new CifarError('BACKEND_FAILED', 'the model was unloaded', { hint: 'retry' }));
        return new Promise((resolve, reject) => {
          const id = nextId++;
          pending.set(id, { resolve, reject });
          worker.postMessage({ id, pixels, count } satisfies ThreadRequest);
        });
      },
      dispose() {
        disposed = true;
        for (const p of pending.values()) p.reject(new CifarError('BACKEND_FAILED', 'the model was unloaded', { hint: 'retry' }));
        pending.clear();
        void worker.terminate();
      },
    };
  }
}

/** Whether `cifar serve` runs a model on this backend in a thread of its own: the CPU backends. */
export function runsInThread(backend: BackendRequest | string): backend is 'wasm' | 'cpu' {
  return backend === 'wasm' || backend === 'cpu';
}
