import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTrainConfig, type TrainConfig } from '../../src/train/config.js';
import { trainModel, type TimePlan } from '../../src/train/train.js';
import { createTrainer } from '../../src/train/step.js';
import { IMAGE_BYTES } from '../../src/image/preprocess.js';
import { loadModel } from '../../src/model/store.js';
import { buildModel } from '../../src/model/resnet.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { oneCycle, oneCycleLr, refit, scheduledLr } from '../../src/train/schedule.js';
import { expectClose } from '../backend/helpers.js';
import { tempDir, writeLearnableDataset } from '../helpers/fixtures.js';
import { linearKernelAfterStep } from '../helpers/linear-step.js';

let dir: string;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir());
  await writeLearnableDataset(join(dir, 'data', 'cifar-10-batches-bin'), 16);
});
afterAll(() => cleanup());

const config = (out: string, extra: Partial<TrainConfig> = {}): TrainConfig =>
  parseTrainConfig({ model: 'resnet10-w8', epochs: 3, batchSize: 16, lr: 0.05, backend: 'wasm', data: join(dir, 'data'), out: join(dir, out), ...extra });

async function weightsOf(out: string): Promise<Float32Array[]> {
  const { model } = await loadModel(out);
  const arrays = model.weights.map((w) => w.read().dataSync() as Float32Array);
  model.dispose();
  return arrays;
}

/** The trainable weights of a saved model (not the batch-norm statistics, which training moves at any learning rate). */
async function trainableOf(out: string): Promise<Float32Array[]> {
  const { model } = await loadModel(out);
  const arrays = model.trainableWeights.map((w) => w.read().dataSync() as Float32Array);
  model.dispose();
  return arrays;
}

describe('a run started from a saved model (init)', () => {
  it('starts from its weights, keeps its input normalisation and records its version, across a resumption too', async () => {
    const base = await trainModel(config('init-base', { epochs: 1 }));
    // A normalisation unlike the data's, so that keeping the model's own is seen.
    const metaPath = join(dir, 'init-base', 'metadata.json');
    const norm = { mean: [0.3, 0.4, 0.5], std: [0.2, 0.25, 0.3] };
    await writeFile(metaPath, JSON.stringify({ ...JSON.parse(await readFile(metaPath, 'utf8')), normalization: norm }));
    // Steps too small to move a weight measurably, and another seed: the run ends with the model's
    // weights if it started from them, and with a fresh seed's if not.
    const tiny = { epochs: 1, lr: 1e-9, momentum: 0, weightDecay: 0, seed: 7 };
    const run = { ...tiny, init: join(dir, 'init-base') };
    await expect(trainModel(config('init-run', run), { maxSteps: 2 })).rejects.toMatchObject({ code: 'ABORTED' });
    const resumed = await trainModel(config('init-run', run), { resume: true });
    expect(resumed.metadata.initVersion).toBe(base.metadata.version);
    expect(resumed.metadata.normalization).toEqual(norm);
    expect(resumed.metadata.config).toMatchObject({ init: join(dir, 'init-base') });
    const from = await trainableOf(join(dir, 'init-base'));
    (await trainableOf(join(dir, 'init-run'))).forEach((w, i) => expectClose(w, from[i]!, 1e-6));

    const scratch = await trainModel(config('init-scratch', tiny));
    expect(scratch.metadata.initVersion).toBeUndefined();
    const fresh = await trainableOf(join(dir, 'init-scratch'));
    expect(fresh.some((w, i) => w.some((v, j) => Math.abs(v - from[i]![j]!) > 1e-3))).toBe(true);
  });

  it('refuses a model of another architecture, its own folder as --out, or a folder without a model, in one line', async () => {
    await trainModel(config('init-other', { epochs: 1, limit: 16 }));
    await expect(trainModel(config('init-bad', { model: 'resnet18-w4', init: join(dir, 'init-other') }))).rejects.toMatchObject({
      code: 'USAGE',
      message: expect.stringMatching(/a resnet10-w8 model cannot start a resnet18-w4 run$/),
      hint: 'pass --model resnet10-w8, or another model folder',
    });
    await expect(trainModel(config('init-other', { init: join(dir, 'init-other') }))).rejects.toMatchObject({ code: 'USAGE', message: expect.stringContaining('--out must be another folder') });
    await expect(trainModel(config('init-bad', { init: join(dir, 'nowhere') }))).rejects.toMatchObject({ code: 'MODEL_MISSING', message: expect.stringMatching(/^--init: no model at /) });
  });
});

