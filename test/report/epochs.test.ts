import { describe, expect, it } from 'vitest';
import { curvesSvg, type EpochRecord } from '../../src/report/curves.js';
import { formatEpoch, formatPlan, formatRecipe } from '../../src/report/train.js';
import { parseTrainConfig } from '../../src/train/config.js';

const row = (epoch: number, tested: boolean): EpochRecord => ({
  epoch,
  trainLoss: 2 - epoch * 0.1,
  trainAccuracy: 0.3 + epoch * 0.05,
  testLoss: tested ? 1.9 - epoch * 0.1 : null,
  testAccuracy: tested ? 0.35 + epoch * 0.05 : null,
  lr: 0.1,
  imagesPerSecond: 1234.5,
  seconds: 12.3,
});

describe('epochs without a test pass (--test-every)', () => {
  it('print a dash in the test columns, keeping the columns aligned', () => {
    const tested = formatEpoch(row(2, true), 4);
    const skipped = formatEpoch(row(1, false), 4);
    expect(tested).toContain('1.7000');
    expect(tested).toContain('45.00%');
    expect(skipped).not.toContain('NaN');
    expect(skipped.split(/\s+/).filter((c) => c === '—')).toHaveLength(2);
    expect(skipped.length).toBe(tested.length);
  });

  it('leave their points out of the test curves, and out of the best accuracy', () => {
    const svg = curvesSvg([row(1, false), row(2, true), row(3, false), row(4, true)]);
    const lines = [...svg.matchAll(/<polyline points="([^"]*)"/g)].map((m) => m[1]!.split(' ').length);
    // Loss panel: train (4 points), test (2); accuracy panel: the same.
    expect(lines).toEqual([4, 2, 4, 2]);
    expect(svg).toContain('accuracy (best test 55.00%)');
    expect(svg).not.toContain('NaN');
  });
});

describe('a run with a weight average (--ema)', () => {
  const averaged = (epoch: number, tested: boolean): EpochRecord => ({ ...row(epoch, tested), liveTestAccuracy: tested ? 0.3 + epoch * 0.05 : null });

  it('adds the live weights\' test accuracy to the row, after the columns of a run without one', () => {
    const plain = formatEpoch(row(2, true), 4);
    const line = formatEpoch(averaged(2, true), 4);
    expect(line).toBe(`${plain}  (live weights 40.00%)`);
    expect(formatEpoch(averaged(1, false), 4)).toBe(formatEpoch(row(1, false), 4));
  });

  it('draws the live weights\' test accuracy as a third accuracy curve, at the tested epochs', () => {
    const svg = curvesSvg([averaged(1, false), averaged(2, true), averaged(3, false), averaged(4, true)]);
    const lines = [...svg.matchAll(/<polyline points="([^"]*)"/g)].map((m) => m[1]!.split(' ').length);
    expect(lines).toEqual([4, 2, 4, 2, 2]);
    expect(svg).toContain('>test (average)<');
    expect(svg).toContain('>test (live)<');
    expect(curvesSvg([row(1, true)])).not.toContain('(live)');
  });
});

