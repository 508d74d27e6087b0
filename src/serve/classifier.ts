import { CifarError } from '../errors.js';
import { prepareImage } from '../image/preprocess.js';
import { cacheKey, type PredictionCache } from './cache/index.js';
import type { ModelSlot } from './model-slot.js';

/** The answer for one image, before it becomes JSON. */
export interface Classification {
  label: number;
  className: string;
  confidence: number;
  probabilities: Float32Array;
  modelVersion: string;
  cached: boolean;
}

export interface ClassifierOptions {
  slot: ModelSlot;
  cache: PredictionCache;
  maxImagePixels: number;
  onPrediction?: (className: string) => void;
}

/** Classify uploaded bytes: cache first (a hit skips decoding), then prepare, batch, infer. */
export type Classify = (bytes: Uint8Array, name: string, deadline: number) => Promise<Classification>;

/**
 * Build the one path every prediction route takes. The model is captured once per image, so
 * the cache key, the inference and the reported version always belong to the same model.
 */
export function createClassifier(options: ClassifierOptions): Classify {
  const { slot, cache } = options;
  return async (bytes, name, deadline) => {
    if (bytes.length === 0) throw new CifarError('INVALID_IMAGE', `${name}: the file is empty`);
    const model = slot.current();
    if (!model) throw new CifarError('NOT_READY', 'the model is still loading', { hint: 'retry in a few seconds' });
    const release = model.acquire();
    try {
      const { info } = model.predictor;
      const { probs, cached } = await cache.resolve(cacheKey(info.version, bytes, info.tta === true), async () => {
        const { pixels } = await prepareImage(bytes, name, { maxPixels: options.maxImagePixels });
        return model.batcher.submit(pixels, deadline);
      });
      let label = 0;
      for (let i = 1; i < probs.length; i++) if (probs[i]! > probs[label]!) label = i;
      const className = info.classes[label] ?? String(label);
      options.onPrediction?.(className);
      return { label, className, confidence: probs[label]!, probabilities: probs, modelVersion: info.version, cached };
    } finally {
      release();
    }
  };
}
