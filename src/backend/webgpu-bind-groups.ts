/**
 * Reuse of bind groups across training steps.
 *
 * tfjs-backend-webgpu creates a bind group for every dispatch (and asks the pipeline for its
 * layout each time), about 420 a ResNet-18 step. A step allocates the same buffers from tfjs'
 * pool in the same order every time, so after the first step nearly every bind group it asks for
 * is one it asked for before: the same layout, the same buffers, the same ranges. Creating one is
 * the costliest native call of a dispatch (measured with Dawn's null backend, which runs no shader:
 * `bench:gpu --dawn-backend null`), and the training step on a fast GPU is bound by this CPU side.
 *
 * A bind group only refers to its buffers; what they hold is read when the dispatch runs, so one
 * made for the same buffers and ranges is the same bind group. A destroyed buffer is never bound
 * again (its bind groups stay unused, and the cache is bounded).
 */

import * as tf from '@tensorflow/tfjs';

interface BufferBinding {
  buffer: object;
  offset?: number;
  size?: number;
}
interface BindGroupDescriptor {
  layout: object;
  entries: Array<{ binding: number; resource: unknown }>;
  label?: string;
}
interface CachingDevice {
  createBindGroup(descriptor: BindGroupDescriptor): unknown;
  createComputePipeline(descriptor: unknown): { getBindGroupLayout(index: number): object };
  createComputePipelineAsync(descriptor: unknown): Promise<{ getBindGroupLayout(index: number): object }>;
}

/** Entries beyond which the cache starts again (a shape change or an evaluation adds many). */
const MAX_ENTRIES = 8192;

const ids = new WeakMap<object, number>();
let nextId = 1;
const idOf = (o: object): number => {
  let id = ids.get(o);
  if (id === undefined) ids.set(o, (id = nextId++));
  return id;
};

export interface BindGroupCacheStats {
  hits: number;
  misses: number;
  entries: number;
}

const caches = new WeakMap<object, { hits: number; misses: number; groups: Map<string, unknown> }>();

/**
 * The cache key of a bind group made of buffer bindings only, or undefined (a texture or
 * sampler binding is not cached).
 */
export function bindGroupKey(descriptor: BindGroupDescriptor): string | undefined {
  let key = `${idOf(descriptor.layout)}`;
  for (const entry of descriptor.entries) {
    const r = entry.resource as Partial<BufferBinding> | null;
    if (r === null || typeof r !== 'object' || typeof r.buffer !== 'object' || r.buffer === null) return undefined;
    key += `|${entry.binding}:${idOf(r.buffer)}@${r.offset ?? 0}+${r.size ?? '*'}`;
  }
  return key;
}

/**
 * Makes `device` return the bind group it made before for the same layout and buffer ranges,
 * and pipelines made from now on hand out one layout object per group index (tfjs asks for it
 * at every dispatch, and a new object would defeat the cache). Installing twice does nothing.
 * @example installBindGroupCache((tf.backend() as unknown as { device: GPUDevice }).device);
 */
export function installBindGroupCache(device: unknown): void {
  if (device === null || typeof device !== 'object' || caches.has(device)) return;
  const d = device as CachingDevice;
  if (typeof d.createBindGroup !== 'function' || typeof d.createComputePipeline !== 'function') return;
  const counts = { hits: 0, misses: 0, groups: new Map<string, unknown>() };
  caches.set(device, counts);
  const cache = counts.groups;
  const create = d.createBindGroup.bind(d);
  d.createBindGroup = (descriptor) => {
    const key = bindGroupKey(descriptor);
    if (key === undefined) return create(descriptor);
    let group = cache.get(key);
    if (group !== undefined) {
      counts.hits++;
      return group;
    }
    counts.misses++;
    if (cache.size >= MAX_ENTRIES) cache.clear();
    group = create(descriptor);
    cache.set(key, group);
    return group;
  };
  const stableLayouts = <P extends { getBindGroupLayout(index: number): object }>(pipeline: P): P => {
    const get = pipeline.getBindGroupLayout.bind(pipeline);
    const layouts = new Map<number, object>();
    pipeline.getBindGroupLayout = (index: number) => {
      let layout = layouts.get(index);
      if (layout === undefined) layouts.set(index, (layout = get(index)));
      return layout;
    };
    return pipeline;
  };
  const createPipeline = d.createComputePipeline.bind(d);
  d.createComputePipeline = (descriptor) => stableLayouts(createPipeline(descriptor));
  if (typeof d.createComputePipelineAsync === 'function') {
    const createPipelineAsync = d.createComputePipelineAsync.bind(d);
    d.createComputePipelineAsync = async (descriptor) => stableLayouts(await createPipelineAsync(descriptor));
  }
}

