import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createApp } from '../../src/serve/app.js';
import { form, png, tinyPredictor } from './helpers.js';

/** An app whose log lines are collected (at info), with `overrides` for its predictor. */
function logged(overrides: Parameters<typeof createApp>[0]) {
  const lines: Array<Record<string, any>> = [];
  const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk))), done()) });
  const served = createApp({ defaultMetrics: false, ...overrides, logger: pino({ level: 'info' }, sink), config: { batchWaitMs: 1, ...overrides.config } });
  const settle = () => new Promise((r) => setImmediate(r));
  return { served, lines, settle };
}

describe('server logs', () => {
  it('a 503 the server chose (not ready yet) is one access-log warning with its code, no stack', async () => {
    const { served, lines, settle } = logged({ loadPredictor: () => new Promise(() => {}) });
    try {
      const res = await served.app.request('/ready');
      expect(res.status).toBe(503);
      await settle();
      expect(lines.map((l) => [l.level, l.msg, l.status, l.error])).toEqual([[40, 'request', 503, 'NOT_READY']]);
      expect(JSON.stringify(lines)).not.toContain('stack');
    } finally {
      await served.close();
    }
  });

  it('a fault (a predictor that throws) is a 500, logged as an error with its stack, and the access line says INTERNAL', async () => {
    const inner = await tinyPredictor();
    // Its warm-up passes at install work; once ready, passes throw.
    let broken = false;
    const predict: typeof inner.predict = (pixels, count) => (broken ? Promise.reject(new Error('boom in the model')) : inner.predict(pixels, count));
    const { served, lines, settle } = logged({ predictor: { info: inner.info, predict, dispose: () => inner.dispose() } });
    try {
      await served.ready;
      broken = true;
      const res = await served.app.request('/predict', { method: 'POST', body: form('file', await png(1)) });
      expect(res.status).toBe(500);
      await settle();
      const failed = lines.find((l) => l.msg === 'request failed');
      expect(failed).toMatchObject({ level: 50, err: 'boom in the model' });
      expect(failed!.stack).toContain('Error: boom in the model');
      expect(lines.find((l) => l.msg === 'request')).toMatchObject({ level: 50, status: 500, error: 'INTERNAL' });
    } finally {
      await served.close();
    }
  });

  it('a bad upload is an info line naming the code', async () => {
    const { served, lines, settle } = logged({ predictor: await tinyPredictor() });
    try {
      await served.ready;
      const res = await served.app.request('/predict', { method: 'POST', body: form('file', Buffer.from('not an image')) });
      expect(res.status).toBe(400);
      await settle();
      expect(lines.filter((l) => l.msg === 'request').map((l) => [l.level, l.status, l.error])).toEqual([[30, 400, 'INVALID_IMAGE']]);
    } finally {
      await served.close();
    }
  });
});
