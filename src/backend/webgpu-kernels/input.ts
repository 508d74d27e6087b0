/**
 * The network's input from a batch of byte images in one WebGPU dispatch: (v − mean) · invStd
 * per channel, and each image's cutout square, if any, set to 0; in training, each image also
 * randomly cropped (zero padding) and flipped there, from the loader's draws (`augment`), so the
 * loader only shuffles and copies whole images.
 *
 * Written with tfjs ops, the trainer uploaded each batch as int32 (4 bytes a value, converted
 * in JS: CPU work that grows with the batch), then cast, subtracted and multiplied (three
 * dispatches); cutout added five small uploads and five dispatches (measured on resnet10-w8:
 * ranges, comparisons, the mask). Here the bytes go up as they are, four to a 32-bit word (a quarter of
 * the upload, no conversion), with the cutout boxes as one small int32 tensor.
 *
 * Registered as the tfjs kernel `CifarNormalizeBytes` for the webgpu backend
 * (`registerWebGpuKernels`); `createNormalizer` (model/normalize.ts) runs it when the active
 * backend has it and falls back to the ops otherwise.
 */
import type { TensorInfo } from '@tensorflow/tfjs';
import type { SampleMix } from '../../image/mix.js';
import { FLAT_INDEX_WGSL, FLAT_THREADS, flatDispatch, type GpuProgram, type ProgramUniform, type WebGpuBackendLike } from './program.js';

export const NORMALIZE_BYTES = 'CifarNormalizeBytes';

/** The kernel's attributes: per-channel mean and 1/std on the 0–255 scale, and the batch's mix if any (with `augment` only). */
export interface NormalizeBytesAttrs {
  mean: number[];
  invStd: number[];
  mix?: SampleMix;
}

const IMAGE_VALUES = 32 * 32 * 3;

/** Int32s per image of the `augment` input: the cutout box (top, bottom, left, right), then dy, dx, mirror, 0. */
export const AUGMENT_RECORD = 8;

/** How the program treats each image: as it is, with a cutout box, cropped and flipped (and boxed), and then mixed with its partner. */
export type InputVariant = 'plain' | 'cut' | 'augment' | 'mix';

/**
 * Inputs: `packed`, int32 [n·768] holding the n·3,072 bytes of n 32×32×3 HWC images (four to a
 * word, little-endian); with cutout, `boxes`, int32 [n·4] (top, bottom, left, right: rows
 * [top, bottom) and columns [left, right) become 0); or, to crop and flip too, `augment`, int32
 * [n·AUGMENT_RECORD]: the box (empty: all 0), then out(y, x) = in(y + dy, x' + dx) with
 * x' = 31 − x where mirror is 1, a zero byte outside the image (as `cropInto` in image/crop.ts).
 * The `mix` variant (same inputs as `augment`) then mixes each image with its partner
 * (image/mix.ts): w·own + (1 − w)·partner's, w from the uniforms (`outside` where the pixel is out
 * of the mix's box, `inside` in it: λ and λ for mixup, 1 and 0 for cutmix).
 * Output: float32 [n, 32, 32, 3].
 */
