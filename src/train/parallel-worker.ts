// A worker thread of data-parallel training (train/parallel.ts): a copy of the model that trains
// its share of each batch and exchanges gradients with the other threads through shared memory.
import { parentPort, workerData } from 'node:worker_threads';
import { initBackend } from '../backend/index.js';
import { buildModel } from '../model/resnet.js';
import { GradientExchange, type WorkerMessage, type WorkerSetup } from './parallel.js';
import { createTrainer } from './step.js';

const setup = workerData as WorkerSetup;
const exchange = new GradientExchange(setup.shared, setup.ranks, setup.rank, setup.parameters);
try {
  await initBackend(setup.backend);
  const model = buildModel(setup.model, { seed: setup.seed });
  const trainer = createTrainer(model, { ...setup.trainer, reduce: exchange.reduce });
  parentPort!.on('message', (msg: WorkerMessage) => {
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
  exchange.fail(`worker ${setup.rank}: ${(err as Error).message}`);
}
