import * as hdr from 'hdr-histogram-js';

/** Latency percentiles in milliseconds, as reported (and compared against thresholds). */
export interface LatencySummary {
  count: number;
  min: number;
  mean: number;
  stdev: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  p99_9: number;
  max: number;
}

/** Records latencies in an HDR histogram (microsecond resolution, 3 significant digits). */
export interface LatencyRecorder {
  record(ms: number): void;
  readonly count: number;
  /** The percentiles, or null when nothing was recorded. */
  summary(): LatencySummary | null;
}

const ms = (us: number) => Math.round(us) / 1000;

/**
 * A latency recorder. Values are kept in whole microseconds: an HDR histogram with 3 significant
 * digits then keeps every percentile within 0.1% of the exact value, whatever the range.
 *
 * @example
 *   const h = createRecorder(); h.record(12.5); h.summary()?.p99; // ≈ 12.5
 */
export function createRecorder(): LatencyRecorder {
  // Pure JS (no WebAssembly) so the recorder needs no async setup; recording stays O(1).
  const histogram = hdr.build({ lowestDiscernibleValue: 1, numberOfSignificantValueDigits: 3, autoResize: true, useWebAssembly: false });
  return {
    record(value) {
      histogram.recordValue(Math.max(1, Math.round(value * 1000)));
    },
    get count() {
      return histogram.totalCount;
    },
    summary() {
      if (histogram.totalCount === 0) return null;
      return {
        count: histogram.totalCount,
        min: ms(histogram.minNonZeroValue),
        mean: ms(histogram.mean),
        stdev: ms(histogram.stdDeviation),
        p50: ms(histogram.getValueAtPercentile(50)),
        p90: ms(histogram.getValueAtPercentile(90)),
        p95: ms(histogram.getValueAtPercentile(95)),
        p99: ms(histogram.getValueAtPercentile(99)),
        p99_9: ms(histogram.getValueAtPercentile(99.9)),
        max: ms(histogram.maxValue),
      };
    },
  };
}
