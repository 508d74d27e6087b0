import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { CifarError } from '../errors.js';
import { parseDuration } from './plan.js';

/**
 * Everything a training run needs, with its default. A config file is applied over these
 * defaults, then command-line flags over the file.
 */
export const TrainConfigSchema = z
  .object({
    /** Model preset (see `cifar train --help` for the list). */
    model: z.string().default('resnet18-w4'),
    /**
     * A saved model folder (one `cifar train` wrote) whose weights and batch-norm statistics the run
     * starts from instead of random ones: fine-tuning, or more epochs for a finished model. It must
     * be a `model` model; the run keeps its input normalisation. The recipe is the run's own.
     */
    init: z.string().min(1).optional(),
    /** Passes over the training set (with `timeLimit`: the most; a run records the number planned). */
    epochs: z.number().int().positive().default(30),
    /**
     * Wall-time budget of the whole run in seconds (set-up, compilation and test passes included):
     * the run has as many epochs as fit, at most `epochs`, and its learning-rate schedule ends with
     * them. Planned from the step time measured early in the run, again after each epoch of the
     * warm-up, and after it only shortened when the run falls behind. Absent: exactly `epochs`. A
     * config file may also give it as the flag takes it ("10m", "1h30m").
     */
    timeLimit: z.preprocess((v) => (typeof v === 'string' ? (parseDuration(v) ?? v) : v), z.number().positive().optional()),
    /** Images per optimisation step. */
    batchSize: z.number().int().positive().default(128),
    /** Peak learning rate of the one-cycle schedule. */
    lr: z.number().positive().default(0.1),
    /** Fraction of the steps spent warming the learning rate up from lr/25 (one-cycle). */
    warmup: z.number().min(0).max(1).default(0.15),
    /** SGD momentum (Nesterov). */
    momentum: z.number().min(0).max(1).default(0.9),
    /** L2 weight decay on conv and dense kernels (not on batch-norm or biases). */
    weightDecay: z.number().min(0).default(5e-4),
    /** Label smoothing of the cross-entropy targets. */
    labelSmoothing: z.number().min(0).max(0.5).default(0.1),
    /** Random crop with this much zero padding (0 turns it off). */
    cropPadding: z.number().int().min(0).max(16).default(4),
    /** Random horizontal flips. */
    flip: z.boolean().default(true),
    /**
     * Cutout (DeVries & Taylor 2017): side in pixels of one square per image, centred anywhere on
     * it (clipped at the edges), set to the dataset mean after crop and flip; 0 turns it off.
     * The paper uses 16 on CIFAR-10.
     */
    cutout: z.number().int().min(0).max(32).default(0),
    /**
     * MixUp (Zhang et al. 2018): each batch's images mixed in pairs, w·one + (1 − w)·other, with
     * their targets in the same proportion, w ~ Beta(α, α) a batch; this is α (0.2 is common on
     * CIFAR; 0 turns it off).
     */
    mixup: z.number().min(0).max(100).default(0),
    /**
     * CutMix (Yun et al. 2019): a box of each image replaced by the same box of its pair's, the
     * targets in proportion to the areas, the box's area ~ Beta(α, α) a batch; this is α (the paper
     * uses 1; 0 turns it off). With mixup too, each batch gets one or the other, at even odds.
     */
    cutmix: z.number().min(0).max(100).default(0),
    /**
     * Mix (mixup, cutmix) only in this first fraction of the steps, then train on plain batches
     * (1: throughout). Mixing pays off over long runs; stopping it early gives a short run's
     * last epochs the images as they are (Yu et al. 2021, "mixup without hesitation").
     */
    mixUntil: z.number().gt(0).max(1).default(1),
    /**
     * Exponential moving average of the weights and batch-norm statistics, with this decay a step
     * (e.g. 0.999; 0: off). The test passes and the saved model use the average; with it on, the
     * history also records the test accuracy of the weights being trained (`liveTestAccuracy`).
     */
    ema: z.number().min(0).lt(1).default(0),
    /**
     * Threads that train on the CPU backends (wasm, cpu), each with a copy of the model and a share
     * of every batch (data-parallel; at least 16 images a share). "auto": one per CPU core there,
     * 1 on the others (a GPU, or tfjs-node's own threads).
     */
    workers: z.union([z.literal('auto'), z.number().int().positive()]).default('auto'),
    /** tfjs backend: auto, webgpu, wasm, cpu or tensorflow. */
    backend: z.enum(['auto', 'webgpu', 'wasm', 'cpu', 'tensorflow']).default('auto'),
    /** Data directory holding cifar-10-batches-bin/. */
    data: z.string().default('data'),
    /** Output folder of the model. */
    out: z.string().default('models/default'),
    /** Use only the first N training images (quick runs and tests). */
    limit: z.number().int().positive().optional(),
    /** Use only the first N test images for the per-epoch evaluation. */
    testLimit: z.number().int().positive().optional(),
    /**
     * Run the test pass after every Nth epoch and after the last (1: every epoch). Epochs without
     * one have no test figures in the history; the saved model is always tested.
     */
    testEvery: z.number().int().positive().default(1),
    /** Precision of the saved weights: float16 halves the file (the final test accuracy is measured with the rounded weights). */
    weights: z.enum(['float32', 'float16']).default('float32'),
    /** Seed of the data order, augmentation and initialisation. */
    seed: z.number().int().min(0).default(0),
  })
  .strict();

export type TrainConfig = z.infer<typeof TrainConfigSchema>;
export type TrainConfigInput = z.input<typeof TrainConfigSchema>;

/** Validate a config object, naming the first wrong key. */
export function parseTrainConfig(input: unknown, source = 'config'): TrainConfig {
  const parsed = TrainConfigSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    throw new CifarError('CONFIG_INVALID', `${source}: unknown key ${issue.keys.map((k) => `"${k}"`).join(', ')}`, {
      hint: `valid keys: ${Object.keys(TrainConfigSchema.shape).join(', ')}`,
    });
  }
  throw new CifarError('CONFIG_INVALID', `${source}: "${issue.path.join('.')}" ${issue.message.toLowerCase()}`);
}

/** Read a JSON config file (its keys are those of TrainConfigSchema). */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new CifarError('CONFIG_INVALID', `${path}: cannot read the config file`);
  }
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
    return value as Record<string, unknown>;
  } catch (err) {
    throw new CifarError('CONFIG_INVALID', `${path}: not a JSON object (${(err as Error).message})`);
  }
}

/** Defaults, then the config file, then the flags that were given. */
export async function resolveTrainConfig(file: string | undefined, flags: Record<string, unknown>): Promise<TrainConfig> {
  const fromFile = file ? await readConfigFile(file) : {};
  const given = Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined));
  return parseTrainConfig({ ...fromFile, ...given }, file ?? 'flags');
}
