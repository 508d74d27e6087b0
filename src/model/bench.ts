/**
 * Model throughput benchmark: inference images/s at several batch sizes, both through
 * `model.predict` and through the folded pass that serve, eval and predict run (`foldModel`),
 * and training images/s (forward + backward + SGD update) per backend and preset. Returns one serialisable result;
 * `formatModelBench` prints it. Reports progress through a callback, never prints.
 */
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendName } from '../backend/index.js';
import { isCifarError } from '../errors.js';
import { prepareForTraining } from './training-graph.js';
import { foldModel } from './fold.js';
import { buildModel, countParams, resolvePreset } from './resnet.js';

export interface ModelBenchOptions {
  backends: BackendName[];
  presets: string[];
  /** Default [1, 32, 128]. */
  inferenceBatches?: number[];
  /** Default 128. */
  trainBatch?: number;
  /** Seconds each measurement runs for, after warm-up. Default 3. */
  minSeconds?: number;
  /** On the plain-JS cpu backend, presets above this many parameters are skipped. Default 200k. */
  cpuMaxParams?: number;
  onProgress?: (message: string) => void;
}

export interface Throughput {
  batch: number;
  iterations: number;
  msPerBatch: number;
  imagesPerSecond: number;
}

export interface ModelBenchRow {
  backend: BackendName;
  backendReason: string;
  preset: string;
  trainableParams: number;
  /** Why this pair was not measured, when it was not. */
  skipped?: string;
  /** `model.predict`: the forward pass of the network that training runs (batch norm separate). */
  inference: Throughput[];
  /** The folded pass (batch norms inside the convolutions) that serve, eval and predict run. */
  served: Throughput[];
  training: Throughput | null;
  /** Training step cost in forward passes: `inference` img/s / training img/s at the training batch. */
  trainToInferenceRatio: number | null;
}

export interface ModelBenchResult {
  startedAt: string;
  node: string;
  cpus: string;
  cpuCount: number;
  rows: ModelBenchRow[];
}

/** Runs `step` (which must return a tensor to sync on) for at least `minSeconds` and 2 runs, after a warm-up. */
async function measure(batch: number, minSeconds: number, step: () => tf.Tensor): Promise<Throughput> {
  const warm = step(); // the first call builds XNNPACK operators / shaders
  await warm.data();
  warm.dispose();
  let iterations = 0;
  const start = performance.now();
  while (performance.now() - start < minSeconds * 1000 || iterations < 2) {
    const t = step();
    await t.data(); // sync every step: tfjs queues work lazily on some backends
    t.dispose();
    iterations++;
  }
  const ms = (performance.now() - start) / iterations;
  return { batch, iterations, msPerBatch: ms, imagesPerSecond: (batch * 1000) / ms };
}

async function benchOne(backend: BackendName, backendReason: string, preset: string, opts: Required<Omit<ModelBenchOptions, 'onProgress'>>, progress: (m: string) => void): Promise<ModelBenchRow> {
  const model = buildModel(preset);
  const trainableParams = countParams(model).trainable;
  const row: ModelBenchRow = { backend, backendReason, preset, trainableParams, inference: [], served: [], training: null, trainToInferenceRatio: null };
  try {
    if (backend === 'cpu' && trainableParams > opts.cpuMaxParams) {
      row.skipped = `over ${opts.cpuMaxParams} parameters on the plain-JS cpu backend`;
      return row;
    }
    for (const batch of opts.inferenceBatches) {
      const x = tf.randomNormal([batch, 32, 32, 3]);
      progress(`${backend} ${preset}: inference, batch ${batch}`);
      row.inference.push(await measure(batch, opts.minSeconds, () => model.predict(x, { batchSize: batch }) as tf.Tensor));
      const folded = foldModel(model);
      if (folded) {
        progress(`${backend} ${preset}: folded inference, batch ${batch}`);
        row.served.push(await measure(batch, opts.minSeconds, () => folded.apply(x as tf.Tensor4D)));
        folded.dispose();
      }
      x.dispose();
    }
    const b = opts.trainBatch;
    const x = tf.randomNormal([b, 32, 32, 3]);
    const y = tf.oneHot(tf.randomUniform([b], 0, 10, 'int32'), 10);
    const optimizer = tf.train.momentum(0.01, 0.9, true);
    progress(`${backend} ${preset}: training, batch ${b}`);
    const restoreLayers = prepareForTraining(model); // the layers as the trainer runs them
    try {
      row.training = await measure(b, opts.minSeconds, () =>
        optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor), true) as tf.Scalar,
      );
    } finally {
      restoreLayers();
    }
    optimizer.dispose();
    tf.dispose([x, y]);
    const inferenceAtTrainBatch = row.inference.find((t) => t.batch === b);
    if (inferenceAtTrainBatch) row.trainToInferenceRatio = inferenceAtTrainBatch.imagesPerSecond / row.training.imagesPerSecond;
    return row;
  } finally {
    model.dispose();
  }
}

