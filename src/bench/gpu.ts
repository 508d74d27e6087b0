/**
 * GPU training benchmark (issue 7): images/s of predict, forward in training mode + loss, and
 * the full training step (`createTrainer`, as `cifar train` runs it) at several batch sizes on
 * the webgpu backend, with GPU kernel time (timestamp queries through `tf.time`) against wall
 * time per step, GPU memory, and the kernels that take the GPU time. Returns one serialisable
 * result; `formatGpuBench` prints it. Reports progress through a callback, never prints.
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendInfo } from '../backend/index.js';
import { allowNullBackend, probeWebGpu, takeWebGpuErrors } from '../backend/webgpu.js';
import { bindGroupCacheStats, type BindGroupCacheStats } from '../backend/webgpu-bind-groups.js';
import { registerWebGpuKernels, unregisterWebGpuKernels } from '../backend/webgpu-kernels/register.js';
import { deviceSgdGroupSize } from '../backend/webgpu-kernels/sgd.js';
import { type HardwareSide, type MatrixSyntax, matmulFallback, matmulTried, matrixHardwareSide, matrixSyntax } from '../backend/webgpu-kernels/matrix.js';
import { type MatrixCheck, matrixCheck } from '../backend/webgpu-kernels/matrix-check.js';
import { type ProbeGpu, describeProbe, runMatrixProbe } from '../backend/webgpu-kernels/matrix-probe.js';
import { type KernelVariant, type MatmulMode, configureWebGpuKernels, describeWebGpuKernels, webGpuKernelSettings } from '../backend/webgpu-kernels/settings.js';
import { CifarError } from '../errors.js';
import { type ConvCheck, checkConvKernels } from './gpu-check.js';
import { type BackendCounts, countBackendCalls } from './gpu-counts.js';
import type { CropParams } from '../image/crop.js';
import type { SampleMix } from '../image/mix.js';
import { inferencePass } from '../model/fold.js';
import { normalizesOnDevice } from '../model/normalize.js';
import { buildModel, countParams } from '../model/resnet.js';
import { stepLoss, createTrainer } from '../train/step.js';

export interface GpuBenchOptions {
  /** Model preset. */
  model: string;
  batches: number[];
  /** Timed runs per round of a measurement, after two warm-up runs. */
  iterations: number;
  /** Rounds per measurement; the median round is reported (default 3). */
  rounds?: number;
  /** Run on a software adapter (lavapipe): for smoke tests, the figures mean nothing. */
  allowSoftware?: boolean;
  /** Use tfjs' own convolution-gradient kernels instead of ours, for comparison. */
  stockKernels?: boolean;
  /** Per-kernel GPU time of one step at the largest batch (tf.profile). Default true. */
  profile?: boolean;
  /** First compare our conv-gradient kernels with tfjs' on every convolution of the model at this batch (0: skip). Default 8. */
  checkBatch?: number;
  /** tfjs' WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE: dispatches recorded per queue submission (tfjs' default 15). */
  submitBatch?: number;
  /**
   * Variant settings of our kernels (settings.ts); those left out or undefined stay as the
   * environment set them (CIFAR_WEBGPU_*, else the defaults).
   */
  kernels?: Partial<KernelVariant>;
  /** tfjs' Conv2DMMProgram instead of our forward convolution, with our gradient kernels (default: the environment's, else ours). */
  stockForward?: boolean;
  /** Side of the training step's cutout squares, as `cifar train --cutout` (default 0: none). */
  cutout?: number;
  /** The training step keeps a weight average with this decay, as `cifar train --ema` (default 0: none). */
  ema?: number;
  /** Every training step's batch mixed in pairs (`cifar train --cutmix`: a 16 x 16 box, λ 0.75), to measure what mixing costs (default: none). */
  mix?: boolean;
  onProgress?: (message: string) => void;
}

export interface Rate {
  /** The median round's time per batch. */
  msPerBatch: number;
  imagesPerSecond: number;
  /** Every round's time per batch, in the order measured. */
  roundsMs?: number[];
}

