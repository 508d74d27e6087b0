import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { CifarError, fromSystemError } from '../errors.js';
import type { ModelMetadata } from '../model/store.js';
import type { EpochRecord } from '../report/curves.js';
import type { TrainConfig } from './config.js';
import type { LrSchedule } from './schedule.js';

/** Where a run stands: enough to continue it exactly. */
export interface TrainState {
  config: TrainConfig;
  /** The epoch (0-based) and step within it that run next. */
  epoch: number;
  step: number;
  /** Running sums of the epoch in progress (a checkpoint can fall mid-epoch). */
  partial: { lossSum: number; correct: number; seen: number; seconds: number };
  history: EpochRecord[];
  /** Wall time spent training so far, across resumptions. */
  trainSeconds: number;
  /**
   * Wall time of the run so far, across resumptions: set-up, compilation, training, test passes
   * and checkpoints, up to the last checkpoint (absent in checkpoints written before it existed).
   */
  wallSeconds?: number;
  /** A run started from a saved model (--init): its version and the input normalisation it keeps. */
  init?: { version: string; normalization: ModelMetadata['normalization'] };
  /**
   * A run with a time limit: the most epochs it may have, the step time the plan last used, and
   * the steps planned in all (the config's `epochs` are the epochs they make, the last one
   * possibly partial), of which the first `mixSteps` are mixed, and the learning rate's schedule
   * as last fitted to them (absent in checkpoints before it: oneCycleLr's of `totalSteps`).
   * Absent until the run is first planned.
   */
  plan?: { maxEpochs: number; stepSeconds: number; totalSteps?: number; mixSteps?: number; schedule?: LrSchedule };
}

const STATE = 'state.json';
const TENSORS = 'tensors.bin';

interface TensorIndex {
  shapes: number[][];
}

/** What a checkpoint holds, taken at one moment: the state as text and the tensors back to back. */
export interface CheckpointSnapshot {
  stateJson: string;
  tensors: Float32Array;
}

/**
 * Take a checkpoint's contents now: the run state is serialised and the tensors are read from the
 * device (awaiting that read is the only wait for it), so training may go on while
 * `writeCheckpoint` puts them on disk.
 */
export async function snapshotCheckpoint(state: TrainState, tensors: tf.Tensor[]): Promise<CheckpointSnapshot> {
  const index: TensorIndex = { shapes: tensors.map((t) => t.shape) };
  const stateJson = JSON.stringify({ ...state, tensors: index }, null, 1);
  const arrays = await Promise.all(tensors.map((t) => t.data() as Promise<Float32Array>));
  const blob = new Float32Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    blob.set(a, at);
    at += a.length;
  }
  return { stateJson, tensors: blob };
}

/**
 * Write a snapshot into `<out>/checkpoint`, atomically: a new folder is written beside the old
 * one and swapped in. One write at a time per folder (the temporary names are per process).
 */
export async function writeCheckpoint(out: string, snapshot: CheckpointSnapshot): Promise<void> {
  const dir = join(out, 'checkpoint');
  const tmp = `${dir}.tmp-${process.pid}`;
  const old = `${dir}.old-${process.pid}`;
  try {
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    await writeFile(join(tmp, TENSORS), new Uint8Array(snapshot.tensors.buffer, snapshot.tensors.byteOffset, snapshot.tensors.byteLength));
    await writeFile(join(tmp, STATE), snapshot.stateJson);
    await rename(dir, old).catch(() => {});
    await rename(tmp, dir);
    await rm(old, { recursive: true, force: true });
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw fromSystemError(err, `saving checkpoint in ${dir}`);
  }
}

/**
 * Save the model's weights (trainable and batch-norm statistics, in model order), the optimizer's
 * velocities and the run state into `<out>/checkpoint`: `snapshotCheckpoint` then `writeCheckpoint`.
 */
export async function saveCheckpoint(out: string, state: TrainState, tensors: tf.Tensor[]): Promise<void> {
  await writeCheckpoint(out, await snapshotCheckpoint(state, tensors));
}

/** Read a checkpoint: the state and the saved arrays with their shapes. */
export async function loadCheckpoint(out: string): Promise<{ state: TrainState; arrays: { shape: number[]; values: Float32Array }[] }> {
  const dir = join(out, 'checkpoint');
  let raw: string;
  try {
    raw = await readFile(join(dir, STATE), 'utf8');
  } catch {
    throw new CifarError('USAGE', `--resume: no checkpoint in ${out}`, { hint: 'start the run without --resume' });
  }
  const damaged = (what: string) => new CifarError('DATASET_CORRUPT', `${dir}: the checkpoint is damaged (${what})`, { hint: 'start the run again without --resume' });
  let parsed: TrainState & { tensors: TensorIndex };
  try {
    parsed = JSON.parse(raw) as TrainState & { tensors: TensorIndex };
  } catch (err) {
    throw damaged(`${STATE}: ${(err as Error).message}`);
  }
  if (!Array.isArray(parsed?.tensors?.shapes)) throw damaged(`${STATE} has no tensor index`);
  const bytes = await readFile(join(dir, TENSORS)).catch((err) => {
    throw fromSystemError(err, join(dir, TENSORS));
  });
  const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  let at = 0;
  const arrays = parsed.tensors.shapes.map((shape) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = all.slice(at, at + n);
    at += n;
    return { shape, values };
  });
  if (at !== all.length) throw new CifarError('DATASET_CORRUPT', `${dir}: the checkpoint's tensors do not match its index`);
  const { tensors: _ignored, ...state } = parsed;
  return { state, arrays };
}
