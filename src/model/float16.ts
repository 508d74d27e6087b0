/**
 * IEEE 754 half precision for stored weights: a ResNet-18 is 44.7 MB in float32 and 22.4 MB in
 * float16, which tfjs reads back natively (a weight spec with `quantization: {dtype: 'float16'}`).
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float16 bits nearest to `value` (round to nearest, ties to even; overflow to ±Infinity). */
export function float16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // Inf, NaN
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // too large: Infinity
  if (e <= 0) {
    // Subnormal (or zero): shift the mantissa with its implicit 1 into place, rounding.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && (m & 1) === 1)) m++;
    return sign | m;
  }
  let bits = sign | (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // Round to nearest even; a carry into the exponent is the right answer (up to Infinity).
  if (rest > 0x1000 || (rest === 0x1000 && (bits & 1) === 1)) bits++;
  return bits;
}

/** The value of float16 `bits`. */
export function float16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float32 values as float16 bits. */
export function toFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float16Bits(values[i]!);
  return out;
}

/** float32 values rounded to the nearest float16, as float32 (what a float16 file reads back as). */
export function roundToFloat16(values: Float32Array): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float16Value(float16Bits(values[i]!));
  return out;
}
