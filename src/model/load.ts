import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendInfo, type BackendRequest } from '../backend/index.js';
import { predictorFromModel, type Predictor } from './predictor.js';
import { loadThreadedPredictor, runsInThread } from './threaded.js';
import { loadModel, type ModelMetadata } from './store.js';

/**
 * Start a backend and load a model folder as a Predictor (what `cifar predict` and `cifar serve`
 * use), with flip test-time augmentation if `options.tta`. Warming up is the caller's business:
 * the server warms each batch size it will use.
 */
export async function loadPredictor(dir: string, backend: BackendRequest, options: { tta?: boolean } = {}): Promise<{ predictor: Predictor; metadata: ModelMetadata; backend: BackendInfo }> {
  const info = await initBackend(backend);
  const { model, metadata } = await loadModel(dir);
  const predictor = predictorFromModel(model, metadata.normalization, {
    name: metadata.name,
    version: metadata.version,
    classes: metadata.classes,
    backend: tf.getBackend(),
    ...(options.tta ? { tta: true } : {}),
  });
  return { predictor, metadata, backend: info };
}

/**
 * The Predictor `cifar serve` runs. With `thread` on a CPU backend (wasm, cpu), in a worker
 * thread of its own (`loadThreadedPredictor`), so that forward passes never hold the server's
 * event loop; otherwise in this thread (a GPU backend's pass mostly waits for the device).
 * `backend` is resolved here first, so `auto` makes the same choice as everywhere else.
 */
export async function loadServingPredictor(dir: string, backend: BackendRequest, options: { tta?: boolean; thread?: boolean } = {}): Promise<Predictor> {
  const tta = options.tta === true;
  if (options.thread) {
    const info = await initBackend(backend);
    if (runsInThread(info.name)) return loadThreadedPredictor({ dir, backend: info.name, tta });
  }
  return (await loadPredictor(dir, backend, { tta })).predictor;
}
