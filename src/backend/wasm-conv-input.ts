/**
 * Conv2DBackpropInput for wasm as XNNPACK forward convolutions. tfjs-backend-wasm's own kernel
 * is a scalar loop, about 10x the cost of the forward convolution.
 *
 * - stride 1: a convolution of dy with the spatially flipped, in/out-transposed filter;
 * - 1x1, any stride: the pointwise convolution first, then zeros scattered between its pixels;
 * - k x k, stride s: the sub-pixel form: one convolution of dy whose s*s*ci output channels are
 *   the s*s phases of dx, interleaved by a transpose. Zero-dilating dy instead would spend s*s (4x) the
 *   forward cost on multiplying zeros; this spends ~1.8x for 3x3 stride 2.
 */
import * as tf from '@tensorflow/tfjs';
import type { TensorInfo } from '@tensorflow/tfjs';
import { type ConvGradAttrs, type KernelArgs, type Pad, type Shape4, Scratch, checkNHWC, dilateWithZeros } from './wasm-scratch.js';

/**
 * The filter taps listed in `taps` (-1: a zero tap), as [taps.length, ci, co]: one Concat of
 * views of the filter's contiguous [ci, co] blocks. wasm's Reverse and GatherV2 are scalar loops
 * (58 and 51 ms for a 3x3x512x512 filter, as long as the convolution itself at batch 32).
 */
function filterTaps(s: Scratch, filter: TensorInfo, taps: number[]): TensorInfo {
  const [, , ci, co] = filter.shape as Shape4;
  const block = ci * co;
  let zero: TensorInfo | undefined;
  const parts = taps.map((t) => {
    if (t >= 0) return s.view(filter, t * block, [1, ci, co]);
    zero ??= s.run('Fill', {}, { shape: [1, ci, co], value: 0, dtype: 'float32' });
    return zero;
  });
  // Concat takes its inputs as an array, like tfjs' own callers pass them.
  return parts.length === 1 ? s.reshape(parts[0]!, [1, ci, co]) : s.run('Concat', parts as unknown as tf.NamedTensorInfoMap, { axis: 0 });
}

/** Flipped, channel-swapped filter: [fh, fw, ci, co] -> [fh, fw, co, ci]. */
function transposedFilter(s: Scratch, filter: TensorInfo): TensorInfo {
  const [fh, fw, ci, co] = filter.shape as Shape4;
  const taps = Array.from({ length: fh * fw }, (_, i) => fh * fw - 1 - i);
  return s.transpose(s.reshape(filterTaps(s, filter, taps), [fh, fw, ci, co]), [0, 1, 3, 2]);
}

/**
 * Along one spatial axis: which filter tap feeds each (phase a, conv tap t) of the sub-pixel
 * convolution (-1: none), with the padding of dy. dx[q*s + a] = sum_t dyPadded[q + t] * W[tap].
 */
export interface PhasePlan {
  taps: number[][]; // [phase][t]
  before: number;
  size: number; // conv taps along this axis
  outSize: number; // ceil(in / s) positions per phase
}

/** Returns null when the padding is too large for the plan (callers fall back to dilation). */
export function phasePlan(f: number, s: number, pad: number, inSize: number): PhasePlan | null {
  const phases = Array.from({ length: s }, (_, a) => {
    const b = (a + pad) % s; // first filter tap of this phase
    const c = Math.floor((a + pad) / s); // its offset in dy
    return { b, c, count: b < f ? Math.ceil((f - b) / s) : 0 };
  });
  const tMax = Math.max(...phases.map((p) => p.count));
  const cMin = Math.min(...phases.map((p) => p.c));
  const cMax = Math.max(...phases.map((p) => p.c));
  const before = tMax - 1 - cMin;
  if (before < 0 || tMax === 0) return null;
  const size = cMax - cMin + tMax;
  const taps = phases.map(({ b, c, count }) =>
    Array.from({ length: size }, (_, t) => {
      const j = c + before - t;
      return j >= 0 && j < count ? j * s + b : -1;
    }),
  );
  return { taps, before, size, outSize: Math.ceil(inSize / s) };
}

