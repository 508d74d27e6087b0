/** Per-class quality of a classifier on a labelled set. */
export interface ClassMetrics {
  className: string;
  precision: number;
  recall: number;
  f1: number;
  /** Images of this class in the set. */
  support: number;
}

export interface EvalMetrics {
  accuracy: number;
  count: number;
  perClass: ClassMetrics[];
  macro: { precision: number; recall: number; f1: number };
  /** confusion[true][predicted] = count. */
  confusion: number[][];
}

/** The confusion matrix of `labels` against `predictions` (both class indices). */
export function confusionMatrix(labels: ArrayLike<number>, predictions: ArrayLike<number>, classes: number): number[][] {
  const m = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  for (let i = 0; i < labels.length; i++) m[labels[i]!]![predictions[i]!]!++;
  return m;
}

/** Accuracy, per-class precision/recall/F1 and their macro averages, from a confusion matrix. */
export function metricsFromConfusion(confusion: number[][], classNames: readonly string[]): EvalMetrics {
  const k = confusion.length;
  const count = confusion.flat().reduce((a, b) => a + b, 0);
  const correct = confusion.reduce((a, row, i) => a + row[i]!, 0);
  const perClass = classNames.map((className, c) => {
    const tp = confusion[c]![c]!;
    const support = confusion[c]!.reduce((a, b) => a + b, 0);
    const predicted = confusion.reduce((a, row) => a + row[c]!, 0);
    const precision = predicted === 0 ? 0 : tp / predicted;
    const recall = support === 0 ? 0 : tp / support;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    return { className, precision, recall, f1, support };
  });
  const mean = (f: (m: ClassMetrics) => number) => perClass.reduce((a, m) => a + f(m), 0) / k;
  return {
    accuracy: count === 0 ? 0 : correct / count,
    count,
    perClass,
    macro: { precision: mean((m) => m.precision), recall: mean((m) => m.recall), f1: mean((m) => m.f1) },
    confusion,
  };
}

/** Index of the largest of `k` values starting at `offset`. */
export function argmax(values: ArrayLike<number>, offset: number, k: number): number {
  let best = 0;
  for (let j = 1; j < k; j++) if (values[offset + j]! > values[offset + best]!) best = j;
  return best;
}
