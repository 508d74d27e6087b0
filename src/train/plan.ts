/**
 * Planning a run to a time limit (`cifar train --time-limit`): how many epochs fit, from the
 * speeds measured so far. Pure; train.ts measures and calls it.
 */

export interface PlanInput {
  /** The whole run's wall-time budget, seconds. */
  limitSeconds: number;
  /** Wall time the run has spent so far (set-up and compilation included). */
  elapsedSeconds: number;
  /** The most epochs the run may have (--epochs). */
  maxEpochs: number;
  /** Epochs finished. */
  epoch: number;
  /** Steps finished in the epoch in progress (0 at an epoch's end). */
  step: number;
  /** Steps an epoch. */
  steps: number;
  /** Seconds a training step takes (measured). */
  stepSeconds: number;
  /** Test pass after every Nth epoch and after the last. */
  testEvery: number;
  /** Seconds one test pass takes (measured, or estimated before the first). */
  testSeconds: number;
  /** Seconds an epoch spends besides its steps and its test pass (checkpoint, history). */
  epochOverheadSeconds: number;
  /** Seconds after the last epoch: the final evaluation and saving the model. */
  finalSeconds: number;
  /**
   * The share of the time left that a plan keeps in hand (default 0): a run planned so has room
   * for small swings in speed before it projects past the limit.
   */
  margin?: number;
}

export interface Plan {
  /** Optimisation steps of the whole run: the most that fit, at least those already trained. */
  steps: number;
  /** The epochs they make, the last one partial unless `steps` is a whole number of epochs. */
  epochs: number;
  /** Projected wall time of the whole run with that many. */
  seconds: number;
  /** False when even stopping now ends past the limit. */
  fits: boolean;
}

/** A test pass's time as measured, with the pace of the training steps just before it. */
export interface TestTiming {
  seconds: number;
  /** Seconds a training step took when the test pass was timed. */
  stepSeconds: number;
}

/**
 * A test pass's expected time when steps take `stepSeconds`: the time measured, scaled by how much
 * slower (or faster) the steps have become since, as both share the machine. A test pass timed
 * before a machine got busy would otherwise be planned at its idle time.
 * @example testSecondsAt({ seconds: 10, stepSeconds: 0.3 }, 0.6) // 20
 */
export function testSecondsAt(timing: TestTiming, stepSeconds: number): number {
  return timing.stepSeconds > 0 && stepSeconds > 0 ? (timing.seconds * stepSeconds) / timing.stepSeconds : timing.seconds;
}

/** Epochs tested after `done` up to and including the last, `last`. */
function testPasses(done: number, last: number, every: number): number {
  if (last <= done) return 0;
  const multiples = Math.floor(last / every) - Math.floor(done / every);
  return multiples + (last % every === 0 ? 0 : 1);
}

/**
 * Projected wall time of the run if it has `totalSteps` steps in all: the steps left, the test
 * passes still to come (every Nth epoch and the last, partial or not), each epoch's overhead, the end.
 */
export function projectSeconds(p: PlanInput, totalSteps: number): number {
  const epochs = Math.ceil(totalSteps / p.steps);
  const stepsLeft = Math.max(0, totalSteps - (p.epoch * p.steps + p.step));
  const epochsLeft = Math.max(0, epochs - p.epoch);
  return p.elapsedSeconds + stepsLeft * p.stepSeconds + testPasses(p.epoch, epochs, p.testEvery) * p.testSeconds + epochsLeft * p.epochOverheadSeconds + p.finalSeconds;
}

/**
 * The most steps (up to `maxEpochs` epochs' worth) whose projected wall time stays within the
 * limit, less the margin: whole epochs and a last, partial one, so that the budget is spent
 * rather than rounded down to an epoch. At least the steps already trained (stopping now); when
 * even that is past the limit, `fits` is false.
 * @example planSteps({ limitSeconds: 600, elapsedSeconds: 20, maxEpochs: 200, epoch: 0, step: 21, steps: 196, stepSeconds: 0.028, testEvery: 5, testSeconds: 0.5, epochOverheadSeconds: 0.2, finalSeconds: 2 })
 * // { steps: 19592, epochs: 100, seconds: 599.98…, fits: true }
 */
export function planSteps(p: PlanInput): Plan {
  const fewest = Math.max(1, p.epoch * p.steps + p.step);
  const most = Math.max(fewest, p.maxEpochs * p.steps);
  const plan = (steps: number, fits: boolean): Plan => ({ steps, epochs: Math.ceil(steps / p.steps), seconds: projectSeconds(p, steps), fits });
  if (projectSeconds(p, fewest) > p.limitSeconds) return plan(fewest, false);
  const target = p.limitSeconds - (p.margin ?? 0) * Math.max(0, p.limitSeconds - p.elapsedSeconds);
  // Projected time grows with the steps: the largest that fits, by bisection.
  let lo = fewest;
  let hi = most;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (projectSeconds(p, mid) <= target) lo = mid;
    else hi = mid - 1;
  }
  return plan(lo, true);
}

/**
 * What a check of a run planned to `totalSteps` steps does, from two measures of its speed:
 * `recent` (the steps since the last check: what the machine does now) and `steady` (a longer
 * stretch), the same but for `stepSeconds`. A run that projects past the limit at the recent
 * pace is planned again at it (shorter: a machine that slows down is followed at once). One that
 * would gain at least `lengthenAt` of its steps at both paces is planned again at the slower of
 * the two (a fast stretch alone does not lengthen it). Otherwise the plan stands: undefined.
 * @example revise(700, { ...input, stepSeconds: 1.5 }, { ...input, stepSeconds: 1.4 }, 0.01) // { plan, stepSeconds: 1.5 } when 700 steps at 1.5 s are past the limit
 */
export function revise(totalSteps: number, recent: PlanInput, steady: PlanInput, lengthenAt: number): { plan: Plan; stepSeconds: number } | undefined {
  const atRecent = planSteps(recent);
  if (projectSeconds(recent, totalSteps) > recent.limitSeconds) return { plan: atRecent, stepSeconds: recent.stepSeconds };
  const atSteady = steady.stepSeconds === recent.stepSeconds ? atRecent : planSteps(steady);
  const careful = atSteady.steps < atRecent.steps ? { plan: atSteady, stepSeconds: steady.stepSeconds } : { plan: atRecent, stepSeconds: recent.stepSeconds };
  return careful.plan.steps >= totalSteps + Math.max(1, Math.ceil(totalSteps * lengthenAt)) ? careful : undefined;
}

/**
 * The step time a plan uses, from the seconds a step of each epoch a call has finished: their
 * mean, the first epoch (compilation, caches filling) left out once there are others.
 * @example typicalStepSeconds([0.05, 0.028, 0.027, 0.037]) // 0.030666…
 */
export function typicalStepSeconds(epochs: readonly number[]): number {
  const kept = epochs.length > 1 ? epochs.slice(1) : epochs;
  return kept.reduce((a, b) => a + b, 0) / Math.max(1, kept.length);
}

/**
 * A duration for --time-limit in seconds: a number of seconds, or amounts with units h, m, s
 * ("600", "600s", "9.5m", "1h30m"); undefined when the text is none of these or not positive.
 */
export function parseDuration(text: string): number | undefined {
  const t = text.trim().toLowerCase();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) > 0 ? Number(t) : undefined;
  const m = /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(t);
  if (!m || t === '') return undefined;
  const seconds = Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
  return seconds > 0 ? seconds : undefined;
}
