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
    // The train figures of mixed batches are the mixed targets' (lower than a plain batch's).
    ...(r.mixed !== undefined && r.mixed > 0 ? [r.mixed === 1 ? '(mixed)' : `(mixed ${Math.round(r.mixed * 100)}%)`] : []),
  ].join('  ');
}