export interface GpuBenchRow {
  batch: number;
  predict: Rate;
  forward: Rate;
  step: Rate;
  /** One training step: summed GPU time of its kernels, and its wall time to a sync. */
  stepKernelMs: number | null;
  stepWallMs: number;
  /** Bytes in GPU buffers tfjs holds after the step runs (its pool's high-water mark), and in live tensors. */
  gpuBytesAllocated: number | null;
  tensorBytes: number;
  /** What one training step asks of the backend (dispatches, uploads, buffers created, submits). */
  stepCounts: BackendCounts | null;
}

/** The run, the adapter, and the kernel variant measured. */
export interface GpuBenchResult extends KernelVariant {
  startedAt: string;
  node: string;
  backend: BackendInfo;
  adapter: string;
  software: boolean;
  /**
   * Dawn's null backend (`--dawn-backend null`): no shader ran, so the step figures are the CPU
   * side of a step alone (encoding, validation, uploads); there is no kernel check or profile.
   */
  runsNothing: boolean;
  /** The adapter's WebGPU features (e.g. whether it offers shader-f16). */
  adapterFeatures: string[];
  /** The adapter's workgroup limits (e.g. maxComputeWorkgroupStorageSize, which decides 16-deep tiles). */
  adapterLimits: Record<string, number>;
  /** Tensor-core configurations the adapter offers (Dawn's subgroup matrices; needs the allow_unsafe_apis toggle). */
  subgroupMatrixConfigs: Array<Record<string, unknown>>;
  /** Dawn toggles enabled for this run (CIFAR_WEBGPU_DAWN_TOGGLES). */
  dawnToggles: string[];
  /** Why the float16 GEMMs asked for (--matmul) did not run, when they did not. */
  matmulFallback?: string;
  /** With tensor cores: how the device's WGSL compiler took the subgroup matrices' layout (`pickMatrixSyntax`). */
  matrixSyntax?: MatrixSyntax;
  /** With tensor cores: the side of the device matrices the GEMMs were written for (16, or 8 with eight products a 16-step). */
  matrixSide?: HardwareSide;
  /** With float16 GEMMs asked for: the start-up check against float32 (`runMatrixCheck`), each kernel's disagreement relative to its largest value. */
  matrixCheck?: MatrixCheck;
  /**
   * With tensor cores asked for on a device that has subgroup matrices: what its matrix loads
   * read against the specification (`runMatrixProbe`): the cases run and those that failed, in
   * words, or why the probe could not run.
   */
  matrixProbe?: { cases: number; failed: string[] } | { error: string };
  kernels: 'cifar' | 'stock';
  submitBatch: number;
  forwardKernel: 'cifar' | 'stock';
  model: string;
  parameters: number;
  /** Trainable tensors (weights, batch-norm scales and biases), each updated by the SGD. */
  parameterTensors?: number;
  /**
   * Parameter tensors the in-place SGD updates per dispatch on this device: its storage-buffer
   * limit / 3 (2 at WebGPU's default of 8, 5 on lavapipe's 16). Absent in results from before it.
   */
  sgdGroup?: number;
  /** Side of the training step's cutout squares (0: none). */
  cutout: number;
  /** Decay of the step's weight average (0 or absent, in results from before it: none). */
  ema?: number;
  /** The training step's batches were mixed in pairs (cutmix; absent in results from before it: not). */
  mix?: boolean;
  /** The model's weight tensors, batch-norm statistics included: what the weight average updates. */
  weightTensors?: number;
  iterations: number;
  /** Rounds of `iterations` per rate; each rate is the median round's. */
  rounds: number;
  rows: GpuBenchRow[];
  /** GPU time by kernel in one step at the largest batch, largest first. */
  topKernels: Array<{ kernel: string; calls: number; ms: number }>;
  /** The convolutions of that step by kernel and shapes, slowest first, with the arithmetic rate they reached. */
  convKernels: ConvKernelTime[];
  /** Our conv-gradient kernels vs tfjs' on this device (relative max error; about 1e-6 expected). */
  kernelCheck: ConvCheck[];
  /** Errors the device reported during the run (a failed shader would make every figure meaningless). */
  gpuErrors: string[];
  /**
   * Reuse of bind groups over the whole run (src/backend/webgpu-bind-groups.ts); null when off
   * (`--fresh-bind-groups`, CIFAR_WEBGPU_BIND_GROUPS=fresh). Absent in results from before it.
   */
  bindGroups?: BindGroupCacheStats | null;
}

