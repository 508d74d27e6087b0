import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import { initBackend, type BackendInfo } from '../backend/index.js';
import { assertNoWebGpuErrors } from '../backend/webgpu.js';
import { datasetPath, loadSplit, loadStats, type LabelledImages } from '../data/cifar-binary.js';
import { CLASSES } from '../data/classes.js';
import { CifarError, fromSystemError, isCifarError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { buildModel, countParams } from '../model/resnet.js';
import { roundToFloat16 } from '../model/float16.js';
import { normalizesOnDevice, type Normalization } from '../model/normalize.js';
import { loadModel, saveModel, type ModelMetadata } from '../model/store.js';
import { curvesSvg, type EpochRecord } from '../report/curves.js';
import { mixedStepsOfEpoch, plansMixing, stepsPerEpoch } from './batches.js';
import { loadCheckpoint, saveCheckpoint, snapshotCheckpoint, writeCheckpoint, type TrainState } from './checkpoint.js';
import { parseTrainConfig, type TrainConfig } from './config.js';
import { compileEvaluation, evaluateModel } from '../eval/evaluate.js';
import { createBatchLoader } from './loader.js';
import { IMAGE_BYTES } from '../image/preprocess.js';
import { planSteps, revise, testSecondsAt, typicalStepSeconds, type Plan, type PlanInput, type TestTiming } from './plan.js';
import { oneCycle, refit, scheduledLr, type LrSchedule } from './schedule.js';
import { createParallelTrainer, trainingThreads } from './parallel.js';
import { createTrainer } from './step.js';

export interface StepProgress {
  epoch: number;
  epochs: number;
  step: number;
  steps: number;
  loss: number;
  accuracy: number;
  lr: number;
  imagesPerSecond: number;
}

export interface TrainEvents {
  /** `config`: the run's own (a resumed run's is its checkpoint's). */
  /** `threads`: how many train (train/parallel.ts); `backend.reason` then ends with "; N training threads". */
  onStart?(info: { backend: BackendInfo; threads: number; model: string; epochs: number; trainImages: number; testImages: number; steps: number; parameters: number; config: TrainConfig; resumedAt?: { epoch: number; step: number } }): void;
  /** On webgpu, after the programs of a step and of the test pass were compiled in parallel, before the first step. */
  onCompile?(info: { programs: number; seconds: number }): void;
  onStep?(progress: StepProgress): void;
  onEpoch?(record: EpochRecord): void;
  /**
   * A run with a time limit: the epochs that fit, once measured early in the first epoch, and
   * again whenever a later plan (after each epoch of the warm-up, or a check that finds the run
   * behind) changes them.
   */
  onPlan?(plan: TimePlan): void;
}

export interface TimePlan extends Plan {
  limitSeconds: number;
  maxEpochs: number;
  stepsPerEpoch: number;
  /** Seconds a step, as measured for this plan. */
  stepSeconds: number;
  /** Epochs finished and steps into the next when it was made. */
  atEpoch: number;
  atStep: number;
}

export interface TrainOptions extends TrainEvents {
  signal?: AbortSignal;
  /** Continue the run saved in `config.out/checkpoint` (its config wins). */
  resume?: boolean;
  /** Stop (with a checkpoint, as Ctrl-C does) after this many steps in this call: for tests. */
  maxSteps?: number;
  /**
   * A run with a time limit checks within an epoch, at most this often (wall seconds; default
   * 10) and every tenth of an epoch at most, that it still keeps to its limit: 0 in tests.
   */
  limitCheckSeconds?: number;
  packageVersion?: string;
}

export interface TrainResult {
  out: string;
  metadata: ModelMetadata;
  history: EpochRecord[];
}

// A run planned to a time limit keeps this share of the time left in hand (plan.ts, margin), and
// after its warm-up is lengthened only when at least this fraction more steps fit: so that swings
// in speed of a few percent (a CPU's from one check to the next: ±5% on a 2-core machine) do not
// re-plan it back and forth. The margin shrinks with the time left and the run is lengthened again
// as it frees 1% of the steps; the rest is unspent (a 20-minute CPU run ended about 1 minute early).
const PLAN_MARGIN = 0.05;
const LENGTHEN_AT = 0.01;
// A run planned to a time limit times a test pass on this many test images before it has timed a whole one.
const SLICE_IMAGES = 1000;

// How often the loss is read back from the device for the progress display: reading syncs the
// backend, which costs a GPU its pipelining.
const READ_EVERY = 10;

/**
 * Train a model end to end: backend, data, model, the epoch loop with augmentation in a worker,
 * a checkpoint and a history row + curves picture per epoch, then the final model with its
 * metadata in `config.out`. Interrupting (signal) saves a checkpoint and throws ABORTED.
 */
export async function trainModel(requested: TrainConfig, options: TrainOptions = {}): Promise<TrainResult> {
  // ---- setup
  const callStart = performance.now();
  const checkpoint = options.resume ? await loadCheckpoint(requested.out) : undefined;
  // A resumed run keeps its recipe; only where it lives and what runs it may change. Parsing
  // fills options added since the checkpoint was written with their defaults (cutout: off).
  let config: TrainConfig = checkpoint ? parseTrainConfig({ ...checkpoint.state.config, backend: requested.backend, workers: requested.workers, out: requested.out }, `${join(requested.out, 'checkpoint')} config`) : requested;
  if (config.init !== undefined && resolve(config.init) === resolve(config.out)) {
    // The run writes its history, curves and checkpoint into --out as it goes: the model it starts from would be mixed with them.
    throw new CifarError('USAGE', `--init ${config.init}: --out must be another folder (the run writes its history and checkpoint there as it trains)`, { hint: 'train into a new folder, then move it' });
  }
  const folder = datasetPath(config.data);
  const dataStats = await loadStats(folder);
  const backend = await initBackend(config.backend);
  // --init: the saved model's weights (a fresh run; a resumed one has its own) and, always, its
  // input normalisation, which its weights were trained for.
  const init: InitModel | undefined = checkpoint ? checkpoint.state.init : config.init !== undefined ? await loadInitModel(config.init, config.model) : undefined;
  const stats: Normalization = init?.normalization ?? dataStats;
  await mkdir(config.out, { recursive: true }).catch((err) => {
    throw fromSystemError(err, config.out);
  });

  // ---- data
  const train = await loadSplit(folder, 'train', { limit: config.limit });
  const test = await loadSplit(folder, 'test', { limit: config.testLimit });
  const steps = stepsPerEpoch(train.count, config.batchSize);
  // A run planned to a time limit may end within an epoch: its checkpoint says where.
  let totalSteps = checkpoint?.state.plan?.totalSteps ?? steps * config.epochs;
  // The learning rate's schedule: one cycle over the steps, re-fitted to each new plan's.
  let schedule: LrSchedule = checkpoint?.state.plan?.schedule ?? oneCycle(totalSteps, config.warmup);
  /** Steps of epoch `e` (0-based): all, but fewer in a planned run's last one. */
  const epochEnd = (e: number) => Math.max(0, Math.min(steps, totalSteps - e * steps));

  // ---- model
  const model = buildModel(config.model, { seed: config.seed });
  if (init?.weights) {
    try {
      model.setWeights(init.weights);
    } catch (err) {
      model.dispose();
      throw new CifarError('MODEL_INVALID', `--init ${config.init}: its weights do not fit a ${config.model} model (${String((err as Error).message).split('\n')[0]})`);
    } finally {
      tf.dispose(init.weights);
    }
  }
  const parameters = countParams(model).trainable;
  // Where the input kernel runs (webgpu), it crops and flips too: the loader only shuffles and copies.
  const cropOnDevice = normalizesOnDevice() && (config.cropPadding > 0 || config.flip);
  const mixing = plansMixing(config);
  // Steps of the run whose batches are mixed: its first ones, up to --mix-until.
  let mixSteps = checkpoint?.state.plan?.mixSteps ?? Math.round(totalSteps * config.mixUntil);
  const trainerOptions = { ...config, mean: stats.mean, std: stats.std, classes: CLASSES.length, crops: cropOnDevice, mix: mixing };
  // On the CPU backends, a thread a core, each training a share of every batch (train/parallel.ts).
  const threads = trainingThreads(config.workers, backend.name, config.batchSize, availableParallelism());
  const parallel = threads > 1 ? createParallelTrainer(model, trainerOptions, { ranks: threads, backend: backend.name as 'wasm' | 'cpu', model: config.model, seed: config.seed }) : undefined;
  const trainer = parallel ?? createTrainer(model, trainerOptions);
  /** A test pass of the model as it is now: shared between the training threads too, where there are several. */
  const evaluate = (data: LabelledImages) => (parallel ? parallel.evaluate(data, stats) : evaluateModel(model, data, stats));
  const backendDetail = threads > 1 ? `${backend.reason}; ${threads} training threads` : backend.reason;
  const state: TrainState = checkpoint
    ? { ...checkpoint.state, config }
    : { config, epoch: 0, step: 0, partial: { lossSum: 0, correct: 0, seen: 0, seconds: 0 }, history: [], trainSeconds: 0, ...(init ? { init: { version: init.version, normalization: init.normalization } } : {}) };
  if (checkpoint) {
    try {
      trainer.restore(checkpoint.arrays);
    } catch (err) {
      trainer.dispose();
      model.dispose();
      throw new CifarError('DATASET_CORRUPT', `${join(config.out, 'checkpoint')} does not fit a ${config.model} model: ${(err as Error).message}`, {
        hint: 'start the run again without --resume',
      });
    }
  }
  // The run's wall time: what earlier calls spent up to their last checkpoint, plus this call.
  const wallBefore = state.wallSeconds ?? 0;
  const wall = () => wallBefore + (performance.now() - callStart) / 1000;
  options.onStart?.({ backend: { ...backend, reason: backendDetail }, threads, model: config.model, epochs: config.epochs, trainImages: train.count, testImages: test.count, steps, parameters, config, ...(checkpoint ? { resumedAt: { epoch: state.epoch, step: state.step } } : {}) });
  const loader = createBatchLoader({
    images: train.images,
    labels: train.labels,
    count: train.count,
    batchSize: config.batchSize,
    seed: config.seed,
    cropPadding: config.cropPadding,
    flip: config.flip,
    cutout: config.cutout,
    cropOnDevice,
    ...(mixing ? { mixup: config.mixup, cutmix: config.cutmix, mixSteps } : {}),
  });

  const compileStart = performance.now();
  const programs = (await trainer.precompile(config.batchSize)) + (await compileEvaluation(model, stats, test.count));
  if (programs > 0) options.onCompile?.({ programs, seconds: (performance.now() - compileStart) / 1000 });

  // ---- time limit: the epochs that fit, from speeds measured in this run
  const limitSeconds = config.timeLimit;
  const maxEpochs = state.plan?.maxEpochs ?? config.epochs;
  // The last test pass's time and the last epoch's checkpoint's; before the first test pass, a
  // slice of the test set timed once and scaled. Each test time comes with the pace of the steps
  // then, and is planned scaled to the pace now (testSecondsAt).
  const measured: { test?: TestTiming; overheadSeconds: number } = { overheadSeconds: 0 };
  const passes = config.ema > 0 ? 2 : 1;
  /** Times the slice of the test set, the first time only, at steps of `stepSeconds`. */
  const timeTestSlice = async (stepSeconds: number) => {
    if (measured.test !== undefined) return;
    const n = Math.min(test.count, SLICE_IMAGES);
    const start = performance.now();
    await evaluate({ images: test.images.subarray(0, n * IMAGE_BYTES), labels: test.labels.subarray(0, n), count: n });
    measured.test = { seconds: (passes * ((performance.now() - start) / 1000) * test.count) / n, stepSeconds };
  };
  const planInput = (limit: number, stepSeconds: number): PlanInput => {
    const testSeconds = testSecondsAt(measured.test!, stepSeconds);
    return {
      limitSeconds: limit,
      elapsedSeconds: wall(),
      maxEpochs,
      epoch: state.epoch,
      step: state.step,
      steps,
      stepSeconds,
      testEvery: config.testEvery,
      testSeconds,
      epochOverheadSeconds: measured.overheadSeconds,
      finalSeconds: testSeconds / passes + measured.overheadSeconds + 1,
      margin: PLAN_MARGIN,
    };
  };
  const adopt = (p: Plan, stepSeconds: number) => {
    if (limitSeconds === undefined) return;
    const changed = state.plan === undefined || p.steps !== totalSteps;
    config = { ...config, epochs: p.epochs };
    state.config = config;
    totalSteps = p.steps;
    // The steps trained so far keep the mixing and the learning rates they had.
    const trained = state.epoch * steps + state.step;
    schedule = refit(schedule, trained, totalSteps, config.warmup);
    mixSteps = Math.max(Math.round(totalSteps * config.mixUntil), Math.min(trained, mixSteps));
    state.plan = { maxEpochs, stepSeconds, totalSteps, mixSteps, schedule };
    loader.setMixSteps(mixSteps);
    if (changed) options.onPlan?.({ ...p, limitSeconds, maxEpochs, stepsPerEpoch: steps, stepSeconds, atEpoch: state.epoch, atStep: state.step });
  };
  /**
   * Plans the run again from the speeds measured, `recent` (seconds a step since the last check)
   * and `steady` (since the call's first plan): always when `always` (the first plan, and after
   * each epoch of the warm-up); otherwise shorter when it falls behind at the recent pace, longer
   * when at least LENGTHEN_AT more of its steps fit at both (plan.ts, revise).
   */
  const replan = (recent: number, steady: number, always: boolean) => {
    if (limitSeconds === undefined) return;
    const input = planInput(limitSeconds, recent);
    if (always || state.plan === undefined) return adopt(planSteps(input), recent);
    const revised = revise(totalSteps, input, planInput(limitSeconds, steady), LENGTHEN_AT);
    if (revised) adopt(revised.plan, revised.stepSeconds);
  };
  // First planned after this many steps of an epoch, timed from the end of its first one (which
  // may carry one-time costs); the plan is made again after each epoch while the learning rate
  // warms up (changing the number of epochs then only bends the warm-up's slope a little). After
  // that, at each epoch's end and, within an epoch, every this many steps and limitCheckSeconds
  // (so that a long epoch, a CPU's, cannot carry the run past its limit), it is shortened when
  // the run falls behind and lengthened when it is well ahead; the decay of the learning rate
  // then goes on from where it stands over the steps now planned (schedule.ts, refit).
  const calibrationSteps = Math.min(50, Math.max(2, Math.ceil(steps * 0.1)));
  const checkMs = (options.limitCheckSeconds ?? 10) * 1000;
  const inWarmup = () => state.epoch * steps + state.step < schedule.warmSteps;
  // Seconds a step in each epoch this call finished.
  const stepTimes: number[] = [];
  // Training seconds and steps since this call's first plan, checks and test passes left out: the
  // steady pace a check weighs against the recent one.
  const paced = { seconds: 0, steps: 0 };

  let stepsThisCall = 0;
  // The files of the last finished epoch (history, curves, checkpoint), written to disk while the
  // next epoch trains; each write waits for the one before.
  let saving: Promise<unknown> = Promise.resolve();
  const interrupted = async () => {
    await saving;
    state.wallSeconds = wall();
    await saveCheckpoint(config.out, state, trainer.stateTensors());
    throw new CifarError('ABORTED', `training interrupted at epoch ${state.epoch + 1}, step ${state.step}; checkpoint saved in ${join(config.out, 'checkpoint')}`, {
      hint: `resume with: cifar train --resume --out ${config.out}`,
    });
  };

  try {
    // ---- loop
    for (; state.epoch < config.epochs; ) {
      const epoch = state.epoch;
      let lossSum = tf.scalar(state.partial.lossSum);
      let correct = tf.scalar(state.partial.correct);
      let seen = state.partial.seen;
      let seconds = state.partial.seconds;
      let since = performance.now();
      const waitedBefore = loader.waitedSeconds();
      // The progress read in flight: it is not awaited, so the device's queue never drains for it.
      let reading: Promise<void> = Promise.resolve();
      let epochSteps = 0;
      // The learning rate of the epoch's last step so far, for its record.
      let lastLr = scheduledLr(schedule, epoch * steps + Math.max(0, state.step - 1), config.lr);
      let calibrationStart = 0;
      // Checked against the limit every calibrationSteps steps and checkMs after the last check
      // (or the epoch's start, or its first plan), at the pace of the steps since then: what the
      // machine does now (a busier one is slower) says more of the rest of the run than the epoch's mean.
      const lastCheck = { at: since, steps: 0 };
      /** The seconds and steps since the last check, added to the steady pace's. */
      const sinceCheck = () => {
        const window = { seconds: (performance.now() - lastCheck.at) / 1000, steps: epochSteps - lastCheck.steps };
        paced.seconds += window.seconds;
        paced.steps += window.steps;
        return window;
      };
      /** Runs `f` (a measurement) outside of the epoch's training time. */
      const untimed = async <T>(f: () => Promise<T>): Promise<T> => {
        const start = performance.now();
        const result = await f();
        since += performance.now() - start;
        return result;
      };
      for await (const batch of loader.epoch(epoch, state.step, epochEnd(epoch))) {
        // Prefetched batches resolve at once, so awaiting them never reaches the event loop;
        // yield to it so that Ctrl-C (a signal handler) is seen between steps.
        await new Promise((resolve) => setImmediate(resolve));
        if (options.signal?.aborted || (options.maxSteps !== undefined && stepsThisCall >= options.maxSteps)) {
          await reading;
          seconds += (performance.now() - since) / 1000;
          const [lossNow, correctNow] = await readPair(lossSum, correct);
          state.partial = { lossSum: lossNow, correct: correctNow, seen, seconds };
          state.trainSeconds += (performance.now() - since) / 1000;
          lossSum.dispose();
          correct.dispose();
          return await interrupted();
        }
        const lr = scheduledLr(schedule, epoch * steps + state.step, config.lr);
        lastLr = lr;
        const out = guardMemory(() => trainer.step(batch, lr), config, backend.name);
        const [l, c] = [lossSum.add(out.lossSum), correct.add(out.correct)];
        [lossSum, correct].forEach((t) => t.dispose());
        out.lossSum.dispose();
        out.correct.dispose();
        [lossSum, correct] = [l as tf.Scalar, c as tf.Scalar];
        seen += batch.size;
        state.step++;
        stepsThisCall++;
        epochSteps++;
        if (limitSeconds !== undefined && state.plan === undefined && (epochSteps === 1 || epochSteps === 1 + calibrationSteps)) {
          // Timed between two reads, each waiting for the device to finish the steps before it.
          await readPair(lossSum, correct);
          if (epochSteps === 1) calibrationStart = performance.now();
          else {
            const stepSeconds = (performance.now() - calibrationStart) / 1000 / calibrationSteps;
            await untimed(() => timeTestSlice(stepSeconds));
            replan(stepSeconds, stepSeconds, true);
            Object.assign(lastCheck, { at: performance.now(), steps: epochSteps });
          }
        } else if (limitSeconds !== undefined && state.plan !== undefined && state.step < epochEnd(epoch) && epochSteps - lastCheck.steps >= calibrationSteps && performance.now() - lastCheck.at >= checkMs) {
          // Timed up to a read that waits for the device.
          await readPair(lossSum, correct);
          const window = sinceCheck();
          const recent = window.seconds / window.steps;
          // A resumed run's first check: its test slice is timed here.
          await untimed(() => timeTestSlice(recent));
          Object.assign(lastCheck, { at: performance.now(), steps: epochSteps });
          replan(recent, paced.seconds / paced.steps, false);
        }
        const onStep = options.onStep;
        if (onStep && (state.step % READ_EVERY === 0 || state.step >= epochEnd(epoch))) {
          // Reported when the device gets there (reads land in queue order), with the rate up to then.
          const at = { epoch: epoch + 1, epochs: config.epochs, step: state.step, steps: epochEnd(epoch), lr, seen };
          const before = reading;
          const read = readPair(lossSum, correct);
          reading = Promise.all([before, read]).then(([, [l, c]]) => {
            onStep({ ...at, loss: l / at.seen, accuracy: c / at.seen, imagesPerSecond: at.seen / (seconds + (performance.now() - since) / 1000) });
          });
          // A failure is thrown where the read is awaited; until then it is not an unhandled rejection.
          reading.catch(() => undefined);
        }
        // A plan made within this epoch may end the run in it.
        if (state.step >= epochEnd(epoch)) break;
      }
      await reading;
      // Steps this epoch had: all of them, or fewer as the last of a planned run.
      const ended = state.step;
      const [lossTotal, correctTotal] = await readPair(lossSum, correct);
      const trainLoss = lossTotal / Math.max(1, seen);
      const trainAccuracy = correctTotal / Math.max(1, seen);
      lossSum.dispose();
      correct.dispose();
      // A GPU error (a shader that did not compile, a failed validation) leaves wrong numbers
      // behind without an exception: stop before they reach the history or a checkpoint.
      if (backend.name === 'webgpu') assertNoWebGpuErrors(`in epoch ${epoch + 1}`, 'the last checkpoint is from before this epoch');
      seconds += (performance.now() - since) / 1000;
      state.trainSeconds += (performance.now() - since) / 1000;
      if (state.plan !== undefined) sinceCheck();

      // ---- evaluation (every config.testEvery epochs and after the last)
      const tested = (epoch + 1) % config.testEvery === 0 || epoch + 1 === config.epochs;
      // With a weight average the test figures are the average's (the model to be saved), and
      // the live weights' accuracy is recorded beside them.
      const testStart = performance.now();
      const ev = tested ? await trainer.withAverage(() => evaluate(test)) : undefined;
      const live = tested && config.ema > 0 ? await evaluate(test) : undefined;
      if (tested) measured.test = { seconds: (performance.now() - testStart) / 1000, stepSeconds: seconds / Math.max(1, ended) };
      const record: EpochRecord = {
        epoch: epoch + 1,
        trainLoss,
        trainAccuracy,
        testLoss: ev ? ev.loss : null,
        testAccuracy: ev ? ev.accuracy : null,
        lr: lastLr,
        imagesPerSecond: seen / seconds,
        seconds,
        loaderWaitSeconds: loader.waitedSeconds() - waitedBefore,
        ...(config.ema > 0 ? { liveTestAccuracy: live ? live.accuracy : null } : {}),
        ...(mixing ? { mixed: Math.min(ended, mixedStepsOfEpoch(mixSteps, steps, epoch)) / Math.max(1, ended) } : {}),
        ...(ended < steps ? { fraction: ended / steps } : {}),
      };
      state.history.push(record);
      state.epoch++;
      state.step = 0;
      state.partial = { lossSum: 0, correct: 0, seen: 0, seconds: 0 };
      // Planned again before the epoch's checkpoint records the plan, from this call's typical
      // step time (the mean of its epochs', the first left out once there are others: one slow
      // epoch moves it a little, a slower device all the way): in the warm-up, always; after it,
      // when the run is behind or well ahead (replan). Not after its last epoch.
      if (limitSeconds !== undefined && state.epoch < config.epochs) {
        stepTimes.push(seconds / Math.max(1, ended));
        const stepSeconds = typicalStepSeconds(stepTimes);
        await timeTestSlice(stepSeconds);
        replan(stepSeconds, stepSeconds, inWarmup());
      }
      const overheadStart = performance.now();
      await saving;
      state.wallSeconds = wall();
      const snapshot = await snapshotCheckpoint(state, trainer.stateTensors());
      measured.overheadSeconds = (performance.now() - overheadStart) / 1000;
      // Both writes run to their end before a failure of either is thrown: none is left behind.
      saving = Promise.allSettled([writeHistory(config.out, [...state.history], `${config.model} on ${backend.name}`), writeCheckpoint(config.out, snapshot)]).then((results) => {
        for (const r of results) if (r.status === 'rejected') throw r.reason;
      });
      // A failed write is thrown where `saving` is awaited (next epoch, interruption or the end).
      saving.catch(() => undefined);
      options.onEpoch?.(record);
    }
    await saving;

    // ---- final model
    trainer.adoptAverage();
    // Stored as float16: measure the weights the file will hold.
    if (config.weights === 'float16') await roundWeightsToFloat16(model);
    const ev = await evaluate(test);
    const perClassAccuracy = Object.fromEntries(
      CLASSES.map((name, c) => {
        let n = 0;
        let ok = 0;
        for (let i = 0; i < test.count; i++) if (test.labels[i] === c) { n++; if (ev.predictions[i] === c) ok++; }
        return [name, n === 0 ? 0 : ok / n];
      }),
    );
    const metadata = await saveModel(config.out, model, {
      name: config.out.split(/[\\/]/).filter(Boolean).pop() ?? 'model',
      architecture: config.model,
      parameters,
      classes: [...CLASSES],
      normalization: { mean: [...stats.mean], std: [...stats.std] },
      testAccuracy: ev.accuracy,
      perClassAccuracy,
      epochs: config.epochs,
      steps: totalSteps,
      batchSize: config.batchSize,
      trainingSeconds: Math.round(state.trainSeconds),
      wallSeconds: Math.round(wall()),
      backend: backend.name,
      backendDetail,
      datasetChecksum: await datasetChecksum(folder),
      createdAt: new Date().toISOString(),
      packageVersion: options.packageVersion ?? 'unknown',
      config: { ...config, testImages: test.count },
      ...(state.init ? { initVersion: state.init.version } : {}),
    }, { weights: config.weights });
    return { out: config.out, metadata, history: state.history };
  } finally {
    // Nothing is left writing behind an error.
    await saving.catch(() => undefined);
    await loader.close();
    trainer.dispose();
    model.dispose();
  }
}

/**
 * Both running sums in one read (one wait for the device instead of two). The values are those
 * of the moment of the call, whatever runs after it.
 */
function readPair(a: tf.Scalar, b: tf.Scalar): Promise<[number, number]> {
  const both = tf.stack([a, b]);
  return both.data().then((v) => {
    both.dispose();
    return [v[0]!, v[1]!];
  });
}

/** Rounds every weight of the model to the nearest float16 value, in place. */
async function roundWeightsToFloat16(model: tf.LayersModel): Promise<void> {
  const rounded = await Promise.all(model.getWeights().map(async (w) => tf.tensor(roundToFloat16((await w.data()) as Float32Array), w.shape)));
  model.setWeights(rounded);
  tf.dispose(rounded);
}

/** What a run started from a saved model (--init) keeps of it, and, for a fresh run, its weights (the caller disposes them). */
type InitModel = NonNullable<TrainState['init']> & { weights?: tf.Tensor[] };

/**
 * The weights (batch-norm statistics included) and input normalisation of the saved model at
 * `dir`, which must be a `architecture` model: a one-line error otherwise.
 */
async function loadInitModel(dir: string, architecture: string): Promise<InitModel> {
  const { model, metadata } = await loadModel(dir).catch((err: unknown) => {
    throw isCifarError(err) ? new CifarError(err.code, `--init: ${err.message}`, { hint: 'pass --init a folder that `cifar train` saved a model in' }) : err;
  });
  try {
    if (metadata.architecture !== architecture) {
      throw new CifarError('USAGE', `--init ${dir}: a ${metadata.architecture} model cannot start a ${architecture} run`, { hint: `pass --model ${metadata.architecture}, or another model folder` });
    }
    // Copies: the loaded model is disposed below.
    const weights = model.getWeights().map((w) => w.clone());
    return { version: metadata.version, normalization: { mean: [...metadata.normalization.mean], std: [...metadata.normalization.std] }, weights };
  } finally {
    model.dispose();
  }
}

/** sha256 over the per-file checksums of the dataset's manifest (or its files when absent). */
async function datasetChecksum(folder: string): Promise<string | null> {
  try {
    const manifest = JSON.parse(await readFile(join(folder, 'manifest.json'), 'utf8')) as { sha256: Record<string, string> };
    const text = Object.entries(manifest.sha256).sort().map(([f, h]) => `${h}  ${f}`).join('\n');
    return createHash('sha256').update(text).digest('hex');
  } catch {
    return null;
  }
}

/** history.jsonl and the curves (SVG and PNG), each replaced atomically. */
async function writeHistory(out: string, history: EpochRecord[], title: string): Promise<void> {
  const svg = curvesSvg(history, title);
  const files: [string, string | Buffer][] = [
    ['history.jsonl', history.map((r) => JSON.stringify(r)).join('\n') + '\n'],
    ['curves.svg', svg],
    ['curves.png', await sharp(Buffer.from(svg)).png().toBuffer()],
  ];
  for (const [name, data] of files) await writeFileAtomic(join(out, name), data, `writing ${join(out, name)}`);
}

/**
 * wasm has a 4 GB address space: ResNet-18's activations at batch 128 do not fit, and the
 * failure is a bare RuntimeError from inside the module. Say what it means and what to do.
 */
function guardMemory<T>(fn: () => T, config: TrainConfig, backend: string): T {
  try {
    return fn();
  } catch (err) {
    if (/memory access out of bounds|out of memory|Array buffer allocation failed/i.test(String((err as Error)?.message))) {
      throw new CifarError('OUT_OF_MEMORY', `${config.model} at batch size ${config.batchSize} does not fit in ${backend} memory`, {
        hint: 'use a smaller --batch-size (resnet18 on wasm: 32) or a GPU backend',
        cause: err,
      });
    }
    throw err;
  }
}
