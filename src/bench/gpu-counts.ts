/**
 * Counts what one piece of work asks of the WebGPU backend: compute dispatches (one bind group
 * each), uploads of CPU-side values (each makes a staging buffer and ends the compute pass),
 * GPU buffers created, and queue submissions. On a fast GPU the training step is bound by this
 * CPU-side traffic rather than by kernel time, so these counts are what the step's CPU cost
 * scales with, and they are the same on lavapipe as on a GPU.
 */
import * as tf from '@tensorflow/tfjs';

export interface BackendCounts {
  dispatches: number;
  uploads: number;
  /** Bytes of those uploads (the CPU-side values copied to staging buffers). */
  uploadBytes: number;
  buffersCreated: number;
  submits: number;
}

interface Countable {
  device: { createBindGroup: (...a: unknown[]) => unknown; createBuffer: (...a: unknown[]) => unknown };
  queue: { submit: (...a: unknown[]) => unknown };
  tensorMap: { get(id: object): { values?: unknown; resource?: unknown } | undefined };
  uploadToGPU: (dataId: object) => void;
}

/**
 * Puts `original` back as `target[key]`: deleting the counting own property where the original
 * is the prototype's method, assigning it where it was an own property itself (the bind-group
 * cache's createBindGroup).
 */
function restore<T extends object>(target: T, key: keyof T & string, original: unknown): void {
  delete (target as Record<string, unknown>)[key];
  if ((target as Record<string, unknown>)[key] !== original) (target as Record<string, unknown>)[key] = original;
}

/**
 * Runs `work` with counters on the active webgpu backend's device, queue and uploads, then
 * puts the originals back. On another backend it runs `work` and returns null.
 * @example const counts = await countBackendCalls(async () => { const t = step(); await t.data(); });
 */
export async function countBackendCalls(work: () => Promise<void>): Promise<BackendCounts | null> {
  if (tf.getBackend() !== 'webgpu') {
    await work();
    return null;
  }
  const b = tf.backend() as unknown as Countable;
  const counts: BackendCounts = { dispatches: 0, uploads: 0, uploadBytes: 0, buffersCreated: 0, submits: 0 };
  const { device, queue } = b;
  const originals = { bindGroup: device.createBindGroup, buffer: device.createBuffer, submit: queue.submit, upload: b.uploadToGPU };
  device.createBindGroup = (...a) => (counts.dispatches++, originals.bindGroup.apply(device, a));
  device.createBuffer = (...a) => (counts.buffersCreated++, originals.buffer.apply(device, a));
  queue.submit = (...a) => (counts.submits++, originals.submit.apply(queue, a));
  b.uploadToGPU = (dataId) => {
    const d = b.tensorMap.get(dataId);
    if (d && d.resource == null && d.values != null) {
      counts.uploads++;
      counts.uploadBytes += ArrayBuffer.isView(d.values) ? d.values.byteLength : 0;
    }
    originals.upload.call(b, dataId);
  };
  try {
    await work();
  } finally {
    restore(device, 'createBindGroup', originals.bindGroup);
    restore(device, 'createBuffer', originals.buffer);
    restore(queue, 'submit', originals.submit);
    restore(b, 'uploadToGPU', originals.upload);
  }
  return counts;
}