/**
 * Time per batch of `run`: two warm-up runs, then `rounds` rounds of `iterations` runs each,
 * reporting the median round. One round of 5 steps was not enough on the H100 (2026-11-26): the
 * same variant measured 2,634 and 4,576 img/s in two processes while its GPU time was 56 ms in both.
 */
export async function rate(batch: number, iterations: number, run: () => tf.Tensor, rounds = 3): Promise<Rate> {
  for (let i = 0; i < 2; i++) {
    const t = run();
    await t.data();
    t.dispose();
  }
  const roundsMs: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const start = performance.now();
    for (let i = 0; i < iterations; i++) {
      const t = run();
      // One sync at the end: the queue is in order, and syncing every step would hide pipelining.
      if (i === iterations - 1) await t.data();
      t.dispose();
    }
    roundsMs.push((performance.now() - start) / iterations);
  }
  const ms = median(roundsMs);
  return { msPerBatch: ms, imagesPerSecond: (batch * 1000) / ms, roundsMs };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function randomBatch(batch: number, seed: number): { images: Uint8Array; labels: Uint8Array; centres: { cy: Int32Array; cx: Int32Array }; crops: CropParams } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return a >>> 24;
  };
  return {
    images: Uint8Array.from({ length: batch * 32 * 32 * 3 }, next),
    labels: Uint8Array.from({ length: batch }, () => next() % 10),
    centres: { cy: Int32Array.from({ length: batch }, () => next() % 32), cx: Int32Array.from({ length: batch }, () => next() % 32) },
    // Crops of up to 4 pixels and flips, as configs/resnet18.json draws them.
    crops: { dy: Int32Array.from({ length: batch }, () => (next() % 9) - 4), dx: Int32Array.from({ length: batch }, () => (next() % 9) - 4), mirror: Int32Array.from({ length: batch }, () => next() % 2) },
  };
}

/**
 * The subgroup-matrix load probe (`runMatrixProbe`) when the backend's start tried tensor cores
 * (CIFAR_WEBGPU_MATMUL, set by --matmul, or auto) and the device has subgroup matrices, whether or not
 * the float16 GEMMs passed their start-up check; inside a validation error scope, so that a probe
 * that does not compile is reported here and not as the run's device error.
 */
async function probeMatrixLoads(progress: (m: string) => void): Promise<{ cases: number; failed: string[] } | { error: string } | undefined> {
  const device = (tf.backend() as unknown as { device?: ProbeGpu & { features?: { has(f: string): boolean }; pushErrorScope?(f: string): void; popErrorScope?(): Promise<{ message: string } | null> } }).device;
  if (matmulTried() !== 'tensor-cores' || device?.features?.has('chromium-experimental-subgroup-matrix') !== true) return undefined;
  progress('probing the subgroup-matrix loads against the specification');
  device.pushErrorScope?.('validation');
  try {
    // Matrices of the device's side (16, or 8 on lavapipe).
    const results = await runMatrixProbe(device, matrixSyntax(), { side: matrixHardwareSide() });
    const error = await device.popErrorScope?.();
    return error ? { error: error.message.split('\n')[0]! } : { cases: results.length, failed: describeProbe(results) };
  } catch (err) {
    await device.popErrorScope?.();
    return { error: (err as Error).message.split('\n')[0]! };
  }
}

