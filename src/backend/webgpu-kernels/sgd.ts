/**
 * The SGD update (Nesterov momentum, coupled weight decay) in WebGPU dispatches that write the
 * weights and the velocity in place, several tensors a dispatch (`sgdGroupSize`: two with
 * WebGPU's default limit of 8 storage buffers a stage).
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

/**
 * The update of `k` tensors in one dispatch: tensor j's bindings are 3j (w), 3j + 1 (v), 3j + 2
 * (g); the uniforms hold lr, momentum, then each tensor's decay and size. The invocations run
 * over the tensors' elements back to back.
 */
export function sgdShader(k: number): string {
  const fields = ['lr : f32', 'momentum : f32', ...Array.from({ length: k }, (_, j) => `decay${j} : f32`), ...Array.from({ length: k }, (_, j) => `size${j} : u32`)];
  const bindings = Array.from({ length: k }, (_, j) => `@group(0) @binding(${3 * j}) var<storage, read_write> w${j} : array<f32>;
@group(0) @binding(${3 * j + 1}) var<storage, read_write> v${j} : array<f32>;
@group(0) @binding(${3 * j + 2}) var<storage, read> g${j} : array<f32>;`).join('\n');
  const updates = Array.from({ length: k }, (_, j) => `  if (i < h.size${j}) {
    let wi = w${j}[i];
    let gi = g${j}[i] + h.decay${j} * wi;
    let vi = h.momentum * v${j}[i] + gi;
    v${j}[i] = vi;
    w${j}[i] = wi - h.lr * (gi + h.momentum * vi);
    return;
  }
  i = i - h.size${j};`).join('\n');
  return `
struct Hyper { ${fields.join(', ')} };
${bindings}
@group(0) @binding(${3 * k}) var<uniform> h : Hyper;

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  var i = gid.x + gid.y * ${MAX_GROUPS_X * WORKGROUP}u;
${updates}
}`;
}

const pipelines = new WeakMap<object, Map<number, ReturnType<Internals['device']['createComputePipeline']>>>();

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

/** One tensor's update: its weights, velocity and gradient, and its weight decay (0 for batch-norm scales and biases). */
export interface SgdItem {
  weights: Tensor;
  velocity: Tensor;
  grad: Tensor;
  weightDecay: number;
}

/** Tensors updated per dispatch: three storage buffers each, within the device's limit, at most 4. */
export function sgdGroupSize(maxStorageBuffersPerShaderStage = 8): number {
  return Math.max(1, Math.min(4, Math.floor(maxStorageBuffersPerShaderStage / 3)));
}

/**
 * v ← μ·v + (g + λ·w); w ← w − lr·(g + λ·w + μ·v), in place on the webgpu backend: `weights`
 * and `velocity` keep their data ids, so they must not share storage with other tensors
 * (tf.variable's own storage, as the trainer's are). Check `canUpdateInPlace()` first.
 */
export function sgdUpdateInPlace(weights: Tensor, velocity: Tensor, grad: Tensor, hyper: SgdHyper): void {
  sgdUpdateGroupInPlace([{ weights, velocity, grad, weightDecay: hyper.weightDecay }], hyper);
}

/**
 * The same update for many tensors, `sgdGroupSize()` of them per dispatch (2 with WebGPU's
 * default of 8 storage buffers per stage: ResNet-18's 62 tensors in 31 dispatches), each with
 * its own weight decay.
 */
export function sgdUpdateAllInPlace(items: readonly SgdItem[], hyper: Pick<SgdHyper, 'lr' | 'momentum'>): void {
  const b = tf.backend() as unknown as Internals;
  const limit = (b.device as unknown as { limits?: { maxStorageBuffersPerShaderStage?: number } }).limits?.maxStorageBuffersPerShaderStage;
  const k = sgdGroupSize(limit);
  const nonEmpty = items.filter((item) => item.weights.size > 0);
  for (let at = 0; at < nonEmpty.length; at += k) sgdUpdateGroupInPlace(nonEmpty.slice(at, at + k), hyper);
}

function sgdUpdateGroupInPlace(items: readonly SgdItem[], hyper: Pick<SgdHyper, 'lr' | 'momentum'>): void {
  const b = tf.backend() as unknown as Internals;
  for (const { weights, velocity, grad } of items) {
    const n = weights.size;
    if (velocity.size !== n || grad.size !== n) throw new Error(`sgd update: sizes differ (${n}, ${velocity.size}, ${grad.size})`);
  }
  const live = items.filter((item) => item.weights.size > 0);
  if (live.length === 0) return;
  const k = live.length;
  let byCount = pipelines.get(b.device);
  if (!byCount) pipelines.set(b.device, (byCount = new Map()));
  let pipeline = byCount.get(k);
  if (!pipeline) {
    pipeline = b.device.createComputePipeline({ layout: 'auto', compute: { module: b.device.createShaderModule({ code: sgdShader(k) }), entryPoint: 'main' } });
    byCount.set(k, pipeline);
  }
  const tensors = live.flatMap((item) => [item.weights, item.velocity, item.grad]);
  for (const t of tensors) b.uploadToGPU(t.dataId);
  // A read (t.data()) leaves a copy of the values on the CPU, which later reads return without
  // looking at the GPU: drop it for the tensors written here, or they would read as they were
  // (a checkpoint taken at the end of epoch 1 would make every later one, and the saved model,
  // hold the epoch-1 weights).
  for (const item of live) for (const t of [item.weights, item.velocity]) b.tensorMap.get(t.dataId)!.values = null;
  const uniforms = b.makeUniforms([
    { type: 'float32', data: [hyper.lr] },
    { type: 'float32', data: [hyper.momentum] },
    ...live.map((item) => ({ type: 'float32' as const, data: [item.weightDecay] })),
    ...live.map((item) => ({ type: 'uint32' as const, data: [item.weights.size] })),
  ]);
  const n = live.reduce((total, item) => total + item.weights.size, 0);
  const entries = tensors.map((t, i) => ({ binding: i, resource: { buffer: b.tensorMap.get(t.dataId)!.resource } as unknown }));
  entries.push({ binding: 3 * k, resource: uniforms });
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