describe('training', () => {
  it('lowers the loss on a learnable dataset, writes the model, history and curves, and leaks no tensors', async () => {
    const counts: number[] = [];
    const result = await trainModel(config('a'), { onEpoch: () => counts.push(tf.memory().numTensors) });
    const losses = result.history.map((r) => r.trainLoss);
    expect(losses).toHaveLength(3);
    expect(losses[2]!).toBeLessThan(losses[0]! * 0.9);
    expect(counts[2]).toBe(counts[1]);
    expect(result.metadata).toMatchObject({ architecture: 'resnet10-w8', epochs: 3, batchSize: 16, classes: expect.arrayContaining(['cat']) });
    expect(result.metadata.version).toMatch(/^[0-9a-f]{12}$/);
    // The backend's start line, e.g. 'cpu (plain JS): requested': on webgpu it names the kernels (float16 tensor cores or not).
    expect(result.metadata.backendDetail).toMatch(new RegExp(`^${result.metadata.backend} \\(.+\\): `));
    // Wall time counts the test passes, checkpoints and set-up too: never less than training.
    expect(result.metadata.wallSeconds).toBeGreaterThanOrEqual(result.metadata.trainingSeconds);
    expect(Object.keys(result.metadata.perClassAccuracy!)).toHaveLength(10);
    const { existsSync } = await import('node:fs');
    for (const f of ['history.jsonl', 'curves.svg', 'curves.png', 'model.json', 'metadata.json']) expect(existsSync(join(dir, 'a', f)), f).toBe(true);
  });

  it('resumed after an interruption, ends with exactly the weights of an uninterrupted run', async () => {
    // Both runs start from one checkpoint taken before the first step (same initial weights).
    await expect(trainModel(config('full'), { maxSteps: 0 })).rejects.toMatchObject({ code: 'ABORTED' });
    await cp(join(dir, 'full', 'checkpoint'), join(dir, 'split', 'checkpoint'), { recursive: true });
    const uninterrupted = await trainModel(config('full'), { resume: true });

    // 4 steps per epoch: stop mid-epoch 2, then again mid-epoch 3.
    await expect(trainModel(config('split'), { resume: true, maxSteps: 5 })).rejects.toMatchObject({ code: 'ABORTED', hint: expect.stringContaining('--resume') });
    // Pretend that first call took 1000 s: the finished run's wall time must carry it.
    const statePath = join(dir, 'split', 'checkpoint', 'state.json');
    const saved = JSON.parse(await readFile(statePath, 'utf8'));
    expect(saved.wallSeconds).toBeGreaterThan(0);
    await writeFile(statePath, JSON.stringify({ ...saved, wallSeconds: saved.wallSeconds + 1000 }));
    await expect(trainModel(config('split'), { resume: true, maxSteps: 4 })).rejects.toMatchObject({ code: 'ABORTED' });
    const resumed = await trainModel(config('split'), { resume: true });

    expect(resumed.metadata.version).toBe(uninterrupted.metadata.version);
    // The resumed run's wall time adds up its calls.
    expect(resumed.metadata.wallSeconds!).toBeGreaterThanOrEqual(1000);
    expect(uninterrupted.metadata.wallSeconds!).toBeLessThan(1000);
    const [a, b] = [await weightsOf(join(dir, 'full')), await weightsOf(join(dir, 'split'))];
    a.forEach((w, i) => expect(b[i]).toEqual(w));
    expect(resumed.history.map((r) => r.trainLoss)).toEqual(uninterrupted.history.map((r) => r.trainLoss));
  });

  it('mixes the batches (mixup, cutmix) of the first mixUntil of the steps only, records the recipe, and resumes to the same weights', async () => {
    const recipe = { epochs: 2, cutmix: 1, mixup: 0.4 };
    const plainRun = await trainModel(config('plain', { epochs: 2 }));
    const half = await trainModel(config('mix-half', { ...recipe, mixUntil: 0.5 }));
    await trainModel(config('mix-all', recipe));
    // 20 steps in all: mixUntil 0.01 rounds to none, the plain run's weights.
    await trainModel(config('mix-none', { ...recipe, mixUntil: 0.01 }));
    const [plain, mixHalf, mixAll, none] = (await Promise.all(['plain', 'mix-half', 'mix-all', 'mix-none'].map((o) => weightsOf(join(dir, o))))) as Float32Array[][];
    none!.forEach((w, i) => expect(w).toEqual(plain![i]));
    expect(mixHalf![0]).not.toEqual(plain![0]);
    expect(mixHalf![0]).not.toEqual(mixAll![0]);
    expect(half.metadata.config).toMatchObject({ cutmix: 1, mixup: 0.4, mixUntil: 0.5 });
    // 10 steps an epoch: the first epoch mixed, the second not; a run without mixing records nothing.
    expect(half.history.map((r) => r.mixed)).toEqual([1, 0]);
    expect(plainRun.history[0]).not.toHaveProperty('mixed');
    // Interrupted in epoch 1, while it mixes: the same draws after the resume.
    await expect(trainModel(config('mix-split', { ...recipe, mixUntil: 0.5 }), { maxSteps: 3 })).rejects.toMatchObject({ code: 'ABORTED' });
    await trainModel(config('mix-split'), { resume: true });
    (await weightsOf(join(dir, 'mix-split'))).forEach((w, i) => expect(w).toEqual(mixHalf![i]));
  });

  it('is reproducible: the same seed trains to the same weights, another seed to others', async () => {
    await trainModel(config('seed-a', { epochs: 1 }));
    await trainModel(config('seed-b', { epochs: 1 }));
    await trainModel(config('seed-c', { epochs: 1, seed: 1 }));
    const [a, b, c] = (await Promise.all(['seed-a', 'seed-b', 'seed-c'].map((o) => weightsOf(join(dir, o))))) as [Float32Array[], Float32Array[], Float32Array[]];
    b.forEach((w, i) => expect(w).toEqual(a[i]));
    expect(c[0]).not.toEqual(a[0]);
  });

  it('tests every Nth epoch and the last with testEvery, and still tests the saved model', async () => {
    const result = await trainModel(config('every', { testEvery: 2 }));
    expect(result.history.map((r) => r.testAccuracy === null)).toEqual([true, false, false]);
    expect(result.history.map((r) => r.testLoss === null)).toEqual([true, false, false]);
    expect(result.metadata.testAccuracy).toEqual(expect.any(Number));
    const lines = (await readFile(join(dir, 'every', 'history.jsonl'), 'utf8')).trim().split('\n');
    expect(JSON.parse(lines[0]!)).toMatchObject({ epoch: 1, testLoss: null, testAccuracy: null });
  });

  it('reports progress every 10 steps in order, before its epoch, with the running figures of that step', async () => {
    const events: string[] = [];
    const lastLoss = new Map<number, number>();
    let steps = 0;
    const result = await trainModel(config('progress', { batchSize: 4, epochs: 2 }), {
      onStep: (p) => {
        steps = p.steps;
        events.push(`${p.epoch}.${p.step}`);
        if (p.step === p.steps) lastLoss.set(p.epoch, p.loss);
      },
      onEpoch: (r) => events.push(`epoch ${r.epoch}`),
    });
    expect(steps).toBeGreaterThan(10);
    const reported = (e: number) => [...Array.from({ length: Math.floor((steps - 1) / 10) }, (_, i) => `${e}.${(i + 1) * 10}`), `${e}.${steps}`, `epoch ${e}`];
    expect(events).toEqual([...reported(1), ...reported(2)]);
    // The read at the last step is of the sums that make the epoch's figures.
    expect(result.history.map((r) => lastLoss.get(r.epoch))).toEqual(result.history.map((r) => r.trainLoss));
    for (const r of result.history) expect(r.loaderWaitSeconds).toBeGreaterThanOrEqual(0), expect(r.loaderWaitSeconds).toBeLessThanOrEqual(r.seconds);
  });

  it('fails with one line naming the file when an epoch\'s files cannot be written behind the training', async () => {
    // A folder where history.jsonl goes: the first epoch's write (a rename onto it) fails.
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(dir, 'unwritable', 'history.jsonl'), { recursive: true });
    const run = trainModel(config('unwritable'));
    await expect(run).rejects.toMatchObject({ code: 'IO', message: expect.stringContaining('history.jsonl') });
    await expect(run).rejects.toMatchObject({ message: expect.not.stringContaining('\n') });
  });

  it('tells the user to download the dataset when it is missing', async () => {
    await expect(trainModel(config('x', { data: join(dir, 'nothing') }))).rejects.toMatchObject({ code: 'DATASET_MISSING', hint: expect.stringContaining('cifar download') });
  });
});

