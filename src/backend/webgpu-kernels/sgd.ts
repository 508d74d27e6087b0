/**
 * The SGD update (Nesterov momentum, coupled weight decay) as one WebGPU dispatch per parameter
 * tensor, writing the weights and the velocity in place.
 *
 * Written with tfjs ops, the update is seven dispatches and four scalar uploads per tensor
 * (62 tensors in ResNet-18: ~430 dispatches and ~250 uploads a step, each upload making a
 * staging buffer and ending the compute pass). On a GPU the step is bound by that CPU-side
 * traffic, not by kernel time. tfjs programs have a single, freshly allocated output, so this
 * records its own dispatch into the backend's open compute pass, with the same bookkeeping
 * tfjs does for its programs (uniform buffer from its pool, deferred disposal, batched
 * submission, timestamp queries under `tf.time`/`tf.profile`).
 */
import * as tf from '@tensorflow/tfjs';
import type { Tensor } from '@tensorflow/tfjs';

export interface SgdHyper {
  lr: number;
  momentum: number;
  /** Weight decay added to the gradient (0 for batch-norm scales and biases). */
  weightDecay: number;
}

// The subset of the WebGPU API and of tfjs-backend-webgpu's internals used here.
interface Pass {
  setPipeline(p: unknown): void;
  setBindGroup(i: number, g: unknown): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
}
interface Internals {
  device: {
    createShaderModule(d: { code: string }): unknown;
    createComputePipeline(d: { layout: 'auto'; compute: { module: unknown; entryPoint: string } }): { getBindGroupLayout(i: number): unknown };
    createBindGroup(d: { layout: unknown; entries: Array<{ binding: number; resource: unknown }> }): unknown;
  };
  tensorMap: { get(id: object): { resource?: unknown; values?: unknown } | undefined };
  commandEncoder: { beginComputePass(d: object): Pass } | null;
  computePassEncoder: Pass | null;
  commandQueueOwnedIds: WeakSet<object>;
  dispatchCountInPass: number;
  activeTimers: Array<{ name: string; query: Promise<number> }> | null;
  supportTimestampQuery: boolean;
  querySet: unknown;
  querySetCount: number;
  uploadToGPU(dataId: object): void;
  makeUniforms(u: Array<{ type: 'float32' | 'uint32'; data: number[] }>): { offset: number; size: number; buffer: unknown };
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  getQueryTime(): Promise<number>;
  refCount(dataId: object): number;
}

const WORKGROUP = 256;
const MAX_GROUPS_X = 65535;

const SHADER = `
struct Hyper { lr : f32, momentum : f32, decay : f32, size : u32 };
@group(0) @binding(0) var<storage, read_write> w : array<f32>;
@group(0) @binding(1) var<storage, read_write> v : array<f32>;
@group(0) @binding(2) var<storage, read> g : array<f32>;
@group(0) @binding(3) var<uniform> h : Hyper;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = gid.x + gid.y * ${MAX_GROUPS_X * WORKGROUP}u;
  if (i >= h.size) { return; }
  let wi = w[i];
  let gi = g[i] + h.decay * wi;
  let vi = h.momentum * v[i] + gi;
  v[i] = vi;
  w[i] = wi - h.lr * (gi + h.momentum * vi);
}`;

const pipelines = new WeakMap<object, ReturnType<Internals['device']['createComputePipeline']>>();

/** Whether the active backend is webgpu with the internals this update relies on. */
export function canUpdateInPlace(): boolean {
  if (tf.getBackend() !== 'webgpu') return false;
  const b = tf.backend() as unknown as Partial<Internals>;
  return (
    typeof b.makeUniforms === 'function' &&
    typeof b.ensureCommandEncoderReady === 'function' &&
    typeof b.submitQueue === 'function' &&
    typeof b.uploadToGPU === 'function' &&
    b.tensorMap !== undefined &&
    b.commandQueueOwnedIds !== undefined
  );
}

