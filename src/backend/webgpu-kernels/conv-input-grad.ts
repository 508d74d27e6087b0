/**
 * Conv2DBackpropInput for the WebGPU backend as a tiled implicit GEMM, one slice of the
 * dispatch per output phase (ih mod stride, iw mod stride):
 * dx[n, ih, iw, ci] = sum over the taps (kh, kw) that reach (ih, iw) and over co of
 *   dy[n, (ih+pad-kh)/s, (iw+pad-kw)/s, co] * w[kh, kw, ci, co].
 * For stride 2 a pixel is reached by 1, 2 or 4 of a 3x3 filter's taps; the stock kernel
 * (conv_backprop_mm_webgpu) loops over all 9 and multiplies the other ones by zero.
 */
import type { TensorInfo } from '@tensorflow/tfjs';
import { runForward } from './conv-forward.js';
import { type ConvGeometry, type InputGradPlan, planInputGrad } from './plan.js';
import { type OperandScale, dyScale, runScaled, scaledInterface } from './matrix.js';
import { type GpuProgram, type ProgramUniform, type WebGpuBackendLike, convConstants, convShaderKey, gemmMainSource, gemmWorkgroupSize, padUniforms, usesWideLoads, wgslReads, workgroupStorage } from './program.js';
import { webGpuKernelSettings } from './settings.js';

export class InputGradProgram implements GpuProgram {
  variableNames = ['dy', 'w'];
  uniforms = 'padTop : i32, padLeft : i32,';
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [3], y: [0, 1, 2] };
  dispatch: [number, number, number];
  workgroupSize = gemmWorkgroupSize();
  variableComponents?: number[];
  /** float16 operands: dy (A) is scaled by its largest magnitude, from the partial maxima in input `dyMax`. */
  readonly scale?: OperandScale;

  constructor(
    private readonly conv: ConvGeometry,
    private readonly plan: InputGradPlan,
  ) {
    this.scale = dyScale(0, conv.batchSize * conv.outHeight * conv.outWidth * conv.outChannels);
    const scaled = scaledInterface(this.scale, this.variableNames, usesWideLoads(conv) ? [4, 4] : undefined);
    this.variableNames = scaled.variableNames;
    this.variableComponents = scaled.variableComponents;
    this.outputShape = [conv.batchSize, conv.inHeight, conv.inWidth, conv.inChannels];
    this.dispatch = plan.dispatch;
    this.shaderKey = `${convShaderKey('cifarConvInputGrad', conv, plan.tile)}${scaled.keySuffix}`;
  }

  uniformData(): ProgramUniform {
    return padUniforms(this.conv);
  }

  getUserCode(): string {
    const { conv, plan } = this;
    const { tm, tn, tk } = plan.tile;
    // Integer division by a runtime value costs tens of instructions per element: every phase
    // has the same pixel grid when the stride divides the size (ResNet's 32, 16, 8), so use
    // constants then; the tap count per row (1 to 3) divides exactly in f32, far cheaper.
    const even = conv.inHeight % conv.strideHeight === 0 && conv.inWidth % conv.strideWidth === 0;
    const rh = even ? `${conv.inHeight / conv.strideHeight}` : 'rowsH';
    const rw = even ? `${conv.inWidth / conv.strideWidth}` : 'rowsW';
    const th = conv.strideWidth === 1 ? 't / CG_FW' : 'i32(floor((f32(t) + 0.5) / f32(tapsW)))';
    const wide = usesWideLoads(conv);
    const { suffix, type, zero, index } = wgslReads(wide);
    return `
${convConstants(conv)}
  // This workgroup's phase: its pixels, the taps that reach them, and the GEMM sizes.
  var<private> ph : i32;
  var<private> pw : i32;
  var<private> khStart : i32;
  var<private> kwStart : i32;
  var<private> tapsW : i32;
  var<private> rowsH : i32;
  var<private> rowsW : i32;
  var<private> phaseRows : i32;
  var<private> phaseK : i32;
  // A vec4, not an i32: every workgroup variable a multiple of 16 bytes, so that the float16
  // arrays the tensor cores load from stay 16-byte aligned whatever the driver's layout (matrix.ts).
  var<workgroup> cgTiles : vec4<i32>;

  // Pixel m of the phase -> (n, ih, iw).
  fn pixel(m : i32) -> vec3<i32> {
    let j = m % ${rw};
    let t = m / ${rw};
    return vec3<i32>(t / ${rh}, ph + CG_SH * (t % ${rh}), pw + CG_SW * j);
  }

  // Reduction index k -> (kh, kw, co).
  fn tap(k : i32) -> vec3<i32> {
    let t = k / CG_COUT;
    let th = ${th};
    return vec3<i32>(khStart + CG_SH * th, kwStart + CG_SW * (t - th * tapsW), k % CG_COUT);
  }

  // A[m, k]: dy at the output position that tap k of pixel m came from (wide: k..k+3, the
  // channels co..co+3 of one tap, as one vec4 load).
  fn readA${suffix}(k : i32, m : i32) -> ${type} {
    if (k >= phaseK || m >= phaseRows) { return ${zero}; }
    let p = pixel(m);
    let f = tap(k);
    let nh = p.y + uniforms.padTop - f.x;
    let nw = p.z + uniforms.padLeft - f.y;
    if (nh < 0 || nw < 0) { return ${zero}; }
    let oh = nh / CG_SH;
    let ow = nw / CG_SW;
    if (oh >= CG_OH || ow >= CG_OW) { return ${zero}; }
    return dy[${index('((p.x * CG_OH + oh) * CG_OW + ow) * CG_COUT + f.z')}];
  }

  // B[k, ci] = w[kh, kw, ci, co] (wide: k..k+3, co..co+3).
  fn readB${suffix}(k : i32, col : i32) -> ${type} {
    if (k >= phaseK || col >= CG_CIN) { return ${zero}; }
    let f = tap(k);
    return w[${index('((f.x * CG_FW + f.y) * CG_CIN + col) * CG_COUT + f.z')}];
  }

  ${gemmMainSource({
    tile: plan.tile,
    prologue: `
    let col0 = i32(workgroupId.x) * ${tn};
    let row0 = i32(workgroupId.y) * ${tm};
    let phase = i32(workgroupId.z);
    ph = phase / CG_SW;
    pw = phase % CG_SW;
    khStart = (ph + uniforms.padTop) % CG_SH;
    kwStart = (pw + uniforms.padLeft) % CG_SW;
    let tapsH = select(0, (CG_FH - khStart + CG_SH - 1) / CG_SH, khStart < CG_FH);
    tapsW = select(0, (CG_FW - kwStart + CG_SW - 1) / CG_SW, kwStart < CG_FW);
    rowsH = (CG_H - ph + CG_SH - 1) / CG_SH;
    rowsW = (CG_W - pw + CG_SW - 1) / CG_SW;
    phaseRows = uniforms.outShape[0] * rowsH * rowsW;
    phaseK = tapsH * tapsW * CG_COUT;
    // The trip count depends on the phase (workgroup_id), which WGSL's uniformity analysis
    // cannot see through tfjs' private copy of it: publish it through workgroup memory.
    if (lid == 0) { cgTiles = vec4<i32>((phaseK + ${tk - 1}) / ${tk}); }
    let numTiles = workgroupUniformLoad(&cgTiles).x;
    let kBegin = 0;`,
    aAlongK: true,
    bAlongK: true,
    aWide: wide,
    bWide: wide,
    store: `if (row < phaseRows && col < CG_CIN) {
      let p = pixel(row);
      result[((p.x * CG_H + p.y) * CG_W + p.z) * CG_CIN + col] = v;
    }`,
    scale: this.scale,
  })}`;
  }
}

