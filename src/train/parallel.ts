/**
 * Data-parallel training on the CPU backends (wasm, cpu): tfjs runs one op at a time per thread,
 * so a run with `workers` > 1 trains in that many threads, each with its own copy of the model.
 * Every batch is split into shares, one a thread; each computes its share's gradients, and
 * through memory they all share (SharedArrayBuffer, Atomics) each takes the whole batch's mean
 * and makes the same update, so the copies stay equal. This thread is the first of them: it
 * keeps the state that checkpoints, evaluation and the saved model read (the weight average, and
 * the batch-norm statistics, which like PyTorch's DistributedDataParallel come from its own
 * shares; each share's batch norm normalises with that share's statistics).
 */
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import type { LabelledImages } from '../data/cifar-binary.js';
import { CifarError } from '../errors.js';
import { evaluateModel, type EvaluateOptions, type Evaluation } from '../eval/evaluate.js';
import { IMAGE_BYTES } from '../image/preprocess.js';
import type { Normalization } from '../model/normalize.js';
import { workerUrl } from './loader.js';
import { createTrainer, type GradientReducer, type StepBatch, type Trainer, type TrainerOptions } from './step.js';

/** Images a share of a batch holds at least: a thread gets no share smaller (batch norm needs some). */
export const MIN_SHARE = 16;

/** Images an evaluation thread gets at least: fewer would not pay for starting it (about a second). */
export const MIN_EVALUATION_SHARE = 250;

/**
 * Threads for `workers` ("auto": `cores` on wasm and cpu, else 1), at most `most`. More than one
 * on another backend is a usage error.
 */
function cpuThreads(workers: number | 'auto', backend: string, most: number, cores: number, what: string): number {
  const cpu = backend === 'wasm' || backend === 'cpu';
  if (!cpu && workers !== 'auto' && workers > 1) {
    throw new CifarError('USAGE', `--workers ${workers}: ${what} threads are for the wasm and cpu backends; ${backend} runs in one`, { hint: 'leave --workers out (auto) or use --backend wasm' });
  }
  const requested = workers === 'auto' ? (cpu ? cores : 1) : workers;
  return Math.max(1, Math.min(requested, most));
}

/** The threads a run trains in: at most one per MIN_SHARE images of a batch. */
export function trainingThreads(workers: number | 'auto', backend: string, batchSize: number, cores: number): number {
  return cpuThreads(workers, backend, Math.floor(batchSize / MIN_SHARE), cores, 'training');
}

/** The threads `cifar eval` evaluates `count` images in: at most one per MIN_EVALUATION_SHARE images. */
export function evaluationThreads(workers: number | 'auto', backend: string, count: number, cores: number): number {
  return cpuThreads(workers, backend, Math.ceil(count / MIN_EVALUATION_SHARE), cores, 'evaluation');
}

/** Where each of `ranks` shares of a batch of `size` starts and ends: as even as can be, the larger first. */
export function shareBounds(size: number, ranks: number): Array<[number, number]> {
  const base = Math.floor(size / ranks);
  const extra = size % ranks;
  const bounds: Array<[number, number]> = [];
  let start = 0;
  for (let r = 0; r < ranks; r++) {
    const end = start + base + (r < extra ? 1 : 0);
    bounds.push([start, end]);
    start = end;
  }
  return bounds;
}

/** Elements `from` to `to` of `a`: a view, or with `copy` an array of its own (to post to a worker: posting a view copies its whole buffer). */
function cut<T extends Uint8Array | Int32Array>(a: T, from: number, to: number, copy: boolean): T {
  return (copy ? a.slice(from, to) : a.subarray(from, to)) as T;
}