/**
 * Runs the benchmark on the webgpu backend.
 * @throws CifarError('BACKEND_UNAVAILABLE') without an adapter, or on a software one unless `allowSoftware`.
 * @example
 * const result = await benchmarkGpu({ model: 'resnet18', batches: [128, 256, 512], iterations: 10 });
 * process.stdout.write(formatGpuBench(result));
 */
export async function benchmarkGpu(options: GpuBenchOptions): Promise<GpuBenchResult> {
  const progress = options.onProgress ?? ((): void => undefined);
  // The benchmark may run on Dawn's null backend (CIFAR_WEBGPU_DAWN_BACKEND=null) to measure the CPU side.
  allowNullBackend();
  const probe = await probeWebGpu();
  const runsNothing = probe.ok && probe.adapter.runsNothing;
  if (probe.ok && probe.adapter.software && !options.allowSoftware) {
    throw new CifarError('BACKEND_UNAVAILABLE', `the WebGPU adapter is a software rasteriser (${probe.adapter.name}); its figures would mean nothing`, {
      hint: 'run on a GPU, or pass --allow-software for a smoke test',
    });
  }
  // Only what was asked changes; the rest stays as the environment set it (CIFAR_WEBGPU_*). Set
  // before the backend starts, so that the float16 GEMMs' start-up check (`runMatrixCheck`) and
  // the kernel check below check the variant measured.
  const asked = Object.entries(options.kernels ?? {}).filter(([, value]) => value !== undefined);
  configureWebGpuKernels({
    // A mode asked for here is not the environment's `auto`.
    ...(asked.some(([key]) => key === 'matmul') ? { matmulAuto: false } : {}),
    ...(Object.fromEntries(asked) as Partial<KernelVariant>),
    ...(options.stockForward === undefined ? {} : { ourForward: !options.stockForward }),
  });
  const backend = await initBackend('webgpu');
  if (options.submitBatch !== undefined) tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', options.submitBatch);
  // Nothing to check when no shader runs.
  const checkBatch = runsNothing ? 0 : (options.checkBatch ?? 8);
  let kernelCheck: ConvCheck[] = [];
  if (checkBatch > 0) {
    progress(`checking our conv-gradient kernels against tfjs' at batch ${checkBatch}`);
    kernelCheck = await checkConvKernels(options.model, checkBatch);
  }
  const matrixProbe = await probeMatrixLoads(progress);
  const { ourForward, ...variant } = webGpuKernelSettings();
  if (options.stockKernels) unregisterWebGpuKernels();
  else registerWebGpuKernels();
  const model = buildModel(options.model);
  const cutout = options.cutout ?? 0;
  // As cifar train does: where the input kernel runs, it crops and flips the batch too.
  const crops = normalizesOnDevice();
  const mix: SampleMix | undefined = options.mix ? { kind: 'cutmix', lambda: 0.75, box: { top: 8, bottom: 24, left: 8, right: 24 } } : undefined;
  const trainer = createTrainer(model, { momentum: 0.9, weightDecay: 5e-4, labelSmoothing: 0.1, mean: [0.49, 0.48, 0.45], std: [0.25, 0.24, 0.26], classes: 10, cutout, crops, ema: options.ema ?? 0, mix: mix !== undefined });
  /** One training step on a batch of randomBatch, with its cutout centres when cutout is on, its crops where cifar train would pass them, and the mix with --mix. */
  const trainOn = (b: ReturnType<typeof randomBatch>, batch: number) =>
    trainer.step({ images: b.images, labels: b.labels, size: batch, ...(cutout > 0 ? { cutout: b.centres } : {}), ...(crops ? { crops: b.crops } : {}), ...(mix ? { mix } : {}) }, 0.01);
  const result: GpuBenchResult = {
    startedAt: new Date().toISOString(),
    node: process.version,
    backend,
    adapter: probe.ok ? probe.adapter.name : 'unknown',
    software: probe.ok && probe.adapter.software,
    runsNothing,
    adapterFeatures: probe.ok ? probe.features : [],
    adapterLimits: probe.ok ? probe.limits : {},
    subgroupMatrixConfigs: probe.ok ? probe.subgroupMatrixConfigs : [],
    dawnToggles: probe.ok ? probe.dawnToggles : [],
    kernels: options.stockKernels ? 'stock' : 'cifar',
    ...(matmulFallback() === undefined ? {} : { matmulFallback: matmulFallback() }),
    ...(variant.matmul === 'tensor-cores' ? { matrixSyntax: matrixSyntax(), matrixSide: matrixHardwareSide() } : {}),
    ...(matrixCheck() === undefined ? {} : { matrixCheck: matrixCheck() }),
    ...(matrixProbe === undefined ? {} : { matrixProbe }),
    submitBatch: tf.env().getNumber('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE'),
    ...variant,
    forwardKernel: options.stockKernels || !ourForward ? 'stock' : 'cifar',
    model: options.model,
    parameters: countParams(model).trainable,
    parameterTensors: model.trainableWeights.length,
    sgdGroup: deviceSgdGroupSize(),
    cutout,
    ema: options.ema ?? 0,
    mix: options.mix === true,
    weightTensors: model.weights.length,
    iterations: options.iterations,
    rounds: options.rounds ?? 3,
    rows: [],
    topKernels: [],
    convKernels: [],
    kernelCheck,
    gpuErrors: [],
  };
  try {
    for (const batch of options.batches) {
      const data = randomBatch(batch, batch);
      const x = tf.randomNormal([batch, 32, 32, 3]) as tf.Tensor4D;
      const y = tf.tensor1d(data.labels, 'int32');
      const step = (): tf.Tensor => {
        const { lossSum, correct } = trainOn(data, batch);
        correct.dispose();
        return lossSum;
      };
      progress(`batch ${batch}: predict`);
      const rounds = options.rounds ?? 3;
      // As cifar serve and eval run inference: batch norms folded into the convolutions, the whole
      // batch in one pass (model.predict would cut it into passes of 32).
      const pass = inferencePass(model);
      const predict = await rate(batch, options.iterations, () => tf.tidy(() => pass.apply(x)), rounds);
      pass.dispose();
      progress(`batch ${batch}: forward (training mode) + loss`);
      const forward = await rate(batch, options.iterations, () =>
        tf.tidy(() => {
          // The loss as the trainer takes it (on webgpu: two dispatches of ours).
          const out = stepLoss(model.apply(x, { training: true }) as tf.Tensor2D, y as tf.Tensor1D, 10, 0.1);
          tf.dispose([out.lossSum, out.correct]);
          return out.loss;
        }),
        rounds,
      );
      progress(`batch ${batch}: training step`);
      const stepRate = await rate(batch, options.iterations, step, rounds);
      const wallStart = performance.now();
      let out: tf.Tensor | undefined;
      const timing = await tf.time(() => {
        out = step();
      });
      await out!.data();
      out!.dispose();
      const stepWallMs = performance.now() - wallStart;
      const stepCounts = await countBackendCalls(async () => {
        const t = step();
        await t.data();
        t.dispose();
      });
      const mem = tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU?: number };
      result.rows.push({
        batch,
        predict,
        forward,
        step: stepRate,
        stepKernelMs: typeof timing.kernelMs === 'number' && timing.kernelMs > 0 ? timing.kernelMs : null,
        stepWallMs,
        gpuBytesAllocated: mem.numBytesAllocatedInGPU ?? null,
        tensorBytes: mem.numBytes,
        stepCounts,
      });
      tf.dispose([x, y]);
    }
    if (options.profile !== false && !runsNothing && options.batches.length > 0) {
      const batch = Math.max(...options.batches);
      const data = randomBatch(batch, 1);
      progress(`batch ${batch}: per-kernel GPU time of one step`);
      const info = await tf.profile(async () => {
        const { lossSum, correct } = trainOn(data, batch);
        await lossSum.data();
        tf.dispose([lossSum, correct]);
      });
      const byKernel = new Map<string, { calls: number; ms: number }>();
      for (const k of info.kernels) {
        const e = byKernel.get(k.name) ?? { calls: 0, ms: 0 };
        e.calls++;
        e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
        byKernel.set(k.name, e);
      }
      result.topKernels = [...byKernel].map(([kernel, e]) => ({ kernel, ...e })).sort((a, b) => b.ms - a.ms).slice(0, 12);
      result.convKernels = convKernelTimes(info.kernels);
    }
  } finally {
    trainer.dispose();
    model.dispose();
  }
  result.gpuErrors = takeWebGpuErrors();
  result.bindGroups = bindGroupCacheStats((tf.backend() as unknown as { device?: unknown }).device);
  return result;
}