/** w'[kh, kw, co, ci] = w[fh-1-kh, fw-1-kw, ci, co]: the filter of the input gradient seen as a forward convolution. */
export class FlipTransposeProgram implements GpuProgram {
  variableNames = ['w'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0, 1, 2, 3] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = true;

  constructor(private readonly filterShape: [number, number, number, number]) {
    const [fh, fw, ci, co] = filterShape;
    this.outputShape = [fh, fw, co, ci];
    this.shaderKey = `cifarFlipTranspose_${filterShape.join('x')}`;
    this.dispatch = [Math.ceil((fh * fw * ci * co) / 64), 1, 1];
  }

  getUserCode(): string {
    const [fh, fw, ci, co] = this.filterShape;
    return `
  fn main(index : i32) {
    if (index < uniforms.size) {
      let c = index % ${ci};
      let r = index / ${ci};
      let o = r % ${co};
      let tap = r / ${co};
      let kw = tap % ${fw};
      let kh = tap / ${fw};
      setOutputAtIndex(index, w[(((${fh - 1} - kh) * ${fw} + ${fw - 1} - kw) * ${ci} + c) * ${co} + o]);
    }
  }`;
  }
}

/**
 * The forward convolution whose output is the input gradient of a stride-1 convolution: dy
 * convolved with the flipped, transposed filter, padded by (filter - 1 - pad) on each side.
 */
export function inputGradAsForward(conv: ConvGeometry): ConvGeometry {
  return {
    batchSize: conv.batchSize,
    inHeight: conv.outHeight,
    inWidth: conv.outWidth,
    inChannels: conv.outChannels,
    outHeight: conv.inHeight,
    outWidth: conv.inWidth,
    outChannels: conv.inChannels,
    filterHeight: conv.filterHeight,
    filterWidth: conv.filterWidth,
    strideHeight: 1,
    strideWidth: 1,
    dilationHeight: 1,
    dilationWidth: 1,
    padInfo: { top: conv.filterHeight - 1 - conv.padInfo.top, left: conv.filterWidth - 1 - conv.padInfo.left },
    dataFormat: 'channelsLast',
  };
}

/**
 * Runs the input gradient for a supported convolution (see `isSupported`): with the
 * `inputGradForward` setting (float32 only), a stride-1 one as our forward convolution (the same
 * GEMM shape, with the filter read along its rows); otherwise, and for strided ones, the phase
 * kernel above.
 */
export function runInputGrad(backend: WebGpuBackendLike, dy: TensorInfo, filter: TensorInfo, conv: ConvGeometry): TensorInfo {
  // With float16 operands dy needs its scale, which only the phase kernel applies.
  if (webGpuKernelSettings().inputGradForward && webGpuKernelSettings().matmul === 'f32' && conv.strideHeight === 1 && conv.strideWidth === 1) {
    const flip = new FlipTransposeProgram([conv.filterHeight, conv.filterWidth, conv.inChannels, conv.outChannels]);
    const flipped = backend.runWebGPUProgram(flip, [filter], 'float32');
    const dx = runForward(backend, dy, flipped, undefined, 'linear', inputGradAsForward(conv));
    backend.disposeData(flipped.dataId);
    return dx;
  }
  const program = new InputGradProgram(conv, planInputGrad(conv, workgroupStorage(backend)));
  return runScaled(backend, program, [dy, filter], dy, program.scale);
}
