/**
 * The sample arithmetic of libjpeg-turbo's default decode, integer for integer: the accurate
 * inverse DCT (jidctint.c) and the "fancy" 4:2:0 upsampling (jdsample.c). Used by jpeg.ts.
 */

const SIZE = 32;
/** Dequantised coefficients of real 8-bit JPEGs stay well inside this; larger ones are left to libjpeg. */
const MAX_COEF = 4096;
// Scratch rows: decoding is synchronous, so one of each serves every call.
const ROW = new Float64Array(8);
const SUMS = new Int32Array(16);

// libjpeg's post-IDCT range limit: an index masked to 10 bits, centred on 128 (jdmaster.c).
const RANGE_LIMIT = new Uint8Array(1024);
for (let k = 0; k < 1024; k++) RANGE_LIMIT[k] = k < 128 ? k + 128 : k < 512 ? 255 : k < 896 ? 0 : k - 896;

// jidctint.c constants (13 fractional bits).
const CONST_BITS = 13;
const PASS1_BITS = 2;
const F_0_298 = 2446;
const F_0_390 = 3196;
const F_0_541 = 4433;
const F_0_765 = 6270;
const F_0_899 = 7373;
const F_1_175 = 9633;
const F_1_501 = 12299;
const F_1_847 = 15137;
const F_1_961 = 16069;
const F_2_053 = 16819;
const F_2_562 = 20995;
const F_3_072 = 25172;

/** Pass 1 and pass 2 of libjpeg's DESCALE (divide by 2^n, rounding half up), as scale factors. */
const PASS1_SHIFT = 2 ** (CONST_BITS - PASS1_BITS);
const PASS2_SHIFT = 2 ** (CONST_BITS + PASS1_BITS + 3);
/** Largest pass-1 value that libjpeg-turbo's SIMD IDCT keeps in its 16-bit lanes without saturating or wrapping. */
const MAX_PASS1 = 16383;
/** Pass-2 values outside this range wrap in libjpeg's C range limit but saturate in its SIMD one. */
const MIN_SAMPLE = -512;
const MAX_SAMPLE = 511;

/**
 * jpeg_idct_islow: dequantise and inverse-DCT one block into `out` at `offset` (row stride
 * `stride`). False when a value leaves the range that real images produce, where libjpeg's C
 * and SIMD paths can disagree with each other (16-bit lanes); the caller then lets sharp decode
 * the file, so we never have to pick one.
 */
export function idctIslow(block: Int16Array, q: Int32Array, ws: Float64Array, out: Uint8Array, offset: number, stride: number): boolean {
  for (let col = 0; col < 8; col++) {
    const c0 = block[col]! * q[col]!;
    const c1 = block[8 + col]! * q[8 + col]!;
    const c2 = block[16 + col]! * q[16 + col]!;
    const c3 = block[24 + col]! * q[24 + col]!;
    const c4 = block[32 + col]! * q[32 + col]!;
    const c5 = block[40 + col]! * q[40 + col]!;
    const c6 = block[48 + col]! * q[48 + col]!;
    const c7 = block[56 + col]! * q[56 + col]!;
    if (Math.max(Math.abs(c0), Math.abs(c1), Math.abs(c2), Math.abs(c3), Math.abs(c4), Math.abs(c5), Math.abs(c6), Math.abs(c7)) > MAX_COEF) return false;
    idct1d(c0, c1, c2, c3, c4, c5, c6, c7, ws, col, 8, PASS1_SHIFT);
  }
  for (let k = 0; k < 64; k++) if (Math.abs(ws[k]!) > MAX_PASS1) return false;
  const row = ROW;
  for (let r = 0; r < 8; r++) {
    const w = r * 8;
    idct1d(ws[w]!, ws[w + 1]!, ws[w + 2]!, ws[w + 3]!, ws[w + 4]!, ws[w + 5]!, ws[w + 6]!, ws[w + 7]!, row, 0, 1, PASS2_SHIFT);
    const o = offset + r * stride;
    for (let k = 0; k < 8; k++) {
      const v = row[k]!;
      if (v < MIN_SAMPLE || v > MAX_SAMPLE) return false;
      out[o + k] = RANGE_LIMIT[v & 1023]!;
    }
  }
  return true;
}

