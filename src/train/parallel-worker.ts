// A worker thread of data-parallel training (train/parallel.ts): a copy of the model that trains
// its share of each batch and exchanges gradients with the other threads through shared memory,
// and evaluates its share of a test pass; or, for cifar eval, one that only evaluates.
import { parentPort, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../backend/index.js';
import { evaluateModel } from '../eval/evaluate.js';
import { buildModel } from '../model/resnet.js';
import { GradientExchange, type WorkerMessage, type WorkerReply, type WorkerSetup } from './parallel.js';
import { createTrainer } from './step.js';

const setup = workerData as WorkerSetup;
const { training } = setup;
const exchange = training && new GradientExchange(training.shared, training.ranks, setup.rank, training.parameters);
/** Stops the training threads at the exchange (a thread that only evaluates has none). */
const fail = (message: string) => exchange?.fail(`worker ${setup.rank}: ${message}`);
try {
  await initBackend(setup.backend);
  const trainer = training && exchange && createTrainer(buildModel(setup.model, { seed: setup.seed }), { ...training.trainer, reduce: exchange.reduce });
  // The weights of the test passes are written into a copy of their own (this thread's stay as trained).
  let evaluated: tf.LayersModel | undefined;
  const evaluate = async (msg: Extract<WorkerMessage, { type: 'evaluate' }>): Promise<WorkerReply> => {
    try {
      evaluated ??= buildModel(setup.model, { seed: setup.seed });
      const weights = msg.weights.map((a) => tf.tensor(a.values, a.shape));
      evaluated.setWeights(weights);
      tf.dispose(weights);
      const { loss, predictions } = await evaluateModel(evaluated, msg, msg.norm, msg.options);
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
      if (!trainer) throw new Error(`${msg.type}: this thread only evaluates`);
      if (msg.type === 'state') trainer.restore(msg.arrays);
      else {
        const { lossSum, correct } = trainer.step(msg.batch, msg.lr);
        lossSum.dispose();
        correct.dispose();
      }
    } catch (err) {
      fail((err as Error).message);
    }
  });
} catch (err) {
  const message = (err as Error).message;
  fail(message);
  // Nothing is left waiting for this thread: a test pass asked of it gets the reason.
  parentPort!.on('message', (msg: WorkerMessage) => {
    if (msg.type === 'evaluate') parentPort!.postMessage({ id: msg.id, error: message } satisfies WorkerReply);
  });
}