describe('resuming a checkpoint of another model', () => {
  it('is refused with one line naming the checkpoint and the model, not a failure inside the trainer', async () => {
    await expect(trainModel(config('other'), { maxSteps: 1 })).rejects.toMatchObject({ code: 'ABORTED' });
    const statePath = join(dir, 'other', 'checkpoint', 'state.json');
    const saved = JSON.parse(await readFile(statePath, 'utf8'));
    await writeFile(statePath, JSON.stringify({ ...saved, config: { ...saved.config, model: 'resnet18-w4' } }));
    await expect(trainModel(config('other'), { resume: true })).rejects.toMatchObject({
      code: 'DATASET_CORRUPT',
      message: expect.stringMatching(/other\/checkpoint does not fit a resnet18-w4 model: checkpoint holds \d+ tensors, the model needs \d+$/),
      hint: 'start the run again without --resume',
    });
  });
});

describe('training to a time limit (timeLimit)', () => {
  // 80 images in batches of 16: 5 steps an epoch, planned after the first 1 + 2 steps.
  it('with room for every epoch, plans them all once, early in the first epoch, trains exactly the run without a limit, and resumes to it', async () => {
    const plans: TimePlan[] = [];
    // Checked against the limit within every epoch too (every 2 steps): with room, that changes nothing.
    const limited = await trainModel(config('limit-room', { timeLimit: 1e6 }), { onPlan: (p) => plans.push(p), limitCheckSeconds: 0 });
    const plain = await trainModel(config('limit-none'));
    expect(plans).toEqual([expect.objectContaining({ steps: 15, epochs: 3, maxEpochs: 3, stepsPerEpoch: 5, fits: true, atEpoch: 0, atStep: 3, limitSeconds: 1e6 })]);
    expect(plans[0]!.stepSeconds).toBeGreaterThan(0);
    expect(limited.metadata).toMatchObject({ epochs: 3, steps: 15, config: { timeLimit: 1e6, epochs: 3 } });
    expect(limited.history).toHaveLength(3);
    expect(limited.history[2]).not.toHaveProperty('fraction');
    // The same schedule: the plan's reads of the device change no number.
    expect(limited.metadata.version).toBe(plain.metadata.version);
    // Interrupted after the plan, mid-epoch: the checkpoint holds it, and the resumed run plans nothing new.
    await expect(trainModel(config('limit-split', { timeLimit: 1e6 }), { maxSteps: 4 })).rejects.toMatchObject({ code: 'ABORTED' });
    expect((await loadCheckpoint(join(dir, 'limit-split'))).state).toMatchObject({ config: { epochs: 3 }, plan: { maxEpochs: 3, totalSteps: 15 } });
    const resumedPlans: TimePlan[] = [];
    const resumed = await trainModel(config('limit-split'), { resume: true, onPlan: (p) => resumedPlans.push(p) });
    expect(resumedPlans).toEqual([]);
    expect(resumed.metadata.version).toBe(limited.metadata.version);
  });

  it('too short for more, stops where it stands, in the first epoch, and says so; the steps trained keep their mixing', async () => {
    const plans: TimePlan[] = [];
    const short = await trainModel(config('limit-short', { timeLimit: 0.001, mixup: 0.4, mixUntil: 0.5 }), { onPlan: (p) => plans.push(p) });
    expect(plans).toEqual([expect.objectContaining({ steps: 3, epochs: 1, maxEpochs: 3, fits: false, atStep: 3 })]);
    expect(short.history).toHaveLength(1);
    // Three of the epoch's five steps, all three mixed (as they were trained, under the plan of 15 steps).
    expect(short.history[0]).toMatchObject({ fraction: 3 / 5, mixed: 1 });
    expect(short.history[0]!.testAccuracy).toEqual(expect.any(Number));
    expect(short.metadata).toMatchObject({ epochs: 1, steps: 3, config: { epochs: 1, timeLimit: 0.001 } });
  });

  it('after the warm-up, shortens a run that falls behind its plan to what still fits, and says so', async () => {
    // Planned at 4 epochs, then interrupted in epoch 2 (the warm-up is the first 3 of 20 steps).
    const plans: TimePlan[] = [];
    await expect(trainModel(config('limit-behind', { epochs: 4, timeLimit: 2000 }), { maxSteps: 7, onPlan: (p) => plans.push(p) })).rejects.toMatchObject({ code: 'ABORTED' });
    expect(plans).toEqual([expect.objectContaining({ steps: 20, epochs: 4, fits: true })]);
    // Pretend that call took 1999 s: after epoch 2 the steps left no longer fit in 2000.
    const statePath = join(dir, 'limit-behind', 'checkpoint', 'state.json');
    const saved = JSON.parse(await readFile(statePath, 'utf8'));
    await writeFile(statePath, JSON.stringify({ ...saved, wallSeconds: saved.wallSeconds + 1999 }));
    const resumedPlans: TimePlan[] = [];
    const resumed = await trainModel(config('limit-behind'), { resume: true, onPlan: (p) => resumedPlans.push(p) });
    expect(resumedPlans).toEqual([expect.objectContaining({ steps: 10, epochs: 2, fits: false, atEpoch: 2, atStep: 0 })]);
    expect(resumed.history).toHaveLength(2);
    expect(resumed.metadata).toMatchObject({ epochs: 2, config: { epochs: 2 } });
  });

  it('within an epoch, shortens a run that falls behind at the next check instead of at the epoch\'s end', async () => {
    // As above: planned at 4 epochs, interrupted at step 2 of epoch 2, the call made to have taken 1999 s.
    await expect(trainModel(config('limit-behind-check', { epochs: 4, timeLimit: 2000 }), { maxSteps: 7 })).rejects.toMatchObject({ code: 'ABORTED' });
    const statePath = join(dir, 'limit-behind-check', 'checkpoint', 'state.json');
    const saved = JSON.parse(await readFile(statePath, 'utf8'));
    await writeFile(statePath, JSON.stringify({ ...saved, wallSeconds: saved.wallSeconds + 1999 }));
    const plans: TimePlan[] = [];
    const resumed = await trainModel(config('limit-behind-check'), { resume: true, limitCheckSeconds: 0, onPlan: (p) => plans.push(p) });
    // Checked after 2 more steps (a tenth of an epoch, at least 2): stopped there, 4 of epoch 2's 5 steps in.
    expect(plans).toEqual([expect.objectContaining({ steps: 9, epochs: 2, fits: false, atEpoch: 1, atStep: 4 })]);
    expect(resumed.history.map((r) => r.fraction)).toEqual([undefined, 4 / 5]);
    expect(resumed.history[1]!.testAccuracy).toEqual(expect.any(Number));
    expect(resumed.metadata).toMatchObject({ epochs: 2, steps: 9 });
  });

  it('a plan that ends within an epoch trains that epoch in part, with the schedule ending on its last step, across a resume', async () => {
    // A 15-step plan interrupted at step 11, its checkpoint then made to say 12 steps: as a plan
    // whose limit fell two steps into epoch 3 would (how many steps fit depends on the machine's speed).
    await expect(trainModel(config('limit-cut', { timeLimit: 1e6 }), { maxSteps: 11 })).rejects.toMatchObject({ code: 'ABORTED' });
    const statePath = join(dir, 'limit-cut', 'checkpoint', 'state.json');
    const saved = JSON.parse(await readFile(statePath, 'utf8'));
    expect(saved.plan).toMatchObject({ totalSteps: 15, schedule: { totalSteps: 15 } });
    await writeFile(statePath, JSON.stringify({ ...saved, plan: { ...saved.plan, totalSteps: 12, schedule: oneCycle(12, saved.config.warmup) } }));
    const plans: TimePlan[] = [];
    const cut = await trainModel(config('limit-cut'), { resume: true, onPlan: (p) => plans.push(p) });
    expect(plans).toEqual([]);
    expect(cut.history.map((r) => r.fraction)).toEqual([undefined, undefined, 2 / 5]);
    // The lr of step 12 of 12 (0.0012), where step 12 of 15 would still have 0.011.
    expect(cut.history[2]!.lr).toBeLessThan(0.002);
    expect(cut.history[2]!.testAccuracy).toEqual(expect.any(Number));
    expect(cut.metadata).toMatchObject({ epochs: 3, steps: 12 });
  });

  it('after the warm-up, lengthens a run well ahead of its plan, the learning rate going on from where it stood', async () => {
    // A run planned at 10 steps (2 epochs) when 15 fit: as one first planned on a busier machine.
    await expect(trainModel(config('limit-ahead', { timeLimit: 1e6, warmup: 0.1 }), { maxSteps: 4 })).rejects.toMatchObject({ code: 'ABORTED' });
    const statePath = join(dir, 'limit-ahead', 'checkpoint', 'state.json');
    const saved = JSON.parse(await readFile(statePath, 'utf8'));
    const warmup: number = saved.config.warmup;
    await writeFile(statePath, JSON.stringify({ ...saved, config: { ...saved.config, epochs: 2 }, plan: { ...saved.plan, totalSteps: 10, schedule: oneCycle(10, warmup) } }));
    const plans: TimePlan[] = [];
    const grown = await trainModel(config('limit-ahead'), { resume: true, onPlan: (p) => plans.push(p) });
    // Re-planned at the end of epoch 1, past the warm-up (1 step of 10): the 3 epochs there is room for.
    expect(plans).toEqual([expect.objectContaining({ steps: 15, epochs: 3, fits: true, atEpoch: 1, atStep: 0 })]);
    expect(grown.history.map((r) => r.fraction)).toEqual([undefined, undefined, undefined]);
    expect(grown.metadata).toMatchObject({ epochs: 3, steps: 15, config: { epochs: 3 } });
    // Epoch 1's last step had the 10-step schedule's rate; from step 5 the decay goes on over 15.
    const lr = saved.config.lr as number;
    const grownSchedule = refit(oneCycle(10, warmup), 5, 15, warmup);
    expect(grown.history.map((r) => r.lr)).toEqual([oneCycleLr(4, 10, lr, warmup), scheduledLr(grownSchedule, 9, lr), scheduledLr(grownSchedule, 14, lr)]);
    // Step 9: the decay's progress was 4/9 at step 5 (of steps 1 to 10) and goes on to 1 at step 15,
    // 4/9 + 5/9 · 4/10 = 2/3 at step 9, a quarter of the way from lr/2500 up to lr.
    expect(grown.history[1]!.lr).toBeCloseTo(lr / 2500 + (lr - lr / 2500) * 0.25, 10);
    // Slower than the 10-step plan's decay, which would have ended at step 10 (0.0015 at step 9 against 0.0125 now).
    expect(grown.history[1]!.lr).toBeGreaterThan(5 * oneCycleLr(9, 10, lr, warmup));
    expect((await loadCheckpoint(join(dir, 'limit-ahead'))).state.plan).toMatchObject({ totalSteps: 15, schedule: grownSchedule });
  });
});

