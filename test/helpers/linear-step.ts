import * as tf from '@tensorflow/tfjs';
import { createTrainer, type StepBatch, type TrainerOptions } from '../../src/train/step.js';

/**
 * The kernel of a linear model (flatten, then a dense layer of 10 starting at 0) after one plain
 * SGD step on `batch` (no momentum, decay or smoothing; inputs normalised as (v/255 − 0.5)/0.25):
 * −lr times the kernel's gradient, for tests to compare with the formula.
 */
export async function linearKernelAfterStep(batch: StepBatch, lr: number, options: Partial<TrainerOptions> = {}): Promise<Float32Array> {
  const model = tf.sequential({ layers: [tf.layers.flatten({ inputShape: [32, 32, 3] }), tf.layers.dense({ units: 10, kernelInitializer: 'zeros' })] });
  const trainer = createTrainer(model, { momentum: 0, weightDecay: 0, labelSmoothing: 0, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], classes: 10, ...options });
  const out = trainer.step(batch, lr);
  tf.dispose([out.lossSum, out.correct]);
  const kernel = (await model.layers[1]!.getWeights()[0]!.data()) as Float32Array;
  trainer.dispose();
  model.dispose();
  return kernel;
}
