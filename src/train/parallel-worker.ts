// A worker thread of data-parallel training (train/parallel.ts): a copy of the model that trains
// its share of each batch and exchanges gradients with the other threads through shared memory.
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../backend/index.js';
import { evaluateModel } from '../eval/evaluate.js';
import { buildModel } from '../model/resnet.js';
import { GradientExchange, type WorkerMessage, type WorkerReply, type WorkerSetup } from './parallel.js';
import { createTrainer } from './step.js';

const setup = workerData as WorkerSetup;
const exchange = new GradientExchange(setup.shared, setup.ranks, setup.rank, setup.parameters);
try {
  await initBackend(setup.backend);
  const model = buildModel(setup.model, { seed: setup.seed });
  const trainer = createTrainer(model, { ...setup.trainer, reduce: exchange.reduce });
  // The weights of the test passes are written into a copy of their own (this thread's stay as trained).
  let evaluated: tf.LayersModel | undefined;
  const evaluate = async (msg: Extract<WorkerMessage, { type: 'evaluate' }>): Promise<WorkerReply> => {
    try {
      evaluated ??= buildModel(setup.model, { seed: setup.seed });
      const weights = msg.weights.map((a) => tf.tensor(a.values, a.shape));
      evaluated.setWeights(weights);
      tf.dispose(weights);
      const { loss, predictions } = await evaluateModel(evaluated, msg, msg.norm);
      return { id: msg.id, loss, predictions };
    } catch (err) {
      return { id: msg.id, error: (err as Error).message };
    }
  };
  parentPort!.on('message', (msg: WorkerMessage) => {
    if (msg.type === 'evaluate') {
      void evaluate(msg).then((reply) => parentPort!.postMessage(reply));
      return;
    }
    try {
      if (msg.type === 'state') trainer.restore(msg.arrays);
      else {
        const { lossSum, correct } = trainer.step(msg.batch, msg.lr);
        lossSum.dispose();
        correct.dispose();
      }
    } catch (err) {
      exchange.fail(`worker ${setup.rank}: ${(err as Error).message}`);
    }
  });
} catch (err) {
  const message = (err as Error).message;
  exchange.fail(`worker ${setup.rank}: ${message}`);
  // Nothing is left waiting for this thread: a test pass asked of it gets the reason.
  parentPort!.on('message', (msg: WorkerMessage) => {
    if (msg.type === 'evaluate') parentPort!.postMessage({ id: msg.id, error: message } satisfies WorkerReply);
  });
}
