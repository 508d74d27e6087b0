/**
 * Training-step benchmark of `cifar train`'s own trainer on the CPU backends: images/s of a step
 * (forward, backward, SGD update) in one thread and in several (train/parallel.ts), with the
 * speed-up over one thread measured in the same run. Returns one serialisable result;
 * `formatTrainBench` prints it. Reports progress through a callback, never prints.
 */
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../backend/index.js';
import { IMAGE_BYTES } from '../image/preprocess.js';
import { buildModel, resolvePreset } from '../model/resnet.js';
import { createParallelTrainer, MIN_SHARE } from './parallel.js';
import { createTrainer, type StepBatch, type Trainer, type TrainerOptions } from './step.js';

export interface TrainBenchOptions {
  backend: 'wasm' | 'cpu';
  presets: string[];
  /** Images a step. Default 128. */
  batch?: number;
  /** Thread counts to measure (1 is always measured first). Default 1 and the machine's cores. */
  threads?: number[];
  /** Seconds each measurement runs for, after warm-up. Default 10. */
  minSeconds?: number;
  onProgress?: (message: string) => void;
}

export interface TrainBenchRow {
  preset: string;
  threads: number;
  batch: number;
  steps: number;
  msPerStep: number;
  imagesPerSecond: number;
  /** imagesPerSecond over the one-thread row's of the same preset, in this run. */
  speedup: number;
}

export interface TrainBenchResult {
  startedAt: string;
  node: string;
  cpus: string;
  cpuCount: number;
  backend: string;
  rows: TrainBenchRow[];
}

const OPTIONS: TrainerOptions = { momentum: 0.9, weightDecay: 5e-4, labelSmoothing: 0.1, mean: [125, 123, 114], std: [63, 62, 66], classes: 10 };

/** A batch of `n` fixed pseudo-random images and labels. */
function benchBatch(n: number): StepBatch {
  const images = Uint8Array.from({ length: n * IMAGE_BYTES }, (_, i) => (i * 7919) % 251);
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  return { images, labels, size: n };
}

/** Steps for at least `minSeconds` and 3 steps, after 2 warm-up steps (XNNPACK operators, the workers' start). */
function measure(trainer: Trainer, batch: StepBatch, minSeconds: number): { steps: number; msPerStep: number } {
  const step = () => {
    const { lossSum, correct } = trainer.step(batch, 0.01);
    lossSum.dataSync();
    tf.dispose([lossSum, correct]);
  };
  step();
  step();
  let steps = 0;
  const start = performance.now();
  while (performance.now() - start < minSeconds * 1000 || steps < 3) {
    step();
    steps++;
  }
  return { steps, msPerStep: (performance.now() - start) / steps };
}

/**
 * Measures every preset at each thread count (those that leave a share under MIN_SHARE images are skipped).
 * @example
 * const result = await benchmarkTraining({ backend: 'wasm', presets: ['resnet18-w4'] });
 * process.stdout.write(formatTrainBench(result));
 */
export async function benchmarkTraining(options: TrainBenchOptions): Promise<TrainBenchResult> {
  options.presets.forEach(resolvePreset);
  const batchSize = options.batch ?? 128;
  const cores = os.availableParallelism();
  const counts = [...new Set([1, ...(options.threads ?? [cores])])].filter((n) => n >= 1 && batchSize / n >= MIN_SHARE).sort((a, b) => a - b);
  const minSeconds = options.minSeconds ?? 10;
  const progress = options.onProgress ?? ((): void => undefined);
  await initBackend(options.backend);
  const cpu = os.cpus();
  const result: TrainBenchResult = { startedAt: new Date().toISOString(), node: process.version, cpus: cpu[0]?.model ?? 'unknown', cpuCount: cpu.length, backend: options.backend, rows: [] };
  const batch = benchBatch(batchSize);
  for (const preset of options.presets) {
    let single = 0;
    for (const threads of counts) {
      progress(`${options.backend} ${preset}: training, batch ${batchSize}, ${threads} thread${threads === 1 ? '' : 's'}`);
      const model = buildModel(preset, { seed: 0 });
      const trainer = threads === 1 ? createTrainer(model, OPTIONS) : createParallelTrainer(model, OPTIONS, { ranks: threads, backend: options.backend, model: preset, seed: 0 });
      try {
        const { steps, msPerStep } = measure(trainer, batch, minSeconds);
        const imagesPerSecond = (batchSize * 1000) / msPerStep;
        if (threads === 1) single = imagesPerSecond;
        result.rows.push({ preset, threads, batch: batchSize, steps, msPerStep, imagesPerSecond, speedup: imagesPerSecond / single });
      } finally {
        trainer.dispose();
        model.dispose();
      }
    }
  }
  return result;
}

/** A fixed-column table of a training benchmark, one row per (preset, threads). */
export function formatTrainBench(result: TrainBenchResult): string {
  const head = ['model', 'threads', 'batch', 'ms/step', 'img/s', 'speed-up'];
  const lines = result.rows.map((r) => [r.preset, String(r.threads), String(r.batch), r.msPerStep.toFixed(1), r.imagesPerSecond.toFixed(1), `${r.speedup.toFixed(2)}x`]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const header = `training benchmark (${result.backend}, cifar train's trainer), ${result.cpuCount} x ${result.cpus}, node ${result.node}`;
  const legend = 'threads: data-parallel training threads (cifar train --workers), each a copy of the model and a share of the batch; speed-up: over one thread, in this run';
  return [header, fmt(head), ...lines.map(fmt), legend].join('\n') + '\n';
}