/** Images `start` to `end` of a batch with their draws: views, or with `copy` arrays of their own. */
export function shareOf(batch: StepBatch, start: number, end: number, copy = false): StepBatch {
  const { cutout, crops, mix } = batch;
  const part = <T extends Uint8Array | Int32Array>(a: T, from = start, to = end): T => cut(a, from, to, copy);
  return {
    images: part(batch.images, start * IMAGE_BYTES, end * IMAGE_BYTES),
    labels: part(batch.labels),
    size: end - start,
    ...(cutout ? { cutout: { cy: part(cutout.cy), cx: part(cutout.cx) } } : {}),
    ...(crops ? { crops: { dy: part(crops.dy), dx: part(crops.dx), mirror: part(crops.mirror) } } : {}),
    ...(mix ? { mix } : {}),
  };
}

// Layout of the shared memory: control words, a failure message, then two sets (steps alternate
// between them, so that a thread may write the next step's while another still reads this
// one's) of each thread's figures (loss sum, correct answers, images) and gradients.
const CONTROL = { arrived: 0, generation: 1, failed: 2 } as const;
const CONTROL_BYTES = 16;
const MESSAGE_BYTES = 512;

/** The memory the threads of a run share, sized for `ranks` threads and `parameters` floats of gradient. */
export function sharedMemory(ranks: number, parameters: number): SharedArrayBuffer {
  return new SharedArrayBuffer(CONTROL_BYTES + MESSAGE_BYTES + 2 * ranks * 3 * 8 + 2 * ranks * parameters * 4);
}

/**
 * One thread's side of the exchange: `reduce` is the trainer's GradientReducer. All threads call
 * it once a step, in the same order of steps; it returns when every thread has written its share,
 * with the same floats on every thread (each sums the shares in the same order).
 */
export class GradientExchange {
  private readonly control: Int32Array;
  private readonly message: Uint8Array;
  private readonly figures: Float64Array;
  private readonly grads: Float32Array;
  private steps = 0;

  constructor(
    shared: SharedArrayBuffer,
    private readonly ranks: number,
    private readonly rank: number,
    private readonly parameters: number,
  ) {
    this.control = new Int32Array(shared, 0, CONTROL_BYTES / 4);
    this.message = new Uint8Array(shared, CONTROL_BYTES, MESSAGE_BYTES);
    this.figures = new Float64Array(shared, CONTROL_BYTES + MESSAGE_BYTES, 2 * ranks * 3);
    this.grads = new Float32Array(shared, CONTROL_BYTES + MESSAGE_BYTES + 2 * ranks * 3 * 8, 2 * ranks * parameters);
  }

  readonly reduce: GradientReducer = ({ grads, lossSum, correct, size }) => {
    const set = this.steps++ % 2;
    const region = (r: number) => (set * this.ranks + r) * this.parameters;
    let offset = region(this.rank);
    for (const g of grads) {
      this.grads.set(g.dataSync() as Float32Array, offset);
      offset += g.size;
    }
    if (offset - region(this.rank) !== this.parameters) throw new Error(`gradient exchange: ${offset - region(this.rank)} floats of gradient, expected ${this.parameters}`);
    const f = (set * this.ranks + this.rank) * 3;
    this.figures.set([lossSum.dataSync()[0]!, correct.dataSync()[0]!, size], f);
    this.barrier();
    // The mean over the batch: each share's mean gradient weighted by its images.
    let images = 0;
    let loss = 0;
    let right = 0;
    for (let r = 0; r < this.ranks; r++) {
      const q = (set * this.ranks + r) * 3;
      loss += this.figures[q]!;
      right += this.figures[q + 1]!;
      images += this.figures[q + 2]!;
    }
    const mean = new Float32Array(this.parameters);
    for (let r = 0; r < this.ranks; r++) {
      const weight = this.figures[(set * this.ranks + r) * 3 + 2]! / images;
      const share = this.grads.subarray(region(r), region(r) + this.parameters);
      for (let i = 0; i < this.parameters; i++) mean[i]! += weight * share[i]!;
    }
    offset = 0;
    const out = grads.map((g) => {
      const t = tf.tensor(mean.subarray(offset, offset + g.size), g.shape, 'float32');
      offset += g.size;
      return t;
    });
    return { grads: out, lossSum: tf.scalar(loss), correct: tf.scalar(right) };
  };

