/**
 * The SGD update (Nesterov momentum, coupled weight decay) in WebGPU dispatches that write the
 * weights and the velocity in place, several tensors a dispatch (`sgdGroupSize`: two with
 * WebGPU's default limit of 8 storage buffers a stage, up to 8 with the 24 our devices ask for
 * where the adapter offers them).
 *
 * Written with tfjs ops, the update is seven dispatches and four scalar uploads per tensor
 * (62 tensors in ResNet-18: ~430 dispatches and ~250 uploads a step, each upload making a
 * staging buffer and ending the compute pass). On a GPU the step is bound by that CPU-side
 * traffic, not by kernel time. The dispatches are recorded by `dispatchInPlace` (in-place.ts).
 * The exponential moving average of the weights (`cifar train --ema`) is done the same way,
 * several tensors a dispatch (`averageAllInPlace`).
 */
import * as tf from '@tensorflow/tfjs';
import type { Tensor } from '@tensorflow/tfjs';
import { dispatchInPlace } from './in-place.js';
import { FLAT_THREADS, MAX_GROUPS_X, flatDispatch } from './program.js';

export { canUpdateInPlace, compilingOnly, ensureOwnStorage } from './in-place.js';

export interface SgdHyper {
  lr: number;
  momentum: number;
  /** Weight decay added to the gradient (0 for batch-norm scales and biases). */
  weightDecay: number;
}

/**
 * The update of `k` tensors in one dispatch: tensor j's bindings are 3j (w), 3j + 1 (v), 3j + 2
 * (g); the uniforms hold lr, momentum, then each tensor's decay and size. The invocations run
 * over the tensors' elements back to back.
 */
export function sgdShader(k: number): string {
  return groupShader(k, [['w', 'read_write'], ['v', 'read_write'], ['g', 'read']], ['lr : f32', 'momentum : f32'], ['decay : f32'], (j) => `let wi = w${j}[i];
    let gi = g${j}[i] + h.decay${j} * wi;
    let vi = h.momentum * v${j}[i] + gi;
    v${j}[i] = vi;
    w${j}[i] = wi - h.lr * (gi + h.momentum * vi);`);
}

/**
 * A program over `k` tensors' elements back to back, one invocation an element: tensor j binds
 * the `arrays` (each name followed by j) from binding `arrays.length · j`; the uniforms `h` hold
 * the `shared` fields, then each `perTensor` field for every tensor (name followed by j), then
 * each tensor's size (`size` j). `update(j)` updates element i of tensor j.
 */
function groupShader(k: number, arrays: ReadonlyArray<[string, 'read' | 'read_write']>, shared: readonly string[], perTensor: readonly string[], update: (j: number) => string): string {
  const each = (f: (j: number) => string) => Array.from({ length: k }, (_, j) => f(j));
  const fields = [...shared, ...perTensor.flatMap((field) => each((j) => field.replace(' :', `${j} :`))), ...each((j) => `size${j} : u32`)];
  const bindings = each((j) => arrays.map(([name, access], a) => `@group(0) @binding(${arrays.length * j + a}) var<storage, ${access}> ${name}${j} : array<f32>;`).join('\n')).join('\n');
  const updates = each((j) => `  if (i < h.size${j}) {
    ${update(j)}
    return;
  }
  i = i - h.size${j};`).join('\n');
  return `
struct Hyper { ${fields.join(', ')} };
${bindings}
@group(0) @binding(${arrays.length * k}) var<uniform> h : Hyper;

@compute @workgroup_size(${FLAT_THREADS})
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  var i = gid.x + gid.y * ${MAX_GROUPS_X * FLAT_THREADS}u;
${updates}
}`;
}

/** One tensor's update: its weights, velocity and gradient, and its weight decay (0 for batch-norm scales and biases). */
export interface SgdItem {
  weights: Tensor;
  velocity: Tensor;
  grad: Tensor;
  weightDecay: number;
}

/** Tensors updated per dispatch: three storage buffers each, within the device's limit, at most 8. */
export function sgdGroupSize(maxStorageBuffersPerShaderStage = 8): number {
  return groupSize(3, maxStorageBuffersPerShaderStage);
}

/** Tensors averaged per dispatch: two storage buffers each, within the device's limit, at most 8. */
export function averageGroupSize(maxStorageBuffersPerShaderStage = 8): number {
  return groupSize(2, maxStorageBuffersPerShaderStage);
}

function groupSize(buffersPerTensor: number, maxStorageBuffersPerShaderStage: number): number {
  return Math.max(1, Math.min(8, Math.floor(maxStorageBuffersPerShaderStage / buffersPerTensor)));
}

