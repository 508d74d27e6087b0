import { describe, expect, it } from 'vitest';
import { float16Bits, float16Value, roundToFloat16, toFloat16 } from '../../src/model/float16.js';

describe('float16 conversion', () => {
  it('round-trips every finite float16 value exactly', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const v = float16Value(bits);
      if (Number.isNaN(v)) continue;
      const back = float16Bits(v);
      // -0 and +0 keep their sign bit.
      if (back !== bits) expect.fail(`bits ${bits.toString(16)} -> ${v} -> ${back.toString(16)}`);
    }
  });

  it('rounds to nearest, ties to even, in normal and subnormal ranges', () => {
    expect(float16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie between 1 and 1+2^-10: even (1)
    expect(float16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie: even (1+2^-9)
    expect(float16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // just above the tie
    expect(float16Bits(2 ** -25)).toBe(0); // half the smallest subnormal: tie to 0
    expect(float16Bits(3 * 2 ** -25)).toBe(2); // tie between subnormals 1 and 2: even
    expect(float16Bits(-0.1)).toBe(0xae66);
  });

  it('overflows to infinity past 65,504 (from the 65,520 midpoint) and keeps NaN', () => {
    expect(float16Bits(65504)).toBe(0x7bff);
    expect(float16Bits(65519)).toBe(0x7bff);
    expect(float16Bits(65520)).toBe(0x7c00);
    expect(float16Bits(-1e9)).toBe(0xfc00);
    expect(Number.isNaN(float16Value(float16Bits(NaN)))).toBe(true);
  });

  it('converts arrays, and rounding keeps values within float16 precision', () => {
    const x = Float32Array.from([0.1, -2.5, 1234.567, 3e-6]);
    expect(Array.from(toFloat16(x)).map((b) => float16Value(b))).toEqual(Array.from(roundToFloat16(x)));
    roundToFloat16(x).forEach((v, i) => expect(Math.abs(v - x[i]!)).toBeLessThanOrEqual(Math.abs(x[i]!) * 2 ** -11 + 2 ** -25));
  });
});