  /**
   * Stops every thread at its next (or current) wait, with `message` as the reason (the first
   * failure's: `failed` goes 0 → 2 while its message is written, then 1).
   */
  fail(message: string): void {
    if (Atomics.compareExchange(this.control, CONTROL.failed, 0, 2) === 0) {
      const bytes = new TextEncoder().encode(message.slice(0, MESSAGE_BYTES / 4));
      this.message.set(bytes.subarray(0, MESSAGE_BYTES));
      Atomics.store(this.control, CONTROL.failed, 1);
      Atomics.notify(this.control, CONTROL.failed);
    }
    Atomics.notify(this.control, CONTROL.generation);
  }

  /** Waits until every thread has arrived (a generation counter, so it can be used again). */
  private barrier(): void {
    const generation = Atomics.load(this.control, CONTROL.generation);
    if (Atomics.add(this.control, CONTROL.arrived, 1) === this.ranks - 1) {
      Atomics.store(this.control, CONTROL.arrived, 0);
      Atomics.add(this.control, CONTROL.generation, 1);
      Atomics.notify(this.control, CONTROL.generation);
    } else {
      while (Atomics.load(this.control, CONTROL.generation) === generation && Atomics.load(this.control, CONTROL.failed) === 0) {
        Atomics.wait(this.control, CONTROL.generation, generation, 1000);
      }
    }
    if (Atomics.load(this.control, CONTROL.failed) !== 0) {
      while (Atomics.load(this.control, CONTROL.failed) === 2) Atomics.wait(this.control, CONTROL.failed, 2, 10);
      const end = this.message.indexOf(0);
      const text = new TextDecoder().decode(this.message.slice(0, end < 0 ? MESSAGE_BYTES : end));
      throw new CifarError('BACKEND_FAILED', `a training thread stopped: ${text}`);
    }
  }
}

/** What a worker thread needs to build its copy of the model, and for training its trainer. */
export interface WorkerSetup {
  rank: number;
  backend: 'wasm' | 'cpu';
  /** The model's preset (model/resnet.ts). */
  model: string;
  seed: number;
  /** Absent in a thread that only evaluates. */
  training?: { ranks: number; shared: SharedArrayBuffer; parameters: number; trainer: Omit<TrainerOptions, 'reduce' | 'ema' | 'fusedUpdate'> };
}

type Arrays = Array<{ shape: number[]; values: Float32Array }>;

/**
 * Messages to a worker thread: the state to take (weights, then velocities), a share to train,
 * or a share of labelled images to evaluate with the model's weights `weights` (model.weights' order).
 */
export type WorkerMessage =
  | { type: 'state'; arrays: Arrays }
  | { type: 'step'; batch: StepBatch; lr: number }
  | ({ type: 'evaluate'; id: number; weights: Arrays; norm: Normalization; options: EvaluateOptions } & LabelledImages);

/** A worker's answer to 'evaluate'. */
export type WorkerReply = { id: number; loss: number; predictions: Uint8Array } | { id: number; error: string };

/** Worker threads (parallel-worker.ts), ranks 1 to n, and their answers to 'evaluate'. */
class WorkerPool {
  readonly workers: Worker[];
  private readonly pending = new Map<number, { resolve: (r: { loss: number; predictions: Uint8Array }) => void; reject: (e: Error) => void }>();
  private nextId = 0;