/** GPU time of one convolution kernel at one set of shapes, summed over its calls in a step. */
export interface ConvKernelTime {
  kernel: string;
  /** e.g. "x 256x32x32x64, filter 3x3x64x64 -> 256x32x32x64". */
  shapes: string;
  calls: number;
  ms: number;
  /** Multiply-adds counted twice, over the GPU time: the rate the kernel reached. */
  tflops: number | null;
}

const CONV_KERNELS = new Set(['Conv2D', 'FusedConv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter']);

/**
 * Floating-point operations of one convolution kernel call (2 per multiply-add), from the shapes
 * tf.profile records, or null for another kernel. All three kernels of a convolution do the
 * same work: output pixels x filter taps x input channels x output channels.
 * @example convFlops('Conv2D', [[256, 32, 32, 64], [3, 3, 64, 64]], [[256, 32, 32, 64]]) // 2 * 256*32*32*64 * 3*3*64
 */
export function convFlops(kernel: string, inputShapes: number[][], outputShapes: number[][]): number | null {
  const size = (shape: number[] | undefined): number => (shape ?? []).reduce((a, b) => a * b, 1);
  const [first, second] = inputShapes;
  const out = outputShapes[0];
  if (!first || !second || !out) return null;
  // The output times the first three sides of the second input: y [n, oh, ow, co] x filter
  // [fh, fw, ci, ·]; dW [fh, fw, ci, co] x dy [n, oh, ow, ·]; for dx, dy [n, oh, ow, co] x filter.
  const reduced = second[0]! * second[1]! * second[2]!;
  switch (kernel) {
    case 'Conv2D':
    case 'FusedConv2D':
    case 'Conv2DBackpropFilter':
      return 2 * size(out) * reduced;
    case 'Conv2DBackpropInput':
      return 2 * size(first) * reduced;
    default:
      return null;
  }
}

