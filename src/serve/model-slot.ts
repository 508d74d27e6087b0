import { IMAGE_BYTES } from '../image/preprocess.js';
import type { Predictor, PredictorInfo } from '../model/predictor.js';
import { createBatcher, type Batcher, type BatcherOptions } from './batcher.js';

/** A loaded, warm model with its own batcher; requests hold it while they use it. */
export interface LoadedModel {
  readonly predictor: Predictor;
  readonly batcher: Batcher;
  /** Take a reference for the length of one request; call the returned function when done. */
  acquire(): () => void;
}

export interface ModelSlot {
  /** The model serving now, or undefined while the first one loads. */
  current(): LoadedModel | undefined;
  /**
   * Warm `predictor` up, then make it the current model in one step: a request sees the old
   * model or the new one, never a mix. The old one is disposed once its last request is done.
   */
  install(predictor: Predictor): Promise<PredictorInfo>;
  /** Images waiting in the current model's queue. */
  depth(): number;
  /** Wait for in-flight work, then dispose the current model. */
  close(): Promise<void>;
}

export type SlotOptions = Omit<BatcherOptions, 'run' | 'classes'>;

function load(predictor: Predictor, options: SlotOptions): LoadedModel & { retire(): Promise<void> } {
  let users = 0;
  let retired = false;
  let disposed = false;
  const batcher = createBatcher({ ...options, run: (px, n) => predictor.predict(px, n), classes: predictor.info.classes.length });
  const disposeIfIdle = () => {
    if (retired && users === 0 && !disposed) {
      disposed = true;
      void batcher.drain().then(() => predictor.dispose());
    }
  };
  return {
    predictor,
    batcher,
    acquire() {
      users++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        users--;
        disposeIfIdle();
      };
    },
    async retire() {
      retired = true;
      await batcher.drain();
      disposeIfIdle();
    },
  };
}

/** A holder for the served model that supports atomic reloads. */
export function createModelSlot(options: SlotOptions): ModelSlot {
  let active: ReturnType<typeof load> | undefined;
  return {
    current: () => active,
    async install(predictor) {
      // Run the sizes the batcher will use first, so no client pays for kernel set-up (on webgpu
      // their programs are compiled all at once first).
      const sizes = [...new Set([1, options.maxBatch])];
      await predictor.compile?.(sizes);
      for (const n of sizes) await predictor.predict(new Uint8Array(n * IMAGE_BYTES), n);
      const previous = active;
      active = load(predictor, options);
      if (previous) await previous.retire();
      return predictor.info;
    },
    depth: () => active?.batcher.depth ?? 0,
    async close() {
      const last = active;
      active = undefined;
      if (last) await last.retire();
    },
  };
}
