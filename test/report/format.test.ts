import { describe, expect, it } from 'vitest';
import { formatSeconds } from '../../src/report/format.js';

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
