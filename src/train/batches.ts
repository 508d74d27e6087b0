import type { CropParams } from '../image/crop.js';
import { IMAGE_BYTES } from '../image/preprocess.js';
import { mulberry32, seededPermutation } from '../data/shuffle.js';
import type { SampleMix } from '../image/mix.js';
import { drawAugmentParams, drawMix, gatherAugmented } from './augment.js';

export interface BatchPlan {
  /** Training images back to back (HWC bytes) and their labels. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  batchSize: number;
  seed: number;
  cropPadding: number;
  flip: boolean;
  /** Side of the cutout square (0 = off); absent in plans from before cutout, meaning off. */
  cutout?: number;
  /**
   * Leave the crop and flip to the device (the webgpu input kernel): batches hold the images as
   * they are, with the same draws as `crops`. Absent: cropped and flipped here.
   */
  cropOnDevice?: boolean;
  /** α of MixUp and of CutMix (0 or absent: off); with both, each mixed batch is one or the other. */
  mixup?: number;
  cutmix?: number;
  /** Mix only the batches before this step of the run (counted from its first); absent: all. */
  mixSteps?: number;
}

export interface Batch {
  images: Uint8Array;
  labels: Uint8Array;
  size: number;
  /** Centres of the cutout squares, cut from the normalised batch by the trainer (only when the plan's cutout > 0). */
  cutout?: { cy: Int32Array; cx: Int32Array };
  /** The crop and flip draws, for the normalizer to apply (only with the plan's `cropOnDevice`, and a crop or flip to do). */
  crops?: CropParams;
  /** How the batch mixes its images in pairs (image/mix.ts), for the trainer to apply; absent: not mixed. */
  mix?: SampleMix;
}

/** Steps in one epoch: full batches only (a ragged last batch would skew batch-norm statistics). */
export function stepsPerEpoch(count: number, batchSize: number): number {
  return Math.max(1, Math.floor(count / batchSize));
}

/** Whether the plan mixes any batches (MixUp or CutMix on). */
export function plansMixing(plan: Pick<BatchPlan, 'mixup' | 'cutmix'>): boolean {
  return (plan.mixup ?? 0) > 0 || (plan.cutmix ?? 0) > 0;
}

/**
 * How many of epoch `epoch`'s first steps are mixed when the run mixes its first `mixSteps`
 * steps (`steps` an epoch): the loader's rule, and the history's `mixed` share.
 * @example mixedStepsOfEpoch(624, 78, 7); // 78 — mixedStepsOfEpoch(624, 78, 8); // 0
 */
export function mixedStepsOfEpoch(mixSteps: number, steps: number, epoch: number): number {
  return Math.max(0, Math.min(steps, mixSteps - epoch * steps));
}

// Mix seed, epoch and step into one 32-bit seed so every batch's randomness is a pure function
// of its position: a resumed run draws exactly what an uninterrupted one would.
function mix(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x01000193);
    h ^= h >>> 13;
  }
  return h >>> 0;
}

/**
 * The augmented batch number `step` of epoch `epoch`: a seeded shuffle of the training set per
 * epoch, then random crop + flip (+ the cutout centres) per image. Deterministic in (seed, epoch, step).
 * With `cropOnDevice`, the same draws come with the batch (`crops`) instead of being applied here.
 * With mixup or cutmix on, the batch's mix (`mix`) comes from a generator of its own, so the
 * other draws are those of the same run without mixing.
 */
export function makeBatch(plan: BatchPlan, epoch: number, step: number, order = epochOrder(plan, epoch)): Batch {
  const size = Math.min(plan.batchSize, plan.count);
  const indices = order.subarray(step * size, step * size + size);
  const images = new Uint8Array(size * IMAGE_BYTES);
  const labels = new Uint8Array(size);
  for (let i = 0; i < size; i++) labels[i] = plan.labels[indices[i]!]!;
  const cutout = plan.cutout ?? 0;
  const random = mulberry32(mix(plan.seed, epoch, step, 1));
  let crops: CropParams | undefined;
  let drawn;
  if (plan.cropOnDevice) {
    // The draws of gatherAugmented, in its order from the same generator: the same batches.
    drawn = drawAugmentParams(size, random, plan.cropPadding, plan.flip, cutout);
    for (let i = 0; i < size; i++) images.set(plan.images.subarray(indices[i]! * IMAGE_BYTES, (indices[i]! + 1) * IMAGE_BYTES), i * IMAGE_BYTES);
    if (plan.cropPadding > 0 || plan.flip) crops = { dy: drawn.dy, dx: drawn.dx, mirror: drawn.mirror };
  } else {
    drawn = gatherAugmented(plan.images, indices, images, random, plan.cropPadding, plan.flip, cutout);
  }
  const alphas = { mixup: plan.mixup ?? 0, cutmix: plan.cutmix ?? 0 };
  const mixed = plansMixing(plan) && step < mixedStepsOfEpoch(plan.mixSteps ?? Infinity, stepsPerEpoch(plan.count, plan.batchSize), epoch);
  const sampleMix = mixed ? drawMix(mulberry32(mix(plan.seed, epoch, step, 2)), alphas) : undefined;
  return { images, labels, size, ...(cutout > 0 ? { cutout: { cy: drawn.cy, cx: drawn.cx } } : {}), ...(crops ? { crops } : {}), ...(sampleMix ? { mix: sampleMix } : {}) };
}

/** The shuffled order of the training set in an epoch. */
export function epochOrder(plan: Pick<BatchPlan, 'count' | 'seed'>, epoch: number): Uint32Array {
  return seededPermutation(plan.count, mix(plan.seed, epoch, 0));
}