describe('training step with cutout', () => {
  /** Kernel of a linear model after one step on bright images, with or without a cut. */
  function kernelAfterStep(cutout: number, centres?: { cy: Int32Array; cx: Int32Array }): Promise<Float32Array> {
    const images = new Uint8Array(2 * IMAGE_BYTES).fill(250);
    return linearKernelAfterStep({ images, labels: Uint8Array.from([1, 2]), size: 2, ...(centres ? { cutout: centres } : {}) }, 0.1, { cutout });
  }

  it('blanks the batch\'s squares before the forward pass: a fully cut image teaches a linear layer nothing', async () => {
    const centre = { cy: Int32Array.from([16, 16]), cx: Int32Array.from([16, 16]) };
    // The whole image is the mean, 0: the kernel's gradient is 0.
    expect(Math.max(...(await kernelAfterStep(32, centre)).map(Math.abs))).toBe(0);
    // Cut only the top-left quarter: those inputs still get no gradient, the others do.
    const corner = await kernelAfterStep(32, { cy: Int32Array.from([0, 0]), cx: Int32Array.from([0, 0]) });
    const row = (y: number, x: number) => (y * 32 + x) * 3 * 10;
    expect(corner[row(0, 0)]).toBe(0);
    expect(corner[row(15, 15)]).toBe(0);
    expect(corner[row(16, 0)]).not.toBe(0);
    // Without cutout every input learns.
    expect(Math.abs((await kernelAfterStep(0, centre))[row(16, 16)]!)).toBeGreaterThan(0);
  });
});

