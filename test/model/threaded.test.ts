import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPredictor } from '../../src/model/load.js';
import { loadThreadedPredictor } from '../../src/model/threaded.js';
import { tempDir } from '../helpers/fixtures.js';
import { saveTinyModel, startServe } from '../helpers/serve.js';
import { form, png } from '../serve/helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
let model: string;
beforeAll(async () => {
  ({ dir, cleanup } = await tempDir());
  model = join(dir, 'model');
  await saveTinyModel(model, tf.initializers.randomNormal({ seed: 3, stddev: 0.05 }));
});
afterAll(() => cleanup());

const pixels = (count: number) => Uint8Array.from({ length: count * 3072 }, (_, i) => (i * 7919 + 13) & 255);

describe('the inference thread (cifar serve --inference-thread)', () => {
  it('answers what the same model answers in this thread, and says what it is', async () => {
    const inline = (await loadPredictor(model, 'cpu')).predictor;
    const threaded = await loadThreadedPredictor({ dir: model, backend: 'cpu', tta: false });
    try {
      expect(threaded.info).toEqual({ ...inline.info, thread: true });
      for (const count of [1, 5]) {
        const [a, b] = await Promise.all([inline.predict(pixels(count), count), threaded.predict(pixels(count), count)]);
        expect(b).toHaveLength(count * 10);
        expect(Array.from(b).map((v, i) => Math.abs(v - a[i]!))).toSatisfy((d: number[]) => Math.max(...d) < 1e-6);
      }
      // Flip TTA is the thread's to apply too.
      const tta = await loadThreadedPredictor({ dir: model, backend: 'cpu', tta: true });
      expect(tta.info.tta).toBe(true);
      tta.dispose();
    } finally {
      inline.dispose();
      threaded.dispose();
    }
  });

  it('fails to start with the loader\'s own one-line error, and fails predictions once unloaded instead of hanging', async () => {
    const missing = join(dir, 'nothing');
    const inlineErr = await loadPredictor(missing, 'cpu').catch((e: unknown) => e);
    await expect(loadThreadedPredictor({ dir: missing, backend: 'cpu', tta: false })).rejects.toMatchObject({ code: (inlineErr as { code: string }).code, message: (inlineErr as Error).message });
    const threaded = await loadThreadedPredictor({ dir: model, backend: 'cpu', tta: false });
    const inFlight = threaded.predict(pixels(64), 64);
    threaded.dispose();
    await expect(inFlight).rejects.toMatchObject({ code: 'BACKEND_FAILED' });
    await expect(threaded.predict(pixels(1), 1)).rejects.toMatchObject({ code: 'BACKEND_FAILED', message: 'the model was unloaded' });
  });

  it('serves the same answers over HTTP with --inference-thread, and /health says where the model runs', async () => {
    const answers: unknown[] = [];
    for (const flags of [[], ['--inference-thread']]) {
      const api = await startServe(['--model', model, '--workers', '1', '--backend', 'cpu', '--log-level', 'warn', ...flags]);
      try {
        const res = await fetch(`${api.url}/predict`, { method: 'POST', body: form('file', await png(7)) });
        expect(res.status, flags.join(' ')).toBe(200);
        answers.push(((await res.json()) as { probabilities: number[] }).probabilities);
        const health = (await (await fetch(`${api.url}/health`)).json()) as { inference: string };
        expect(health.inference).toBe(flags.length ? 'thread' : 'inline');
      } finally {
        await api.stop(5000);
      }
    }
    expect(answers[1]).toEqual(answers[0]);
  }, 60_000);
});