/** The active backend's device's storage-buffer limit a stage (WebGPU's default, 8, without one). */
function deviceStorageBuffers(): number | undefined {
  return (tf.backend() as unknown as { device?: { limits?: { maxStorageBuffersPerShaderStage?: number } } }).device?.limits?.maxStorageBuffersPerShaderStage;
}

/** `sgdGroupSize` for the storage-buffer limit of the active backend's device (8 without one). */
export function deviceSgdGroupSize(): number {
  return sgdGroupSize(deviceStorageBuffers());
}

/**
 * v ← μ·v + (g + λ·w); w ← w − lr·(g + λ·w + μ·v), in place on the webgpu backend: each item's
 * `weights` and `velocity` keep their data ids, so they must not share storage with other tensors
 * (tf.variable's own storage, as the trainer's are; `ensureOwnStorage`). Check `canUpdateInPlace()` first.
 * `sgdGroupSize()` tensors per dispatch for the device's
 * storage-buffer limit (8 a stage, WebGPU's default: ResNet-18's 62 tensors in 31 dispatches;
 * 16, lavapipe's: 5 a dispatch, 13 dispatches), each with its own weight decay.
 */
export function sgdUpdateAllInPlace(items: readonly SgdItem[], hyper: Pick<SgdHyper, 'lr' | 'momentum'>): void {
  for (const { weights, velocity, grad } of items) {
    const n = weights.size;
    if (velocity.size !== n || grad.size !== n) throw new Error(`sgd update: sizes differ (${n}, ${velocity.size}, ${grad.size})`);
  }
  const k = deviceSgdGroupSize();
  const nonEmpty = items.filter((item) => item.weights.size > 0);
  for (let at = 0; at < nonEmpty.length; at += k) dispatchGroup(nonEmpty.slice(at, at + k), hyper);
}

/** One dispatch updating `live` (non-empty, of checked sizes). */
function dispatchGroup(live: readonly SgdItem[], hyper: Pick<SgdHyper, 'lr' | 'momentum'>): void {
  const k = live.length;
  dispatchInPlace({
    key: `sgd${k}`,
    code: () => sgdShader(k),
    tensors: live.flatMap((item) => [item.weights, item.velocity, item.grad]),
    written: live.flatMap((item) => [item.weights, item.velocity]),
    uniforms: [
      { type: 'float32', data: [hyper.lr] },
      { type: 'float32', data: [hyper.momentum] },
      ...live.map((item) => ({ type: 'float32' as const, data: [item.weightDecay] })),
      ...live.map((item) => ({ type: 'uint32' as const, data: [item.weights.size] })),
    ],
    grid: flatDispatch(live.reduce((total, item) => total + item.weights.size, 0)),
    name: 'SgdUpdate',
  });
}

/**
 * The weight average of `k` tensors in one dispatch: tensor j's bindings are 2j (the average,
 * written) and 2j + 1 (the live value); the uniforms hold the decay, then each tensor's size.
 */
export function averageShader(k: number): string {
  return groupShader(k, [['a', 'read_write'], ['x', 'read']], ['decay : f32'], [], (j) => `a${j}[i] = h.decay * a${j}[i] + (1.0 - h.decay) * x${j}[i];`);
}

/** One tensor's average and the value it follows. */
export interface AverageItem {
  average: Tensor;
  value: Tensor;
}

/**
 * a ← d·a + (1 − d)·x for each item, in place on the webgpu backend (the exponential moving
 * average of the weights): each `average` keeps its data id, so it must have storage of its own
 * (`ensureOwnStorage`). `averageGroupSize()` tensors a dispatch for the device's storage-buffer
 * limit. Check `canUpdateInPlace()` first.
 */
export function averageAllInPlace(items: readonly AverageItem[], decay: number): void {
  for (const { average, value } of items) {
    if (average.size !== value.size) throw new Error(`weight average: sizes differ (${average.size}, ${value.size})`);
  }
  const k = averageGroupSize(deviceStorageBuffers());
  const nonEmpty = items.filter((item) => item.average.size > 0);
  for (let at = 0; at < nonEmpty.length; at += k) {
    const live = nonEmpty.slice(at, at + k);
    dispatchInPlace({
      key: `average${live.length}`,
      code: () => averageShader(live.length),
      tensors: live.flatMap((item) => [item.average, item.value]),
      written: live.map((item) => item.average),
      uniforms: [{ type: 'float32', data: [decay] }, ...live.map((item) => ({ type: 'uint32' as const, data: [item.average.size] }))],
      grid: flatDispatch(live.reduce((total, item) => total + item.average.size, 0)),
      name: 'WeightAverage',
    });
  }
}
