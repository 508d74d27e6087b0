import { describe, expect, it } from 'vitest';
import { curvesSvg, type EpochRecord } from '../../src/report/curves.js';
import { formatEpoch } from '../../src/report/train.js';

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
