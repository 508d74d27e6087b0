import type { EpochRecord } from './curves.js';
import { formatSeconds } from './format.js';

/** Column header of the per-epoch log. */
export function epochHeader(): string {
  return 'epoch  train loss  train acc  test loss  test acc        lr   img/s    time';
}

/** One fixed-column row per epoch (pure). */
export function formatEpoch(r: EpochRecord, epochs: number): string {
  return [
    `${r.epoch}/${epochs}`.padStart(5),
    r.trainLoss.toFixed(4).padStart(10),
    `${(r.trainAccuracy * 100).toFixed(2)}%`.padStart(9),
    (r.testLoss === null ? '—' : r.testLoss.toFixed(4)).padStart(9),
    (r.testAccuracy === null ? '—' : `${(r.testAccuracy * 100).toFixed(2)}%`).padStart(8),
    r.lr.toExponential(2).padStart(9),
    r.imagesPerSecond.toFixed(1).padStart(7),
    formatSeconds(r.seconds).padStart(7),
    ...(typeof r.liveTestAccuracy === 'number' ? [`(live weights ${(r.liveTestAccuracy * 100).toFixed(2)}%)`] : []),
    // The last epoch of a run planned to a time limit may be partial.
    ...(r.fraction !== undefined ? [`(${Math.round(r.fraction * 100)}% of an epoch)`] : []),
    // The train figures of mixed batches are the mixed targets' (lower than a plain batch's).
    ...(r.mixed !== undefined && r.mixed > 0 ? [r.mixed === 1 ? '(mixed)' : `(mixed ${Math.round(r.mixed * 100)}%)`] : []),
  ].join('  ');
}

/** The parts of a run's config that make its recipe (train/config.ts' TrainConfig has them all). */
export interface RecipeFields {
  epochs: number;
  batchSize: number;
  lr: number;
  warmup: number;
  momentum: number;
  weightDecay: number;
  labelSmoothing: number;
  cropPadding: number;
  flip: boolean;
  cutout: number;
  mixup: number;
  cutmix: number;
  mixUntil: number;
  ema: number;
  seed: number;
  /** Seconds: as many epochs as fit, at most `epochs`. */
  timeLimit?: number | undefined;
  /** The saved model the run starts from (--init). */
  init?: string | undefined;
}

/**
 * The recipe in one line, for the start of a run's log (pure); augmentations that are off are left out.
 * @example formatRecipe({ epochs: 50, batchSize: 256, lr: 0.2, warmup: 0.1, momentum: 0.9, weightDecay: 0.0005, labelSmoothing: 0.1, cropPadding: 4, flip: true, cutout: 16, mixup: 0, cutmix: 1, mixUntil: 0.8, ema: 0, seed: 0 })
 * // 'recipe: 50 epochs of batch 256, one-cycle lr 0.2 (10% warm-up), SGD Nesterov 0.9, weight decay 0.0005, label smoothing 0.1; crop (pad 4), flip, cutout 16, cutmix 1 (first 80% of the steps); seed 0'
 */
export function formatRecipe(c: RecipeFields): string {
  const pct = (f: number) => `${Math.round(f * 100)}%`;
  const augment = [
    c.cropPadding > 0 ? `crop (pad ${c.cropPadding})` : '',
    c.flip ? 'flip' : '',
    c.cutout > 0 ? `cutout ${c.cutout}` : '',
    [c.mixup > 0 ? `mixup ${c.mixup}` : '', c.cutmix > 0 ? `cutmix ${c.cutmix}` : ''].filter(Boolean).join(' or ') + (c.mixUntil < 1 && (c.mixup > 0 || c.cutmix > 0) ? ` (first ${pct(c.mixUntil)} of the steps)` : ''),
  ].filter(Boolean);
  const optimiser = [
    `${c.timeLimit === undefined ? `${c.epochs} epoch${c.epochs === 1 ? '' : 's'}` : `the epochs that fit in ${formatSeconds(c.timeLimit)} (at most ${c.epochs})`} of batch ${c.batchSize}`,
    `one-cycle lr ${c.lr} (${pct(c.warmup)} warm-up)`,
    `SGD Nesterov ${c.momentum}`,
    `weight decay ${c.weightDecay}`,
    `label smoothing ${c.labelSmoothing}`,
    ...(c.ema > 0 ? [`weight average ${c.ema}`] : []),
  ];
  return `recipe: ${optimiser.join(', ')}; ${augment.length > 0 ? augment.join(', ') : 'no augmentation'}; seed ${c.seed}${c.init === undefined ? '' : `; initial weights from ${c.init}`}`;
}

/** What formatPlan shows of a time plan (train/train.ts' TimePlan has it all). */
export interface PlanFields {
  /** Steps of the whole run, and of an epoch. */
  steps: number;
  stepsPerEpoch: number;
  maxEpochs: number;
  limitSeconds: number;
  seconds: number;
  fits: boolean;
  stepSeconds: number;
  atEpoch: number;
  atStep: number;
}

/**
 * A time plan in one line (pure): the epochs that fit, to two decimals when the last is partial.
 * @example formatPlan({ steps: 18424, stepsPerEpoch: 196, maxEpochs: 200, limitSeconds: 540, seconds: 539.8, fits: true, stepSeconds: 0.0277, atEpoch: 0, atStep: 21 })
 * // 'time limit 9m 00s: 94 of at most 200 epochs fit (18,424 steps of 27.7 ms; the run ends at about 9m 00s), planned at epoch 1 step 21'
 */
export function formatPlan(p: PlanFields): string {
  const at = p.atStep === 0 ? `after epoch ${p.atEpoch}` : `at epoch ${p.atEpoch + 1} step ${p.atStep}`;
  const steps = `${p.steps.toLocaleString('en-US')} steps of ${(p.stepSeconds * 1000).toFixed(1)} ms`;
  if (!p.fits) return `time limit ${formatSeconds(p.limitSeconds)}: not even the steps trained so far fit; the run stops now, after ${steps}, at about ${formatSeconds(p.seconds)}, planned ${at}`;
  const epochs = p.steps % p.stepsPerEpoch === 0 ? String(p.steps / p.stepsPerEpoch) : (p.steps / p.stepsPerEpoch).toFixed(2);
  const fit = p.steps === p.maxEpochs * p.stepsPerEpoch ? `all ${p.maxEpochs} epochs fit` : `${epochs} of at most ${p.maxEpochs} epochs fit`;
  return `time limit ${formatSeconds(p.limitSeconds)}: ${fit} (${steps}; the run ends at about ${formatSeconds(p.seconds)}), planned ${at}`;
}
