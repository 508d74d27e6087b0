import { describe, expect, it } from 'vitest';
import { formatBytes, formatSeconds } from '../../src/report/format.js';

describe('formatSeconds', () => {
  it('gives tenths below a minute, then minutes and whole seconds, carrying a rounded-up 60 into the minutes', () => {
    expect(formatSeconds(0.42)).toBe('0.4 s');
    expect(formatSeconds(12.34)).toBe('12.3 s');
    expect(formatSeconds(59.94)).toBe('59.9 s');
    expect(formatSeconds(59.96)).toBe('1m 00s');
    expect(formatSeconds(65)).toBe('1m 05s');
    // An epoch of 119.6 s printed "1m 60s" before.
    expect(formatSeconds(119.6)).toBe('2m 00s');
    expect(formatSeconds(153.2)).toBe('2m 33s');
    expect(formatSeconds(3599.7)).toBe('60m 00s');
  });
});

describe('formatBytes', () => {
  it('gives bytes below 1 kB, then one decimal in the largest unit that keeps it under 1000.0', () => {
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(1500)).toBe('1.5 kB');
    expect(formatBytes(163_000_000)).toBe('163.0 MB');
    // 999,960 bytes printed "1000.0 kB" before.
    expect(formatBytes(999_960)).toBe('1.0 MB');
    expect(formatBytes(999_940)).toBe('999.9 kB');
  });
});
