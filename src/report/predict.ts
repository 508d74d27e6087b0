import type { PredictorInfo } from '../model/predictor.js';

export interface PredictionLine {
  file: string;
  probabilities?: number[];
  error?: string;
}

/** The API's fields for one image: prediction, class_name, confidence, probabilities. */
export function predictionFields(probabilities: number[], classes: readonly string[]) {
  let best = 0;
  probabilities.forEach((p, i) => {
    if (p > probabilities[best]!) best = i;
  });
  return { prediction: best, class_name: classes[best]!, confidence: probabilities[best]!, probabilities };
}

/**
 * Predictions as text (`file: class 93.1%`, or the top K) or as JSON lines with the API's
 * fields plus `file` and `model_version`; unreadable files as `error` lines. Pure.
 */
export function formatPredictions(lines: PredictionLine[], info: PredictorInfo, options: { top: number; json: boolean }): string {
  return lines
    .map((l) => {
      if (l.error !== undefined || !l.probabilities) {
        const message = (l.error ?? 'not predicted').replace(`${l.file}: `, '');
        return options.json ? JSON.stringify({ file: l.file, error: message }) : `${l.file}: error: ${message}`;
      }
      const fields = predictionFields(l.probabilities, info.classes);
      if (options.json) {
        const top = topK(l.probabilities, info.classes, options.top);
        return JSON.stringify({ file: l.file, ...fields, ...(options.top > 1 ? { top } : {}), model_version: info.version });
      }
      if (options.top <= 1) return `${l.file}: ${fields.class_name} ${(fields.confidence * 100).toFixed(1)}%`;
      return `${l.file}: ${topK(l.probabilities, info.classes, options.top).map((t) => `${t.class_name} ${(t.confidence * 100).toFixed(1)}%`).join(', ')}`;
    })
    .join('\n') + '\n';
}

function topK(probabilities: number[], classes: readonly string[], k: number) {
  return probabilities
    .map((confidence, i) => ({ class_name: classes[i]!, confidence }))
    .sort((a, b) => b.confidence - a.confidence)
    .slice(0, k);
}