  /** `onFailure`: a worker died (it catches its own errors, so this is rare); pending answers fail too. */
  constructor(setups: WorkerSetup[], onFailure: (message: string) => void = () => undefined) {
    this.workers = setups.map((setup) => {
      const worker = new Worker(workerUrl('parallel-worker.js', 'training worker'), { workerData: setup });
      worker.on('error', (err) => {
        onFailure(`worker ${setup.rank}: ${err.message}`);
        for (const p of this.pending.values()) p.reject(stopped(`worker ${setup.rank}: ${err.message}`));
        this.pending.clear();
      });
      worker.on('message', (reply: WorkerReply) => {
        const p = this.pending.get(reply.id);
        this.pending.delete(reply.id);
        if ('error' in reply) p?.reject(stopped(`worker ${setup.rank}: ${reply.error}`));
        else p?.resolve(reply);
      });
      // Never what keeps the process alive: a run that fails before it ends them still exits.
      worker.unref();
      return worker;
    });
  }

  /**
   * `evaluateModel` of `model` as it is now in this thread (weights and batch-norm statistics),
   * this thread and each worker evaluating a share of the images: the same predictions, and the
   * loss up to the order of its sum.
   */
  async evaluate(model: tf.LayersModel, data: LabelledImages, norm: Normalization, options: EvaluateOptions = {}): Promise<Evaluation> {
    // Without workers, nothing to share: no weights are read back (on a GPU that is a copy).
    if (this.workers.length === 0) return evaluateModel(model, data, norm, options);
    const weights = model.weights.map((w) => ({ shape: w.shape as number[], values: Float32Array.from(w.read().dataSync()) }));
    const bounds = shareBounds(data.count, this.workers.length + 1);
    const part = ([start, end]: [number, number], copy: boolean): LabelledImages => ({
      images: cut(data.images, start * IMAGE_BYTES, end * IMAGE_BYTES, copy),
      labels: cut(data.labels, start, end, copy),
      count: end - start,
    });
    const answers = this.workers.map(
      (w, i) =>
        new Promise<{ loss: number; predictions: Uint8Array }>((resolve, reject) => {
          const id = this.nextId++;
          this.pending.set(id, { resolve, reject });
          w.postMessage({ type: 'evaluate', id, weights, norm: { mean: [...norm.mean], std: [...norm.std] }, options, ...part(bounds[i + 1]!, true) } satisfies WorkerMessage);
        }),
    );
    // All answers are awaited, so that none is left to fail unheard; meanwhile the workers keep
    // the process alive (an unreferenced one would let it end while waiting for them).
    for (const w of this.workers) w.ref();
    const [mine, others] = await Promise.all([evaluateModel(model, part(bounds[0]!, false), norm, options), Promise.all(answers)]).finally(() => {
      for (const w of this.workers) w.unref();
    });
    const predictions = new Uint8Array(data.count);
    let lossSum = 0;
    [mine, ...others].forEach((e, r) => {
      const [start, end] = bounds[r]!;
      predictions.set(e.predictions, start);
      lossSum += e.loss * (end - start);
    });
    let correct = 0;
    for (let i = 0; i < data.count; i++) if (predictions[i] === data.labels[i]) correct++;
    const n = Math.max(1, data.count);
    return { loss: lossSum / n, accuracy: correct / n, predictions, tta: options.tta === true };
  }

  terminate(): void {
    for (const w of this.workers) void w.terminate();
  }
}

const stopped = (message: string) => new CifarError('BACKEND_FAILED', `a worker thread stopped: ${message}`);

/** Evaluation shared between this thread and `ranks` − 1 workers (cifar eval --workers). */
export interface ParallelEvaluator {
  /** `evaluateModel` of the model as it is now, each thread a share of the images. */
  evaluate(data: LabelledImages, norm: Normalization, options?: EvaluateOptions): Promise<Evaluation>;
  dispose(): void;
}

/**
 * `model` (preset `setup.model`) evaluated in `ranks` threads: this one and ranks − 1 workers with
 * copies of it. With `ranks` 1 there are no workers: `evaluateModel` on the whole set.
 */
