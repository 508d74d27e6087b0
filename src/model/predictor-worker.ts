// The inference thread of `cifar serve` (model/threaded.ts): the model and its backend live here,
// so that a forward pass never holds the server's event loop.
import { parentPort, workerData } from 'node:worker_threads';
import { isCifarError } from '../errors.js';
import { loadPredictor } from './load.js';
import type { ThreadReply, ThreadRequest, ThreadSetup } from './threaded.js';

const setup = workerData as ThreadSetup;
const port = parentPort!;
const failure = (err: unknown) => ({ message: err instanceof Error ? err.message : String(err), ...(isCifarError(err) ? { code: err.code, ...(err.hint ? { hint: err.hint } : {}) } : {}) });
try {
  const { predictor } = await loadPredictor(setup.dir, setup.backend, setup.tta ? { tta: true } : {});
  port.on('message', (msg: ThreadRequest) => {
    predictor.predict(msg.pixels, msg.count).then(
      (probs) => port.postMessage({ id: msg.id, probs } satisfies ThreadReply, [probs.buffer as ArrayBuffer]),
      (err: unknown) => port.postMessage({ id: msg.id, error: failure(err) } satisfies ThreadReply),
    );
  });
  port.postMessage({ ready: predictor.info });
} catch (err) {
  port.postMessage({ failed: failure(err) });
}