/** tf.profile's kernel records, reduced to the convolutions by kernel and shapes (slowest 24 first). */
export function convKernelTimes(kernels: Array<{ name: string; inputShapes: number[][]; outputShapes: number[][]; kernelTimeMs: unknown }>): ConvKernelTime[] {
  const groups = new Map<string, { kernel: string; shapes: string; calls: number; ms: number; flops: number }>();
  for (const k of kernels) {
    if (!CONV_KERNELS.has(k.name)) continue;
    const [a, b] = k.inputShapes;
    const shapes = `${(a ?? []).join('x')}, ${(b ?? []).join('x')} -> ${(k.outputShapes[0] ?? []).join('x')}`;
    const key = `${k.name} ${shapes}`;
    const g = groups.get(key) ?? { kernel: k.name, shapes, calls: 0, ms: 0, flops: 0 };
    g.calls++;
    g.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    g.flops += convFlops(k.name, k.inputShapes, k.outputShapes) ?? 0;
    groups.set(key, g);
  }
  return [...groups.values()]
    .sort((x, y) => y.ms - x.ms)
    .slice(0, 24)
    .map(({ flops, ...g }) => ({ ...g, tflops: g.ms > 0 ? flops / (g.ms / 1000) / 1e12 : null }));
}

/** A reference figure to compare with (PyTorch on the same GPU): training images/s at a batch size. */
export interface Reference {
  label: string;
  batch: number;
  trainImagesPerSecond: number;
  inferImagesPerSecond: number | null;
}

