import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCheckpoint, snapshotCheckpoint, writeCheckpoint, type TrainState } from '../../src/train/checkpoint.js';
import { parseTrainConfig } from '../../src/train/config.js';
import { tempDir } from '../helpers/fixtures.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  await tf.setBackend('cpu');
  ({ dir, cleanup } = await tempDir());
});
afterAll(() => cleanup());

describe('checkpoint snapshot', () => {
  it('holds the state and tensors of the moment it was taken, though both change before it is written', async () => {
    const state: TrainState = { config: parseTrainConfig({}), epoch: 2, step: 0, partial: { lossSum: 0, correct: 0, seen: 0, seconds: 0 }, history: [], trainSeconds: 5 };
    const w = tf.variable(tf.tensor2d([1, 2, 3, 4], [2, 2]));
    const v = tf.variable(tf.tensor1d([5, 6]));
    const snapshot = await snapshotCheckpoint(state, [w, v]);
    // Training goes on while the files are written.
    w.assign(tf.zeros([2, 2]));
    v.assign(tf.ones([2]));
    state.epoch = 3;
    state.step = 7;
    state.history.push({ epoch: 3, trainLoss: 1, trainAccuracy: 0.5, testLoss: null, testAccuracy: null, lr: 0.1, imagesPerSecond: 10, seconds: 1 });
    await writeCheckpoint(join(dir, 'run'), snapshot);

    const loaded = await loadCheckpoint(join(dir, 'run'));
    expect(loaded.state).toMatchObject({ epoch: 2, step: 0, history: [], trainSeconds: 5 });
    expect(loaded.arrays).toEqual([
      { shape: [2, 2], values: Float32Array.of(1, 2, 3, 4) },
      { shape: [2], values: Float32Array.of(5, 6) },
    ]);
    tf.dispose([w, v]);
  });
});

describe('a damaged checkpoint', () => {
  it('is refused with one line that names it and says how to go on, not a parse error', async () => {
    const state: TrainState = { config: parseTrainConfig({}), epoch: 1, step: 0, partial: { lossSum: 0, correct: 0, seen: 0, seconds: 0 }, history: [], trainSeconds: 1 };
    const w = tf.variable(tf.tensor1d([1, 2]));
    await writeCheckpoint(join(dir, 'damaged'), await snapshotCheckpoint(state, [w]));
    tf.dispose(w);
    const statePath = join(dir, 'damaged', 'checkpoint', 'state.json');
    const { writeFile, rm } = await import('node:fs/promises');
    await writeFile(statePath, '{"epoch": 1,');
    await expect(loadCheckpoint(join(dir, 'damaged'))).rejects.toMatchObject({ code: 'DATASET_CORRUPT', message: expect.stringMatching(/checkpoint: the checkpoint is damaged \(state\.json: .*JSON/), hint: 'start the run again without --resume' });
    await writeFile(statePath, '{"epoch": 1}');
    await expect(loadCheckpoint(join(dir, 'damaged'))).rejects.toMatchObject({ code: 'DATASET_CORRUPT', message: expect.stringMatching(/damaged \(state\.json has no tensor index\)$/) });
    await writeFile(statePath, JSON.stringify({ ...state, tensors: { shapes: [[2]] } }));
    await rm(join(dir, 'damaged', 'checkpoint', 'tensors.bin'));
    await expect(loadCheckpoint(join(dir, 'damaged'))).rejects.toMatchObject({ name: 'CifarError', message: expect.stringContaining('tensors.bin') });
  });
});