describe('a run with mixed batches (--mixup, --cutmix)', () => {
  const mixedRow = (epoch: number, mixed: number): EpochRecord => ({ ...row(epoch, true), mixed });

  it('marks the rows of mixed epochs, and says how much of an epoch was mixed where --mix-until ends within it', () => {
    expect(formatEpoch(mixedRow(1, 1), 4)).toBe(`${formatEpoch(row(1, true), 4)}  (mixed)`);
    expect(formatEpoch(mixedRow(2, 0.4), 4)).toBe(`${formatEpoch(row(2, true), 4)}  (mixed 40%)`);
    expect(formatEpoch(mixedRow(3, 0), 4)).toBe(formatEpoch(row(3, true), 4));
  });

  it('shades the mixed steps behind both panels, from the start to where mixing stopped', () => {
    const svg = curvesSvg([mixedRow(1, 1), mixedRow(2, 0.5), mixedRow(3, 0), mixedRow(4, 0)]);
    const bands = [...svg.matchAll(/<rect class="band" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(bands).toHaveLength(2);
    // Epochs 0 to 1.5 of 4 on a panel 450 − 56 − 16 = 378 pixels wide.
    for (const [, width] of bands) expect(width).toBeCloseTo((1.5 / 4) * 378, 0);
    expect(bands[0]![0]).toBeCloseTo(56, 0);
    expect(svg).toContain('>mixed batches<');
    expect(curvesSvg([row(1, true), mixedRow(2, 0)])).not.toContain('class="band"');
  });
});

describe('the recipe line at the start of a run', () => {
  it('names the schedule, the optimiser and each augmentation that is on, with its settings', () => {
    const line = formatRecipe(parseTrainConfig({ epochs: 50, batchSize: 256, lr: 0.2, warmup: 0.1, cutout: 16, cutmix: 1, mixUntil: 0.8, ema: 0.995 }));
    expect(line).toBe(
      'recipe: 50 epochs of batch 256, one-cycle lr 0.2 (10% warm-up), SGD Nesterov 0.9, weight decay 0.0005, label smoothing 0.1, weight average 0.995; ' +
        'crop (pad 4), flip, cutout 16, cutmix 1 (first 80% of the steps); seed 0',
    );
  });

  it('leaves out what is off, joins mixup and cutmix, and says when there is no augmentation', () => {
    const defaults = parseTrainConfig({});
    expect(formatRecipe(defaults)).not.toMatch(/cutout|mix|weight average/);
    expect(formatRecipe({ ...defaults, mixup: 0.2, cutmix: 1 })).toContain('flip, mixup 0.2 or cutmix 1; seed 0');
    expect(formatRecipe({ ...defaults, cropPadding: 0, flip: false })).toContain('; no augmentation; ');
    expect(formatRecipe({ ...defaults, epochs: 1 })).toMatch(/^recipe: 1 epoch of batch 128,/);
  });

  it('names the saved model a run starts from (--init) last, and nothing when it starts from random weights', () => {
    expect(formatRecipe(parseTrainConfig({ init: 'models/default' }))).toMatch(/; seed 0; initial weights from models\/default$/);
    expect(formatRecipe(parseTrainConfig({}))).not.toContain('initial weights');
  });

  it('with a time limit, names it and --epochs as the most', () => {
    const line = formatRecipe(parseTrainConfig({ epochs: 200, batchSize: 256, timeLimit: 540 }));
    expect(line).toMatch(/^recipe: the epochs that fit in 9m 00s \(at most 200\) of batch 256, one-cycle/);
  });
});

describe('the time plan line', () => {
  const plan = { steps: 18424, stepsPerEpoch: 196, maxEpochs: 200, limitSeconds: 540, seconds: 539.8, fits: true, stepSeconds: 0.0277, atEpoch: 0, atStep: 21 };
  it('says how many epochs fit of the most, the steps and their time, the projected end, and when it was planned', () => {
    expect(formatPlan(plan)).toBe('time limit 9m 00s: 94 of at most 200 epochs fit (18,424 steps of 27.7 ms; the run ends at about 9m 00s), planned at epoch 1 step 21');
    expect(formatPlan({ ...plan, steps: 18500 })).toContain(': 94.39 of at most 200 epochs fit (18,500 steps');
    expect(formatPlan({ ...plan, steps: 200 * 196 })).toContain(': all 200 epochs fit (39,200 steps');
    expect(formatPlan({ ...plan, atEpoch: 3, atStep: 0 })).toMatch(/, planned after epoch 3$/);
  });

  it('the row of a partial last epoch says how much of an epoch it had', () => {
    expect(formatEpoch({ ...row(3, true), fraction: 0.6 }, 3)).toMatch(/^ {2}3\/3 .* \(60% of an epoch\)$/);
    expect(formatEpoch(row(3, true), 3)).not.toContain('of an epoch');
  });

  it('the curves draw a partial last epoch where it ended, short of its number', () => {
    const svg = curvesSvg([row(1, true), row(2, true), { ...row(3, true), fraction: 0.5 }]);
    const xs = svg.match(/<polyline points="([^"]+)"/)![1]!.split(' ').map((p) => Number(p.split(',')[0]));
    // Epochs 1, 2 and 2.5 of 2.5 on the 378-pixel panel that starts at 56.
    expect(xs.map((x) => Math.round(x - 56))).toEqual([151, 302, 378]);
  });

  it('says when not even stopping now fits', () => {
    expect(formatPlan({ ...plan, steps: 3, fits: false, limitSeconds: 5, seconds: 9.3, atStep: 3 })).toBe('time limit 5.0 s: not even the steps trained so far fit; the run stops now, after 3 steps of 27.7 ms, at about 9.3 s, planned at epoch 1 step 3');
  });
});