/**
 * Measures every (backend, preset) pair. Backends that cannot start are recorded as skipped.
 * @example
 * const result = await benchmarkModels({ backends: ['wasm'], presets: ['resnet18-w4'] });
 * process.stdout.write(formatModelBench(result));
 */
export async function benchmarkModels(options: ModelBenchOptions): Promise<ModelBenchResult> {
  options.presets.forEach(resolvePreset); // fail fast on a typo, before minutes of measuring
  const opts = {
    backends: options.backends,
    presets: options.presets,
    inferenceBatches: options.inferenceBatches ?? [1, 32, 128],
    trainBatch: options.trainBatch ?? 128,
    minSeconds: options.minSeconds ?? 3,
    cpuMaxParams: options.cpuMaxParams ?? 200_000,
  };
  const progress = options.onProgress ?? ((): void => undefined);
  const cpu = os.cpus();
  const result: ModelBenchResult = {
    startedAt: new Date().toISOString(),
    node: process.version,
    cpus: cpu[0]?.model ?? 'unknown',
    cpuCount: cpu.length,
    rows: [],
  };
  for (const backend of opts.backends) {
    let reason: string;
    try {
      reason = (await initBackend(backend)).reason;
    } catch (err) {
      if (!isCifarError(err)) throw err;
      for (const preset of opts.presets) {
        result.rows.push({ backend, backendReason: err.message, preset, trainableParams: 0, skipped: err.message, inference: [], served: [], training: null, trainToInferenceRatio: null });
      }
      continue;
    }
    for (const preset of opts.presets) result.rows.push(await benchOne(backend, reason, preset, opts, progress));
  }
  return result;
}

/** A fixed-column table of a benchmark result, one row per (backend, preset). */
export function formatModelBench(result: ModelBenchResult): string {
  const batches = [...new Set(result.rows.flatMap((r) => r.inference.map((t) => t.batch)))].sort((a, b) => a - b);
  const trainBatch = result.rows.find((r) => r.training)?.training?.batch;
  const head = ['backend', 'model', 'params', ...batches.map((b) => `infer@${b}`), ...batches.map((b) => `served@${b}`), `train@${trainBatch ?? '-'}`, 'ratio'];
  const lines = result.rows.map((r) => {
    if (r.skipped) return [r.backend, r.preset, String(r.trainableParams), `skipped: ${r.skipped}`];
    return [
      r.backend,
      r.preset,
      String(r.trainableParams),
      ...batches.map((b) => r.inference.find((t) => t.batch === b)?.imagesPerSecond.toFixed(1) ?? '-'),
      ...batches.map((b) => r.served.find((t) => t.batch === b)?.imagesPerSecond.toFixed(1) ?? '-'),
      r.training?.imagesPerSecond.toFixed(1) ?? '-',
      r.trainToInferenceRatio === null ? '-' : `${r.trainToInferenceRatio.toFixed(2)}x`,
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l.length === head.length ? (l[i]?.length ?? 0) : 0))));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  const header = `model benchmark (images/s), ${result.cpuCount} x ${result.cpus}, node ${result.node}`;
  const legend = 'infer: model.predict, the forward pass a training step runs; served: batch norms folded into the convolutions (serve, eval, predict); ratio: infer / train at the training batch';
  return [header, fmt(head), ...lines.map((l) => (l.length === head.length ? fmt(l) : l.join('  '))), legend].join('\n') + '\n';
}
