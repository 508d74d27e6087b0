/**
 * One-cycle learning rate: a linear warm-up from lr/25 to lr over the first `warmup` fraction of
 * the steps, then a cosine decay to lr/2500 (Smith & Topin; what fast CIFAR recipes use).
 */
export function oneCycleLr(step: number, totalSteps: number, lr: number, warmup: number): number {
  return scheduledLr(oneCycle(totalSteps, warmup), step, lr);
}

/** Steps of oneCycleLr's warm-up in a run of `totalSteps`. */
export function warmupSteps(totalSteps: number, warmup: number): number {
  return Math.max(1, Math.round(totalSteps * warmup));
}

/**
 * A one-cycle schedule as a run planned to a time limit holds it: its steps and warm-up, and the
 * point from which its cosine decay runs to its end. The decay's progress is `t` at step `from`
 * and grows linearly to 1 at `totalSteps`; a run that was never re-planned after its warm-up has
 * `from` = `warmSteps` and `t` = 0, oneCycleLr's schedule.
 */
export interface LrSchedule {
  totalSteps: number;
  warmSteps: number;
  from: number;
  t: number;
}

/** oneCycleLr's schedule of `totalSteps` steps. */
export function oneCycle(totalSteps: number, warmup: number): LrSchedule {
  const warmSteps = warmupSteps(totalSteps, warmup);
  return { totalSteps, warmSteps, from: warmSteps, t: 0 };
}

/** The decay's progress (0 to 1) at `step`, on or after the schedule's `from`. */
function progress(s: LrSchedule, step: number): number {
  if (step >= s.totalSteps) return 1;
  return Math.min(1, s.t + ((1 - s.t) * Math.max(0, step - s.from)) / Math.max(1, s.totalSteps - s.from));
}

/** The learning rate of `step` (0-based) under schedule `s`, for a peak of `lr`. */
export function scheduledLr(s: LrSchedule, step: number, lr: number): number {
  const start = lr / 25;
  const end = lr / 2500;
  if (step < s.warmSteps) return start + ((lr - start) * step) / s.warmSteps;
  return end + ((lr - end) * (1 + Math.cos(Math.PI * progress(s, step)))) / 2;
}

/**
 * The schedule of a run re-planned at `atStep` (the next step to train) to `totalSteps` in all.
 * In the warm-up, oneCycleLr's schedule of the new length (the warm-up's slope bends a little).
 * After it, the warm-up stays as it was and the decay goes on from where it stands, spread over
 * the steps now left: the learning rate does not jump, whether the run grows or shrinks.
 * @example refit(oneCycle(100, 0.1), 50, 150) // { totalSteps: 150, warmSteps: 10, from: 50, t: 0.444… }
 */
export function refit(s: LrSchedule, atStep: number, totalSteps: number, warmup: number): LrSchedule {
  if (totalSteps === s.totalSteps) return s;
  if (atStep >= s.warmSteps) return { totalSteps, warmSteps: s.warmSteps, from: atStep, t: progress(s, atStep) };
  // A run cut so short that its new warm-up is already over ends the warm-up here.
  const fresh = oneCycle(totalSteps, warmup);
  return atStep <= fresh.warmSteps ? fresh : { totalSteps, warmSteps: atStep, from: atStep, t: 0 };
}
