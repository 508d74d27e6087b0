// Worker thread of the batch loader: holds the training set and makes augmented batches so the
// main thread only runs the model (tfjs wasm is single-threaded in Node).
import { parentPort, workerData } from 'node:worker_threads';
import { epochOrder, makeBatch, type BatchPlan } from './batches.js';

const plan = workerData as BatchPlan;
let cached: { epoch: number; order: Uint32Array } | undefined;

// mixSteps: the run's mixed steps as the loader knows them now (a run planned to a time limit
// changes them with its number of epochs).
parentPort!.on('message', (msg: { id: number; epoch: number; step: number; mixSteps?: number }) => {
  if (cached?.epoch !== msg.epoch) cached = { epoch: msg.epoch, order: epochOrder(plan, msg.epoch) };
  const batch = makeBatch(msg.mixSteps === undefined ? plan : { ...plan, mixSteps: msg.mixSteps }, msg.epoch, msg.step, cached.order);
  const extra = [...(batch.cutout ? [batch.cutout.cy, batch.cutout.cx] : []), ...(batch.crops ? [batch.crops.dy, batch.crops.dx, batch.crops.mirror] : [])];
  // Transferred, not copied; each array has a buffer of its own.
  const buffers = [...new Set([batch.images, batch.labels, ...extra].map((a) => a.buffer as ArrayBuffer))];
  parentPort!.postMessage({ id: msg.id, batch }, buffers);
});