export function createParallelEvaluator(model: tf.LayersModel, setup: { ranks: number; backend: 'wasm' | 'cpu'; model: string }): ParallelEvaluator {
  const pool = new WorkerPool(Array.from({ length: setup.ranks - 1 }, (_, i) => ({ rank: i + 1, backend: setup.backend, model: setup.model, seed: 0 })));
  return {
    evaluate: (data, norm, options) => pool.evaluate(model, data, norm, options),
    dispose: () => pool.terminate(),
  };
}

/** A Trainer whose test passes are shared between its threads too. */
export interface ParallelTrainer extends Trainer {
  /**
   * `evaluateModel` of the model as it is now in this thread (weights and batch-norm statistics;
   * inside `withAverage`, the average), each thread evaluating a share of the images.
   */
  evaluate(data: LabelledImages, norm: Normalization): Promise<Evaluation>;
}

/**
 * A Trainer over `ranks` threads: this one (rank 0, with `model`) and ranks − 1 workers, each
 * with a copy built from `model` (its preset name) and given this one's weights and velocities
 * before the first step and after a `restore`.
 */
export function createParallelTrainer(model: tf.LayersModel, options: TrainerOptions, setup: { ranks: number; backend: 'wasm' | 'cpu'; model: string; seed: number }): ParallelTrainer {
  const parameters = model.trainableWeights.reduce((n, w) => n + w.shape.reduce<number>((a, b) => a * (b ?? 1), 1), 0);
  const shared = sharedMemory(setup.ranks, parameters);
  const exchange = new GradientExchange(shared, setup.ranks, 0, parameters);
  const own = createTrainer(model, { ...options, reduce: exchange.reduce });
  // What a worker's trainer takes (no weight average: this thread keeps it).
  const { momentum, weightDecay, labelSmoothing, mean, std, classes, cutout, crops, mix } = options;
  const trainer = { momentum, weightDecay, labelSmoothing, mean, std, classes, ...(cutout === undefined ? {} : { cutout }), ...(crops === undefined ? {} : { crops }), ...(mix === undefined ? {} : { mix }) };
  const training = { ranks: setup.ranks, shared, parameters, trainer };
  // A worker that dies stops the others' waits at the exchange.
  const pool = new WorkerPool(
    Array.from({ length: setup.ranks - 1 }, (_, i) => ({ rank: i + 1, backend: setup.backend, model: setup.model, seed: setup.seed, training })),
    (message) => exchange.fail(message),
  );
  const { workers } = pool;
  const modelState = () => model.weights.length + model.trainableWeights.length;
  let synced = false;
  const sync = () => {
    const arrays = own
      .stateTensors()
      .slice(0, modelState())
      .map((t) => ({ shape: t.shape, values: t.dataSync() as Float32Array }));
    for (const w of workers) w.postMessage({ type: 'state', arrays } satisfies WorkerMessage);
    synced = true;
  };
  return {
    step(batch, lr) {
      if (!synced) sync();
      const bounds = shareBounds(batch.size, setup.ranks);
      workers.forEach((w, i) => {
        const [start, end] = bounds[i + 1]!;
        w.postMessage({ type: 'step', batch: shareOf(batch, start, end, true), lr } satisfies WorkerMessage);
      });
      try {
        return own.step(shareOf(batch, ...bounds[0]!), lr);
      } catch (err) {
        // The workers must not wait for this thread's share.
        exchange.fail(`the first thread: ${(err as Error).message}`);
        throw err;
      }
    },
    evaluate: (data, norm) => pool.evaluate(model, data, norm),
    precompile: (size) => own.precompile(size),
    withAverage: (fn) => own.withAverage(fn),
    adoptAverage: () => own.adoptAverage(),
    stateTensors: () => own.stateTensors(),
    restore(arrays) {
      own.restore(arrays);
      synced = false;
    },
    dispose() {
      exchange.fail('the run ended');
      pool.terminate();
      own.dispose();
    },
  };
}
