/**
 * One-cycle learning rate: a linear warm-up from lr/25 to lr over the first `warmup` fraction of
 * the steps, then a cosine decay to lr/2500 (Smith & Topin; what fast CIFAR recipes use).
 */
export function oneCycleLr(step: number, totalSteps: number, lr: number, warmup: number): number {
  const start = lr / 25;
  const end = lr / 2500;
  const warmSteps = warmupSteps(totalSteps, warmup);
  if (step < warmSteps) return start + ((lr - start) * step) / warmSteps;
  const t = Math.min(1, (step - warmSteps) / Math.max(1, totalSteps - warmSteps));
  return end + ((lr - end) * (1 + Math.cos(Math.PI * t))) / 2;
}

/** Steps of oneCycleLr's warm-up in a run of `totalSteps`. */
export function warmupSteps(totalSteps: number, warmup: number): number {
  return Math.max(1, Math.round(totalSteps * warmup));
}
