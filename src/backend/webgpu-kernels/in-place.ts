/**
 * Dispatches of our own that write tensors in place on the webgpu backend (the SGD update, the
 * batch-norm moving averages). tfjs programs have a single, freshly allocated output, so these
 * record their dispatch into the backend's open compute pass themselves, with the bookkeeping
 * tfjs does for its programs: uniform buffer from its pool, deferred disposal, batched
 * submission, timestamp queries under `tf.time`/`tf.profile`.
 */
import * as tf from '@tensorflow/tfjs';
import type { Tensor } from '@tensorflow/tfjs';

// The subset of the WebGPU API and of tfjs-backend-webgpu's internals used here.
interface PipelineDescriptor {
  layout: 'auto';
  compute: { module: unknown; entryPoint: string };
}
interface Pipeline {
  getBindGroupLayout(i: number): unknown;
}
interface Pass {
  setPipeline(p: unknown): void;
  setBindGroup(i: number, g: unknown): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
}
interface Internals {
  device: {
    createShaderModule(d: { code: string }): unknown;
    createComputePipeline(d: PipelineDescriptor): Pipeline;
    createComputePipelineAsync(d: PipelineDescriptor): Promise<Pipeline>;
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

/**
 * Whether the webgpu backend only compiles the programs ops would run (`compileInParallel`),
 * recording none; false on other backends (where the flag is not even registered).
 */
export function compilingOnly(): boolean {
  return tf.getBackend() === 'webgpu' && tf.env().getBool('WEBGPU_ENGINE_COMPILE_ONLY');
}

/**
 * Whether the active backend is webgpu with the internals these dispatches rely on. While tfjs
 * only compiles (its compile-only mode: `compileInParallel`, the trainer's precompile), so do
 * they: a dispatch then starts compiling its program in the background and records nothing.
 */
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
  if (b.refCount(variable.dataId) <= 1) return;
  const copy = tf.tidy(() => tf.mul(variable, tf.scalar(1)));
  // While only compiling, the copy holds nothing computed: its program is compiled, the variable kept.
  if (compilingOnly()) copy.dispose();
  else variable.assign(copy);
}

/** A device's in-place programs by key: those compiled, and those still compiling in the background. */
interface Programs {
  ready: Map<string, Pipeline>;
  pending: Map<string, Promise<void>>;
}
const programs = new WeakMap<object, Programs>();

function programsOf(device: object): Programs {
  let p = programs.get(device);
  if (!p) programs.set(device, (p = { ready: new Map(), pending: new Map() }));
  return p;
}

/** The active backend's device's, where in-place dispatches run. */
function activePrograms(): Programs | undefined {
  return canUpdateInPlace() ? programsOf((tf.backend() as unknown as Internals).device) : undefined;
}

function pipelineDescriptor(b: Internals, d: InPlaceDispatch): PipelineDescriptor {
  return { layout: 'auto', compute: { module: b.device.createShaderModule({ code: d.code() }), entryPoint: 'main' } };
}

/** In-place programs compiled, or being compiled, on the active webgpu backend's device (0 elsewhere). */
export function inPlaceProgramCount(): number {
  const p = activePrograms();
  return p ? p.ready.size + p.pending.size : 0;
}

/**
 * Waits for the in-place programs that dispatches started compiling while tfjs only compiled;
 * rejects with the first compilation error (the program is then compiled again, and its error
 * reported, where it is first dispatched).
 */
export async function inPlaceCompilation(): Promise<void> {
  await Promise.all(activePrograms()?.pending.values() ?? []);
}

export interface InPlaceDispatch {
  /** Names the program among this device's in-place programs (its WGSL is made once per key). */
  key: string;
  code: () => string;
  /** Bound in this order, then the uniforms (tensors, or a backend's TensorInfos: only the data ids are used). */
  tensors: ReadonlyArray<Pick<Tensor, 'dataId'>>;
  /** Those of `tensors` the program writes: their CPU-side copies are dropped. */
  written: ReadonlyArray<Pick<Tensor, 'dataId'>>;
  uniforms: Array<{ type: 'float32' | 'uint32'; data: number[] }>;
  grid: [number, number, number];
  /** The name `tf.profile` reports. */
  name: string;
}

/**
 * Records one dispatch of an in-place program (check `canUpdateInPlace()` first). While tfjs only
 * compiles, starts compiling the program in the background instead (`inPlaceCompilation` waits
 * for it) and records nothing, so no tensor changes.
 */
export function dispatchInPlace(d: InPlaceDispatch): void {
  const b = tf.backend() as unknown as Internals;
  const { ready, pending } = programsOf(b.device);
  if (compilingOnly()) {
    if (!ready.has(d.key) && !pending.has(d.key)) {
      const compiled = b.device
        .createComputePipelineAsync(pipelineDescriptor(b, d))
        .then((pipeline) => void ready.set(d.key, pipeline))
        .finally(() => pending.delete(d.key));
      pending.set(d.key, compiled);
    }
    return;
  }
  let pipeline = ready.get(d.key);
  if (!pipeline) {
    pipeline = b.device.createComputePipeline(pipelineDescriptor(b, d));
    ready.set(d.key, pipeline);
  }
  for (const t of d.tensors) b.uploadToGPU(t.dataId);
  // A read (t.data()) leaves a copy of the values on the CPU, which later reads return without
  // looking at the GPU: drop it for the tensors written here, or they would read as they were
  // (a checkpoint taken at the end of epoch 1 would make every later one, and the saved model,
  // hold the epoch-1 weights).
  for (const t of d.written) b.tensorMap.get(t.dataId)!.values = null;
  const uniforms = b.makeUniforms(d.uniforms);
  const entries = d.tensors.map((t, i) => ({ binding: i, resource: { buffer: b.tensorMap.get(t.dataId)!.resource } as unknown }));
  entries.push({ binding: d.tensors.length, resource: uniforms });
  const bindGroup = b.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
  // Disposing any of these before the queue is submitted must wait for the submission.
  for (const t of d.tensors) b.commandQueueOwnedIds.add(t.dataId);

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
  pass.dispatchWorkgroups(...d.grid);
  b.dispatchCountInPass++;
  if (timed || tf.env().getNumber('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') <= b.dispatchCountInPass) {
    b.endComputePassEncoder();
    if (timed) b.activeTimers!.push({ name: d.name, query: b.getQueryTime() });
    else b.submitQueue();
  }
}