describe('weight average (ema)', () => {
  const batch = 4;
  const images = Uint8Array.from({ length: batch * IMAGE_BYTES }, (_, i) => (i * 37) % 251);
  const labels = Uint8Array.from([1, 5, 9, 0]);
  const options = { momentum: 0.9, weightDecay: 5e-4, labelSmoothing: 0.1, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], classes: 10 };
  const snapshot = (model: tf.LayersModel) => model.weights.map((w) => (w.read().dataSync() as Float32Array).slice());

  it('follows a ← d·a + (1 − d)·w after every step, batch-norm statistics included, and leaves the training itself unchanged', async () => {
    const model = buildModel('resnet10-w8', { seed: 3 });
    const plain = buildModel('resnet10-w8', { seed: 3 });
    const trainer = createTrainer(model, { ...options, ema: 0.5 });
    const without = createTrainer(plain, options);
    let expected = snapshot(model);
    for (let s = 0; s < 3; s++) {
      for (const t of [trainer, without]) {
        const out = t.step({ images, labels, size: batch }, 0.05);
        tf.dispose([out.lossSum, out.correct]);
      }
      const w = snapshot(model);
      expected = expected.map((a, i) => a.map((x, j) => 0.5 * x + 0.5 * w[i]![j]!));
      // A test pass between steps (as each epoch's) must not disturb what follows.
      await trainer.withAverage(async () => tf.dispose(tf.tidy(() => model.predict(tf.zeros([1, 32, 32, 3])) as tf.Tensor)));
    }
    const live = snapshot(model);
    // The live weights are exactly those of a run without the average.
    snapshot(plain).forEach((w, i) => expect(live[i]).toEqual(w));
    const averaged = await trainer.withAverage(async () => snapshot(model));
    averaged.forEach((a, i) => expectClose(a, expected[i]!, 1e-5, `average ${model.weights[i]!.name}`));
    // Outside withAverage the model holds the live weights again.
    snapshot(model).forEach((w, i) => expect(w).toEqual(live[i]));
    // The average differs from the live weights, moving statistics included.
    const movingMean = model.weights.findIndex((w) => /moving_mean/.test(w.name));
    expect(movingMean).toBeGreaterThanOrEqual(0);
    expect(averaged[movingMean]).not.toEqual(live[movingMean]);
    expect(averaged[0]).not.toEqual(live[0]);
    // Its checkpoint holds weights, velocities and averages.
    expect(trainer.stateTensors()).toHaveLength(model.weights.length + model.trainableWeights.length + model.weights.length);
    trainer.adoptAverage();
    snapshot(model).forEach((w, i) => expectClose(w, expected[i]!, 1e-5, `adopted ${i}`));
    for (const [t, m] of [[trainer, model], [without, plain]] as const) {
      t.dispose();
      m.dispose();
    }
  });

  it('a trainer, with or without the average, leaves no tensor behind once disposed', () => {
    for (const ema of [0, 0.5]) {
      const model = buildModel('resnet10-w8');
      const before = tf.memory().numTensors;
      createTrainer(model, { ...options, ema }).dispose();
      expect(tf.memory().numTensors - before, `ema ${ema}`).toBe(0);
      model.dispose();
    }
  });

  it('a run tests and saves the average, records the live accuracy beside it, and resumes to the same average', async () => {
    const emaConfig = (out: string) => config(out, { ema: 0.6 });
    await expect(trainModel(emaConfig('ema-full'), { maxSteps: 0 })).rejects.toMatchObject({ code: 'ABORTED' });
    await cp(join(dir, 'ema-full', 'checkpoint'), join(dir, 'ema-split', 'checkpoint'), { recursive: true });
    const full = await trainModel(emaConfig('ema-full'), { resume: true });
    for (const r of full.history) expect(r.liveTestAccuracy).toEqual(expect.any(Number));
    expect(full.metadata.testAccuracy).toBe(full.history[2]!.testAccuracy);
    expect(full.metadata.config).toMatchObject({ ema: 0.6 });
    // The saved weights are the checkpoint's averages (its last tensors), not its live weights.
    const saved = await weightsOf(join(dir, 'ema-full'));
    const { arrays } = (await loadCheckpoint(join(dir, 'ema-full')))!;
    const averages = arrays.slice(arrays.length - saved.length);
    saved.forEach((w, i) => expect(w).toEqual(averages[i]!.values));
    expect(saved[0]).not.toEqual(arrays[0]!.values);

    await expect(trainModel(emaConfig('ema-split'), { resume: true, maxSteps: 5 })).rejects.toMatchObject({ code: 'ABORTED' });
    await trainModel(emaConfig('ema-split'), { resume: true });
    (await weightsOf(join(dir, 'ema-split'))).forEach((w, i) => expect(w).toEqual(saved[i]));
  });
});