/**
 * Reads reference-pytorch.py's lines, e.g.
 * "torch fp32 batch=256: train 18261 img/s (epoch of 50k ~ 2.7 s), infer 60000 img/s, loss 2.3".
 */
export function parseTorchReference(output: string): Reference[] {
  const refs: Reference[] = [];
  for (const line of output.split('\n')) {
    const m = /^torch (\S+) batch=(\d+): train (\d+(?:\.\d+)?) img\/s/.exec(line);
    if (!m) continue;
    const infer = /infer (\d+(?:\.\d+)?) img\/s/.exec(line);
    refs.push({ label: `PyTorch ${m[1]}`, batch: Number(m[2]), trainImagesPerSecond: Number(m[3]), inferImagesPerSecond: infer ? Number(infer[1]) : null });
  }
  return refs;
}

/** Training step images/s over each reference's, at the reference's batch size when measured. */
export function ratiosToReference(result: GpuBenchResult, refs: Reference[]): Array<{ label: string; batch: number; ratio: number | null }> {
  return refs.map((r) => {
    const row = result.rows.find((x) => x.batch === r.batch);
    return { label: r.label, batch: r.batch, ratio: row ? row.step.imagesPerSecond / r.trainImagesPerSecond : null };
  });
}

const fmt = (n: number | null, digits = 0): string => (n === null ? '-' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));

/**
 * The worst relative error the kernel check accepts against tfjs' float32 kernels: 1e-4, or 2e-3
 * for float16 operands (whose rounding alone gives 3e-4 to 4e-4 on the check's random inputs).
 */
export function kernelCheckTolerance(matmul: MatmulMode): number {
  return matmul === 'f32' ? 1e-4 : 2e-3;
}