/**
 * Gives a variable storage of its own if it shares it with another tensor (tf.variable(t) and
 * assign(t) keep t's data id), so that updating it in place changes nothing else.
 */
export function ensureOwnStorage(variable: tf.Variable): void {
  const b = tf.backend() as unknown as Internals;
  if (b.refCount(variable.dataId) > 1) variable.assign(tf.tidy(() => tf.mul(variable, tf.scalar(1))));
}

/** Workgroup grid for n elements: x up to 65,535 groups, then rows of y. */
export function sgdDispatch(n: number): [number, number, number] {
  const groups = Math.ceil(n / WORKGROUP);
  return [Math.min(groups, MAX_GROUPS_X), Math.ceil(groups / MAX_GROUPS_X), 1];
}

/**
 * v ← μ·v + (g + λ·w); w ← w − lr·(g + λ·w + μ·v), in place on the webgpu backend: `weights`
 * and `velocity` keep their data ids, so they must not share storage with other tensors
 * (tf.variable's own storage, as the trainer's are). Check `canUpdateInPlace()` first.
 */
export function sgdUpdateInPlace(weights: Tensor, velocity: Tensor, grad: Tensor, hyper: SgdHyper): void {
  const b = tf.backend() as unknown as Internals;
  const n = weights.size;
  if (velocity.size !== n || grad.size !== n) throw new Error(`sgd update: sizes differ (${n}, ${velocity.size}, ${grad.size})`);
  if (n === 0) return;
  let pipeline = pipelines.get(b.device);
  if (!pipeline) {
    pipeline = b.device.createComputePipeline({ layout: 'auto', compute: { module: b.device.createShaderModule({ code: SHADER }), entryPoint: 'main' } });
    pipelines.set(b.device, pipeline);
  }
  const tensors = [weights, velocity, grad];
  for (const t of tensors) b.uploadToGPU(t.dataId);
  // A read (t.data()) leaves a copy of the values on the CPU, which later reads return without
  // looking at the GPU: drop it for the tensors written here, or they would read as they were
  // (a checkpoint taken at the end of epoch 1 would make every later one, and the saved model,
  // hold the epoch-1 weights).
  for (const t of [weights, velocity]) b.tensorMap.get(t.dataId)!.values = null;
  const uniforms = b.makeUniforms([
    { type: 'float32', data: [hyper.lr] },
    { type: 'float32', data: [hyper.momentum] },
    { type: 'float32', data: [hyper.weightDecay] },
    { type: 'uint32', data: [n] },
  ]);
  const entries = tensors.map((t, i) => ({ binding: i, resource: { buffer: b.tensorMap.get(t.dataId)!.resource } }));
  entries.push({ binding: 3, resource: uniforms });
  const bindGroup = b.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
  // Disposing any of these before the queue is submitted must wait for the submission.
  for (const t of tensors) b.commandQueueOwnedIds.add(t.dataId);

  b.ensureCommandEncoderReady();
  const timed = b.activeTimers != null;
  if (timed && b.supportTimestampQuery) {
    // As tfjs does for its own programs under tf.time/tf.profile: a pass of its own, timed.
    b.endComputePassEncoder();
    if (b.querySet == null) b.querySet = (b.device as unknown as { createQuerySet(d: object): unknown }).createQuerySet({ type: 'timestamp', count: b.querySetCount });
    b.computePassEncoder = b.commandEncoder!.beginComputePass({ timestampWrites: { querySet: b.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
  } else if (!b.computePassEncoder) {
    b.computePassEncoder = b.commandEncoder!.beginComputePass({});
  }
  const pass = b.computePassEncoder!;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(...sgdDispatch(n));
  b.dispatchCountInPass++;
  if (timed || tf.env().getNumber('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') <= b.dispatchCountInPass) {
    b.endComputePassEncoder();
    if (timed) b.activeTimers!.push({ name: 'SgdUpdate', query: b.getQueryTime() });
    else b.submitQueue();
  }
}