/** Hits and misses of the cache on `device` so far, or null when none is installed. */
export function bindGroupCacheStats(device: unknown): BindGroupCacheStats | null {
  const c = device !== null && typeof device === 'object' ? caches.get(device) : undefined;
  return c ? { hits: c.hits, misses: c.misses, entries: c.groups.size } : null;
}

interface Submitting {
  commandEncoder: unknown;
  endComputePassEncoder(): void;
  submitQueue(): void;
  bufferManager: PoolManager;
}
interface PoolBuffer {
  size: number;
  usage: number;
}
interface PoolManager {
  freeBuffers: Map<string, PoolBuffer[]>;
  acquireBuffer(size: number, usage: number, mappedAtCreation?: boolean, reuse?: boolean): PoolBuffer;
}

/** Acquisitions per step remembered (a ResNet-18 step makes about 900). */
const MAX_REMEMBERED = 16384;

interface StepAllocator {
  /** The position in the step's sequence of acquisitions. */
  index: number;
  /** The buffer each position got in the last step. */
  last: PoolBuffer[];
}
const allocators = new WeakMap<object, StepAllocator>();

/**
 * Makes tfjs' buffer pool hand each acquisition of a step the buffer that the same acquisition
 * got in the previous step, when that buffer is free again (else what the pool would have
 * given). The pool is last-in first-out per size, so a step's buffers otherwise come back in
 * another order every step, and so would every bind group. Any free buffer of the size asked
 * for is as good as another to tfjs: only the choice among them changes.
 */
function installStepAllocator(manager: PoolManager): StepAllocator {
  const allocator: StepAllocator = { index: 0, last: [] };
  const acquire = manager.acquireBuffer.bind(manager);
  manager.acquireBuffer = (size, usage, mappedAtCreation = false, reuse = true) => {
    const position = allocator.index++;
    if (position >= MAX_REMEMBERED || !reuse) return acquire(size, usage, mappedAtCreation, reuse);
    const wanted = allocator.last[position];
    if (wanted !== undefined && wanted.size === size && wanted.usage === usage) {
      // The pool's key for a size and usage (tfjs' getBufferKey); it pops from the end.
      const free = manager.freeBuffers.get(`${size}_${usage}`);
      const at = free ? free.lastIndexOf(wanted) : -1;
      if (free && at >= 0 && at !== free.length - 1) {
        free.splice(at, 1);
        free.push(wanted);
      }
    }
    const buffer = acquire(size, usage, mappedAtCreation, reuse);
    allocator.last[position] = buffer;
    return buffer;
  };
  return allocator;
}

/**
 * On webgpu, marks the start of a training step: what is recorded so far is submitted, so the
 * step starts a submission of its own (tfjs submits every 15 dispatches and then recycles that
 * submission's uniform buffers; a step is not a multiple of 15 dispatches, so each would start
 * at another point of that cycle), and the buffer pool starts the step's sequence again (see
 * `installStepAllocator`). Together they make a step ask for the bind groups of the last one,
 * which the cache then returns. Elsewhere it does nothing.
 */
export function beginStep(): void {
  if (tf.getBackend() !== 'webgpu') return;
  const b = tf.backend() as unknown as Partial<Submitting>;
  if (b.commandEncoder != null && typeof b.endComputePassEncoder === 'function' && typeof b.submitQueue === 'function') {
    b.endComputePassEncoder();
    b.submitQueue();
  }
  const allocator = allocators.get(b);
  if (allocator) allocator.index = 0;
}

/**
 * Installs the bind-group cache on the active webgpu backend's device and the step allocator on
 * its buffer pool (see `installBindGroupCache` and `beginStep`). Installing twice does nothing.
 */
export function installStepReuse(): void {
  if (tf.getBackend() !== 'webgpu') return;
  const b = tf.backend() as unknown as Partial<Submitting> & { device?: unknown };
  installBindGroupCache(b.device);
  const manager = b.bufferManager;
  if (allocators.has(b) || !manager || typeof manager.acquireBuffer !== 'function' || !(manager.freeBuffers instanceof Map)) return;
  allocators.set(b, installStepAllocator(manager));
}