export class NormalizeBytesProgram implements GpuProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0, 1, 2, 3] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [FLAT_THREADS, 1, 1];
  uniforms = 'm0 : f32, m1 : f32, m2 : f32, s0 : f32, s1 : f32, s2 : f32, words : i32,';

  constructor(
    readonly count: number,
    private readonly variant: InputVariant,
  ) {
    this.variableNames = variant === 'plain' ? ['packed'] : ['packed', variant === 'cut' ? 'boxes' : 'augment'];
    this.outputShape = [count, 32, 32, 3];
    // One invocation a 32-bit word of the output's values (four values).
    this.dispatch = flatDispatch((count * IMAGE_VALUES) / 4);
    this.shaderKey = `cifarNormalizeBytes_${variant}`;
    if (variant === 'mix') this.uniforms += ' outside : f32, inside : f32, top : i32, bottom : i32, left : i32, right : i32,';
  }

  uniformData(attrs: NormalizeBytesAttrs): ProgramUniform {
    const f = (v: number) => ({ type: 'float32' as const, data: [v] });
    const i = (v: number) => ({ type: 'int32' as const, data: [v] });
    const base: ProgramUniform = [...attrs.mean.map(f), ...attrs.invStd.map(f), i((this.count * IMAGE_VALUES) / 4)];
    if (this.variant !== 'mix') return base;
    if (!attrs.mix) throw new Error('CifarNormalizeBytes: the mix variant needs the batch\'s mix');
    const { kind, lambda, box } = attrs.mix;
    const [outside, inside] = kind === 'mixup' ? [lambda, lambda] : [1, 0];
    return [...base, f(outside), f(inside), i(box.top), i(box.bottom), i(box.left), i(box.right)];
  }

  getUserCode(): string {
    const cropped = this.variant === 'augment' || this.variant === 'mix';
    const box = { plain: '', cut: 'boxes', augment: 'augment', mix: 'augment' }[this.variant];
    const stride = cropped ? AUGMENT_RECORD : 4;
    const cut = box ? `let b = image * ${stride};\n    if (y >= ${box}[b] && y < ${box}[b + 1] && x >= ${box}[b + 2] && x < ${box}[b + 3]) { v = 0.0; }` : '';
    // The byte: this word's k-th as uploaded, or, cropped, the source pixel's (0 outside the image).
    const raw = cropped
      ? `let a = image * ${AUGMENT_RECORD};
    let sy = y + augment[a + 4];
    let sx = select(x, 31 - x, augment[a + 6] == 1) + augment[a + 5];
    var raw = 0u;
    if (sy >= 0 && sy < 32 && sx >= 0 && sx < 32) {
      let s = ((image * 32 + sy) * 32 + sx) * 3 + c;
      raw = (bitcast<u32>(packed[s / 4]) >> (8u * u32(s % 4))) & 255u;
    }`
      : 'let raw = (bytes >> (8u * u32(k))) & 255u;';
    // Value c of pixel (y, x) of an image, normalised (and cropped and boxed).
    const value = `fn value(bytes : u32, k : i32, image : i32, y : i32, x : i32, c : i32) -> f32 {
    ${raw}
    var v = (f32(raw) - pick(c, uniforms.m0, uniforms.m1, uniforms.m2)) * pick(c, uniforms.s0, uniforms.s1, uniforms.s2);
    ${cut}
    return v;
  }`;
    // Mixed: the image's own value weighted w, its partner's (the batch read backwards) 1 − w.
    const store =
      this.variant === 'mix'
        ? `let inBox = y >= uniforms.top && y < uniforms.bottom && x >= uniforms.left && x < uniforms.right;
      let w = select(uniforms.outside, uniforms.inside, inBox);
      let partner = uniforms.words / ${IMAGE_VALUES / 4} - 1 - image;
      result[e] = value(bytes, k, image, y, x, c) * w + value(0u, 0, partner, y, x, c) * (1.0 - w);`
        : 'result[e] = value(bytes, k, image, y, x, c);';
    return `
  fn pick(c : i32, a : f32, b : f32, d : f32) -> f32 { return select(select(d, b, c == 1), a, c == 0); }

  ${value}

  fn main(index : i32) {
    let word = ${FLAT_INDEX_WGSL};
    if (word >= uniforms.words) { return; }
    let bytes = bitcast<u32>(packed[word]);
    for (var k = 0; k < 4; k = k + 1) {
      let e = word * 4 + k;
      let c = e % 3;
      let pixel = e / 3;
      let image = pixel / 1024;
      let y = (pixel / 32) % 32;
      let x = pixel % 32;
      ${store}
    }
  }`;
  }
}

/** Runs the program: `packed` int32 [n·768]; `boxes` int32 [n·4], or `augment` int32 [n·AUGMENT_RECORD], or neither. */
export function runNormalizeBytes(backend: WebGpuBackendLike, packed: TensorInfo, extra: { boxes?: TensorInfo; augment?: TensorInfo }, attrs: NormalizeBytesAttrs): TensorInfo {
  const count = (packed.shape[0]! * 4) / IMAGE_VALUES;
  if (attrs.mix && !extra.augment) throw new Error('CifarNormalizeBytes: a mix needs the `augment` input');
  const variant: InputVariant = extra.augment ? (attrs.mix ? 'mix' : 'augment') : extra.boxes ? 'cut' : 'plain';
  const program = new NormalizeBytesProgram(count, variant);
  const second = extra.augment ?? extra.boxes;
  return backend.runWebGPUProgram(program, second ? [packed, second] : [packed], 'float32', program.uniformData(attrs));
}