/**
 * One 8-point pass of jpeg_idct_islow, writing values descaled by `scale` (a power of two) to
 * `dst` at `at`, `step` apart. Doubles hold every product exactly (C uses 64-bit integers), and
 * flooring a product with an exact power-of-two reciprocal is C's rounding right shift.
 */
function idct1d(
  i0: number, i1: number, i2: number, i3: number, i4: number, i5: number, i6: number, i7: number,
  dst: Float64Array, at: number, step: number, scale: number,
): void {
  const half = scale / 2;
  const inv = 1 / scale;
  const descale = (x: number) => Math.floor((x + half) * inv);
  // Even part.
  const z1 = (i2 + i6) * F_0_541;
  const tmp2 = z1 - i6 * F_1_847;
  const tmp3 = z1 + i2 * F_0_765;
  const tmp0 = (i0 + i4) * 2 ** CONST_BITS;
  const tmp1 = (i0 - i4) * 2 ** CONST_BITS;
  const t10 = tmp0 + tmp3;
  const t13 = tmp0 - tmp3;
  const t11 = tmp1 + tmp2;
  const t12 = tmp1 - tmp2;
  // Odd part.
  const s1 = i7 + i1;
  const s2 = i5 + i3;
  const s3 = i7 + i3;
  const s4 = i5 + i1;
  const z5 = (s3 + s4) * F_1_175;
  const m1 = -s1 * F_0_899;
  const m2 = -s2 * F_2_562;
  const m3 = -s3 * F_1_961 + z5;
  const m4 = -s4 * F_0_390 + z5;
  const o0 = i7 * F_0_298 + m1 + m3;
  const o1 = i5 * F_2_053 + m2 + m4;
  const o2 = i3 * F_3_072 + m2 + m3;
  const o3 = i1 * F_1_501 + m1 + m4;
  dst[at] = descale(t10 + o3);
  dst[at + 7 * step] = descale(t10 - o3);
  dst[at + step] = descale(t11 + o2);
  dst[at + 6 * step] = descale(t11 - o2);
  dst[at + 2 * step] = descale(t12 + o1);
  dst[at + 5 * step] = descale(t12 - o1);
  dst[at + 3 * step] = descale(t13 + o0);
  dst[at + 4 * step] = descale(t13 - o0);
}

/**
 * jdsample.c's h2v2_fancy_upsample of a 16×16 plane to 32×32: each output sample weighs its
 * nearest input 9/16, the two next nearest 3/16 each and the diagonal 1/16, with libjpeg's
 * alternating rounding; the edges repeat the first and last rows and columns.
 */
export function upsampleH2V2(input: Uint8Array, out: Uint8Array): Uint8Array {
  const n = 16;
  const sums = SUMS;
  for (let row = 0; row < n; row++) {
    for (let v = 0; v < 2; v++) {
      const near = row * n;
      const other = (v === 0 ? Math.max(row - 1, 0) : Math.min(row + 1, n - 1)) * n;
      for (let col = 0; col < n; col++) sums[col] = input[near + col]! * 3 + input[other + col]!;
      let o = (row * 2 + v) * SIZE;
      out[o++] = (sums[0]! * 4 + 8) >> 4;
      out[o++] = (sums[0]! * 3 + sums[1]! + 7) >> 4;
      for (let col = 1; col < n - 1; col++) {
        out[o++] = (sums[col]! * 3 + sums[col - 1]! + 8) >> 4;
        out[o++] = (sums[col]! * 3 + sums[col + 1]! + 7) >> 4;
      }
      out[o++] = (sums[n - 1]! * 3 + sums[n - 2]! + 8) >> 4;
      out[o++] = (sums[n - 1]! * 4 + 7) >> 4;
    }
  }
  return out;
}
