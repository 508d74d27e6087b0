import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendInfo, type BackendRequest } from '../backend/index.js';
import { predictorFromModel, type Predictor } from './predictor.js';
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