/** The result as a fixed-column table (one row per batch size), then the top kernels. */
export function formatGpuBench(r: GpuBenchResult, refs: Reference[] = []): string {
  const lines = [
    `${r.model} (${fmt(r.parameters)} params) on ${r.adapter}${r.software ? ' — SOFTWARE ADAPTER, not a GPU figure' : ''}${r.runsNothing ? " — DAWN'S NULL BACKEND: no shader ran, the figures are the CPU side of the work alone" : ''}; ${r.cutout > 0 ? `cutout ${r.cutout}; ` : ''}${r.ema ? `weight average ${r.ema}; ` : ''}${r.mix ? 'mixed batches (cutmix); ' : ''}${r.kernels} conv-gradient kernels${r.kernels === 'cifar' ? ` (${describeWebGpuKernels(r)})` : ''}, ${r.forwardKernel} forward conv${r.matmulFallback ? ` (${r.matmulFallback})` : ''}${r.dawnToggles.length > 0 ? `; Dawn toggles ${r.dawnToggles.join(', ')}` : ''}; the median of ${r.rounds} rounds of ${r.iterations} timed runs each; a queue submission every ${r.submitBatch} dispatches; ${r.bindGroups === null ? 'a new bind group per dispatch' : r.bindGroups === undefined ? '' : `bind groups reused (${fmt((100 * r.bindGroups.hits) / Math.max(1, r.bindGroups.hits + r.bindGroups.misses), 1)}% of ${fmt(r.bindGroups.hits + r.bindGroups.misses)})`}; dispatches/uploads/submits are per training step`,
    `${'batch'.padStart(6)} ${'predict img/s'.padStart(14)} ${'fwd+loss img/s'.padStart(15)} ${'step img/s'.padStart(11)} ${'step ms'.padStart(9)} ${'GPU ms/step'.padStart(12)} ${'wall ms/step'.padStart(13)} ${'GPU MiB'.padStart(9)} ${'dispatches'.padStart(11)} ${'uploads'.padStart(8)} ${'upload KiB'.padStart(11)} ${'submits'.padStart(8)}`,
  ];
  for (const x of r.rows) {
    lines.push(
      `${String(x.batch).padStart(6)} ${fmt(x.predict.imagesPerSecond).padStart(14)} ${fmt(x.forward.imagesPerSecond).padStart(15)} ${fmt(x.step.imagesPerSecond).padStart(11)} ${fmt(x.step.msPerBatch, 1).padStart(9)} ${fmt(x.stepKernelMs, 1).padStart(12)} ${fmt(x.stepWallMs, 1).padStart(13)} ${fmt(x.gpuBytesAllocated === null ? null : x.gpuBytesAllocated / 2 ** 20).padStart(9)} ${fmt(x.stepCounts?.dispatches ?? null).padStart(11)} ${fmt(x.stepCounts?.uploads ?? null).padStart(8)} ${fmt(x.stepCounts ? x.stepCounts.uploadBytes / 1024 : null).padStart(11)} ${fmt(x.stepCounts?.submits ?? null).padStart(8)}`,
    );
  }
  for (const q of ratiosToReference(r, refs)) {
    const ref = refs.find((x) => x.label === q.label && x.batch === q.batch)!;
    lines.push(`${q.label} batch ${q.batch}: ${fmt(ref.trainImagesPerSecond)} img/s training; ours/PyTorch = ${q.ratio === null ? 'not measured at this batch' : fmt(q.ratio, 3)}`);
  }
  if (r.kernelCheck.length > 0) {
    const worst = Math.max(...r.kernelCheck.flatMap((c) => [c.filterError, c.inputError, c.forwardError]));
    const tolerance = kernelCheckTolerance(r.matmul);
    lines.push(`conv kernels (forward, both gradients) vs tfjs' on this device: worst relative error ${worst.toExponential(1)} over ${r.kernelCheck.length} convolutions${worst > tolerance ? ` — MISMATCH (over ${tolerance.toExponential(0)}), see kernelCheck in the JSON` : ''}`);
  }
  if (r.gpuErrors.length > 0) lines.push(`THE GPU REPORTED ${r.gpuErrors.length} ERROR(S) — these figures are not valid; first: ${r.gpuErrors[0]!.split('\n')[0]}`);
  if (r.topKernels.length > 0) {
    lines.push('GPU time by kernel, one step at the largest batch:');
    for (const k of r.topKernels) lines.push(`  ${k.kernel.padEnd(28)} ${String(k.calls).padStart(5)} calls ${fmt(k.ms, 2).padStart(10)} ms`);
  }
  if (r.matrixCheck) {
    lines.push(`float16 GEMMs' start-up check against float32: ${(Object.entries(r.matrixCheck) as Array<[string, number]>).map(([k, e]) => `${k} ${e.toExponential(1)}`).join(', ')}${r.matmul === 'f32' ? ' — refused, float32 ran' : r.matmulScope === 'forward' ? ' — the forward convolutions only' : ''}`);
  }
  if (r.matrixProbe) {
    const p = r.matrixProbe;
    lines.push('error' in p ? `subgroup-matrix load probe did not run: ${p.error}` : `subgroup-matrix loads vs the specification: ${p.failed.length === 0 ? `all ${p.cases} cases right` : `${p.failed.length} of ${p.cases} cases wrong, e.g. ${p.failed.slice(0, 3).join('; ')}`}`);
  }
  if (r.convKernels.length > 0) {
    lines.push('convolutions of that step, slowest first (inputs -> output; TFLOP/s reached):');
    for (const k of r.convKernels.slice(0, 12)) lines.push(`  ${k.kernel.padEnd(21)} ${k.shapes.padEnd(44)} ${fmt(k.ms, 2).padStart(8)} ms ${fmt(k.tflops, 1).padStart(6)} TFLOP/s`);
  }
  return lines.join('\n') + '\n';
}
