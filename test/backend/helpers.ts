import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, expect } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { compileInParallel } from '../../src/backend/webgpu-kernels/compile.js';
import { buildModel } from '../../src/model/resnet.js';

/** Deterministic uniform(-1, 1) values (mulberry32), so failures reproduce. */
export function randomArray(size: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/** Runs `f` in a tidy and reads its tensors back (WebGPU in Node has no dataSync). */
export async function read(f: () => tf.Tensor[]): Promise<Float32Array[]> {
  const ts = tf.tidy(f);
  const out = await Promise.all(ts.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose(ts);
  return out;
}

/** Runs `f` on the given backend and returns its result as a plain array. */
export async function onBackend(name: string, f: () => tf.Tensor): Promise<Float32Array> {
  await tf.setBackend(name);
  const t = tf.tidy(f);
  const data = (await t.data()) as Float32Array;
  t.dispose();
  return data;
}

/** Asserts max|actual - expected| <= tol * max|expected| (relative to the tensor's scale). */
export function expectClose(actual: Float32Array, expected: Float32Array, tol = 1e-4, label = ''): void {
  expect(actual.length, `${label} length`).toBe(expected.length);
  let maxErr = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    maxErr = Math.max(maxErr, Math.abs((actual[i] ?? NaN) - (expected[i] ?? NaN)));
    scale = Math.max(scale, Math.abs(expected[i] ?? 0));
  }
  expect(Number.isFinite(maxErr), `${label} finite`).toBe(true);
  expect(maxErr, `${label} max error ${maxErr} vs scale ${scale}`).toBeLessThanOrEqual(tol * Math.max(scale, 1e-12));
}

/**
 * A small ResNet's training-mode loss and gradients on the cpu backend and on webgpu, from the
 * same initial weights and images: [loss, ...gradients] for each.
 */
export async function resnetGradsOnBoth(baseWidth: number, batch: number, labels: number[]): Promise<{ cpu: Float32Array[]; gpu: Float32Array[] }> {
  const xs = randomArray(batch * 32 * 32 * 3, 21);
  const results: Record<string, Float32Array[]> = {};
  let weights: tf.Tensor[] | undefined;
  for (const backend of ['cpu', 'webgpu']) {
    await tf.setBackend(backend);
    const model = buildModel({ baseWidth, blocks: [1, 1, 1, 1] }, { seed: 0 });
    if (weights) model.setWeights(weights);
    else weights = model.getWeights().map((w) => tf.keep(w.clone()));
    // On webgpu, its programs compiled first, in parallel and awaited (as the trainer does): made
    // as they come, after work was submitted, each waits for lavapipe to compile that work, and
    // vitest's worker, blocked meanwhile, fails the run past 60 s ('Timeout calling "onTaskUpdate"').
    await compileInParallel(() => { resnetLossAndGrads(model, xs, labels); });
    results[backend] = await read(() => resnetLossAndGrads(model, xs, labels));
    model.dispose();
  }
  tf.dispose(weights);
  return { cpu: results['cpu']!, gpu: results['webgpu']! };
}

/** A model's training-mode softmax cross-entropy on 32 x 32 images `xs` and `labels`, and the gradients of its trainable weights: [loss, ...gradients]. */
export function resnetLossAndGrads(model: tf.LayersModel, xs: Float32Array, labels: number[]): tf.Tensor[] {
  const x = tf.tensor4d(xs, [labels.length, 32, 32, 3]);
  const y = tf.oneHot(tf.tensor1d(labels, 'int32'), 10);
  const loss = (): tf.Scalar => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor);
  const { value, grads } = tf.variableGrads(loss, model.trainableWeights.map((w) => w.read() as tf.Variable));
  return [value, ...Object.values(grads)];
}

/** cos(angle) between two gradients. */
export function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

/** In a describe block: its tests run on the webgpu backend, and cpu is active again after them. */
export function useWebGpuInSuite(): void {
  beforeAll(async () => {
    expect((await initBackend('webgpu')).name).toBe('webgpu');
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });
}