function subPixel(s: Scratch, dy: TensorInfo, filter: TensorInfo, ph: PhasePlan, pw: PhasePlan, sh: number, sw: number, h: number, w: number): TensorInfo {
  const [, fw, ci, co] = filter.shape as Shape4;
  const [, oh, ow] = dy.shape as Shape4;
  // The phase filters, gathered from the filter taps and zero taps: [Kh, Kw, sh, sw, ci, co].
  const taps: number[] = [];
  for (let th = 0; th < ph.size; th++)
    for (let tw = 0; tw < pw.size; tw++)
      for (let ah = 0; ah < sh; ah++)
        for (let aw = 0; aw < sw; aw++) {
          const kh = ph.taps[ah]?.[th] ?? -1;
          const kw = pw.taps[aw]?.[tw] ?? -1;
          taps.push(kh >= 0 && kw >= 0 ? kh * fw + kw : -1);
        }
  const gathered = filterTaps(s, filter, taps);
  const phaseFilter = s.reshape(
    s.transpose(s.reshape(gathered, [ph.size * pw.size, sh * sw, ci, co]), [0, 3, 1, 2]),
    [ph.size, pw.size, co, sh * sw * ci],
  );
  const pad: Pad = [
    [0, 0],
    [ph.before, Math.max(0, ph.outSize + ph.size - 1 - ph.before - oh)],
    [pw.before, Math.max(0, pw.outSize + pw.size - 1 - pw.before - ow)],
    [0, 0],
  ];
  // Rows of dy that no output reads would make the conv output too long: crop them.
  const d = s.fitHW(dy, Math.min(oh, ph.outSize + ph.size - 1 - ph.before), Math.min(ow, pw.outSize + pw.size - 1 - pw.before));
  const phases = s.conv(d, phaseFilter, pad); // [n, Qh, Qw, sh*sw*ci]
  // Interleave the phases. wasm's DepthToSpace is a scalar loop (65 ms for 4M floats); this
  // rank-4 transpose moves contiguous runs of sw*ci floats.
  const [n, qh, qw] = phases.shape as Shape4;
  const rows = s.transpose(s.reshape(phases, [n * qh, qw, sh, sw * ci]), [0, 2, 1, 3]); // [n*qh, sh, qw, sw*ci]
  return s.fitHW(s.reshape(rows, [n, qh * sh, qw * sw, ci]), h, w);
}

/** dx for `dx = conv2d_transpose(dy, filter)`, the input gradient of a stride-s convolution. */
export function conv2DBackpropInput(args: KernelArgs): TensorInfo {
  const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
  const attrs = args.attrs as unknown as ConvGradAttrs & { inputShape: Shape4 };
  checkNHWC(attrs);
  const s = new Scratch(args.backend);
  const info = tf.backend_util.computeConv2DInfo(attrs.inputShape, filter.shape as Shape4, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode);
  const { filterHeight: fh, filterWidth: fw, inHeight: h, inWidth: w, strideHeight: sh, strideWidth: sw } = info;
  const { top, left } = info.padInfo;

  if (fh === 1 && fw === 1 && top === 0 && left === 0) {
    const t = s.conv(dy, transposedFilter(s, filter), 'valid');
    return s.finish(s.fitHW(sh > 1 || sw > 1 ? dilateWithZeros(s, t, sh, sw) : t, h, w));
  }
  const ph = phasePlan(fh, sh, top, h);
  const pw = phasePlan(fw, sw, left, w);
  if ((sh > 1 || sw > 1) && ph && pw) return s.finish(subPixel(s, dy, filter, ph, pw, sh, sw, h, w));

  // Stride 1 (or an unusual padding): convolution of the zero-dilated dy with the flipped filter.
  const pt = fh - 1 - top;
  const pl = fw - 1 - left;
  if (pt < 0 || pl < 0) throw new Error('wasm Conv2DBackpropInput: padding larger than the filter');
  const dilated = sh > 1 || sw > 1 ? dilateWithZeros(s, dy, sh, sw) : dy;
  const d = s.fitHW(dilated, Math.min(dilated.shape[1] ?? 0, h + fh - 1 - pt), Math.min(dilated.shape[2] ?? 0, w + fw - 1 - pl));
  const [, dh, dw] = d.shape as Shape4;
  const pad: Pad = [[0, 0], [pt, h + fh - 1 - pt - dh], [pl, w + fw - 1 - pl - dw], [0, 0]];
  return s.finish(s.conv(d, transposedFilter(s, filter), pad));
}
