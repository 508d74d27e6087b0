import { describe, expect, it } from 'vitest';
import { createRecorder } from '../../src/bench/histogram.js';
import { evaluateThresholds } from '../../src/bench/result.js';

describe('createRecorder', () => {
  it('reports percentiles within 0.1% of the exact values', () => {
    const h = createRecorder();
    for (let ms = 1; ms <= 1000; ms++) h.record(ms);
    const s = h.summary()!;
    expect(s.count).toBe(1000);
    for (const [got, exact] of [[s.min, 1], [s.p50, 500], [s.p90, 900], [s.p99, 990], [s.p99_9, 999], [s.max, 1000]] as const) {
      expect(Math.abs(got - exact) / exact).toBeLessThanOrEqual(0.001);
    }
    expect(s.mean).toBeCloseTo(500.5, 0);
  });

  it('keeps sub-millisecond resolution and says null when empty', () => {
    const h = createRecorder();
    expect(h.summary()).toBeNull();
    h.record(0.25);
    expect(h.summary()!.p50).toBeCloseTo(0.25, 3);
  });
});

describe('evaluateThresholds', () => {
  const run = (p99: number, rps: number, failed: number, completed = 100) => ({
    latencyMs: { count: completed, min: 1, mean: 2, stdev: 1, p50: 2, p90: 3, p95: 4, p99, p99_9: p99, max: p99 },
    throughput: { requestsPerSecond: rps, imagesPerSecond: rps },
    requests: { sent: completed, completed, succeeded: completed - failed, failed, late: 0 },
  });

  it('passes when every limit is met', () => {
    expect(evaluateThresholds({ maxP99Ms: 50, minRps: 10, maxErrorRate: 0.05 }, run(40, 20, 5)).passed).toBe(true);
  });

  it('fails on the first limit missed, naming it', () => {
    const t = evaluateThresholds({ maxP99Ms: 50, minRps: 10 }, run(60, 20, 0));
    expect(t.passed).toBe(false);
    expect(t.checks.filter((c) => !c.passed).map((c) => c.name)).toEqual(['max-p99']);
    expect(evaluateThresholds({ minRps: 30 }, run(1, 20, 0)).passed).toBe(false);
    expect(evaluateThresholds({ maxErrorRate: 0.01 }, run(1, 20, 2)).passed).toBe(false);
  });

  it('without --max-error-rate, any failed request fails the run', () => {
    expect(evaluateThresholds({}, run(1, 20, 1)).passed).toBe(false);
    expect(evaluateThresholds({}, run(1, 20, 0)).passed).toBe(true);
  });

  it('a run where nothing completed never passes', () => {
    expect(evaluateThresholds({}, { ...run(1, 0, 0, 0), latencyMs: null }).passed).toBe(false);
  });
});
