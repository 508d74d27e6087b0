import { describe, expect, it } from 'vitest';
import { confusionMatrix, metricsFromConfusion } from '../../src/eval/metrics.js';
import { confusionSvg, formatEval } from '../../src/report/eval.js';

describe('evaluation metrics', () => {
  // 3 classes; known answers: a b c
  const labels = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2];
  const preds = [0, 0, 0, 1, 1, 1, 2, 2, 2, 0];
  const m = metricsFromConfusion(confusionMatrix(labels, preds, 3), ['a', 'b', 'c']);

  it('builds the confusion matrix with true classes as rows', () => {
    expect(m.confusion).toEqual([
      [3, 1, 0],
      [0, 2, 1],
      [1, 0, 2],
    ]);
  });

  it('computes accuracy, precision, recall and F1 per class', () => {
    expect(m.accuracy).toBeCloseTo(0.7);
    expect(m.perClass[0]).toMatchObject({ className: 'a', precision: 0.75, recall: 0.75, support: 4 });
    expect(m.perClass[1]!.precision).toBeCloseTo(2 / 3);
    expect(m.perClass[1]!.recall).toBeCloseTo(2 / 3);
    expect(m.perClass[2]!.f1).toBeCloseTo(2 / 3);
    expect(m.macro.recall).toBeCloseTo((0.75 + 2 / 3 + 2 / 3) / 3);
  });

  it('gives 0, not NaN, for a class never predicted', () => {
    const z = metricsFromConfusion(confusionMatrix([0, 1], [0, 0], 2), ['a', 'b']);
    expect(z.perClass[1]).toMatchObject({ precision: 0, recall: 0, f1: 0 });
  });

  it('prints the report without colour codes when colour is off', () => {
    const text = formatEval(m, { model: 'x', imagesPerSecond: 100, backend: 'cpu' }, false);
    expect(text).not.toMatch(/\x1b\[/);
    expect(text).toMatch(/accuracy 70\.0% on 10 test images/);
    expect(text.split('\n').find((l) => l.startsWith('b '))).toMatch(/66\.7%\s+66\.7%\s+66\.7%\s+3/);
    expect(formatEval(m, { model: 'x', imagesPerSecond: 1, backend: 'cpu' }, true)).toMatch(/\x1b\[32m/);
  });

  it('names flip TTA on the accuracy line when the evaluation used it', () => {
    expect(formatEval(m, { model: 'x', imagesPerSecond: 100, backend: 'cpu', tta: 'flip' }, false).split('\n')[0]).toMatch(/\(model x, cpu, flip TTA, 100 img\/s\)$/);
    expect(formatEval(m, { model: 'x', imagesPerSecond: 100, backend: 'cpu', tta: 'none' }, false).split('\n')[0]).toMatch(/\(model x, cpu, 100 img\/s\)$/);
  });

  it('draws the confusion matrix as an SVG with one cell per pair', () => {
    const svg = confusionSvg(m, 'test');
    expect(svg.match(/<rect x=/g)).toHaveLength(9);
    expect(svg).toContain('accuracy 70.0%');
  });
});
