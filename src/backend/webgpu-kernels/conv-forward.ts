/**
 * Conv2D / FusedConv2D (optional bias, linear or ReLU) for the WebGPU backend, as the same tiled
 * implicit GEMM as the gradients: y[(n,oh,ow), co] = sum over k = (kh,kw,ci) of
 *   x[n, oh*s+kh-pad, ow*s+kw-pad, ci] * w[kh, kw, ci, co],
 * with the bias and the activation applied in the store. With 128-wide tiles (8 x 8 outputs per
 * thread) it reuses each staged value twice as often as tfjs' 4 x 4 Conv2DMMProgram.
 */
import type { TensorInfo } from '@tensorflow/tfjs';
import { type ConvGeometry, DEFAULT_WORKGROUP_STORAGE, type SplitGemmPlan, pickTile, planSplitGemm } from './plan.js';
import { type GpuProgram, type ProgramUniform, type WebGpuBackendLike, convConstants, convShaderKey, gemmMainSource, gemmWorkgroupSize, im2colSource, padUniforms, sumSplits, usesWideLoads, wgslReads, workgroupStorage } from './program.js';
import { webGpuKernelSettings } from './settings.js';

export type ForwardActivation = 'linear' | 'relu';

/**
 * Tiles the forward convolution (M = n*oh*ow pixels, N = co, K = fh*fw*ci): one workgroup per
 * TM pixels x TN output channels. With `splittable` (no bias, no activation: the partial sums
 * add up to the output) and the `splitForward` setting, K is split when the tiles alone give
 * few workgroups (ResNet-18's 4 x 4 x 512 stage at batch 256: 128 tiles, K = 4,608).
 */
export function planForward(c: ConvGeometry, storageBytes = DEFAULT_WORKGROUP_STORAGE, splittable = false): SplitGemmPlan {
  const m = c.batchSize * c.outHeight * c.outWidth;
  const n = c.outChannels;
  const k = c.filterHeight * c.filterWidth * c.inChannels;
  const tile = pickTile(m, n, storageBytes);
  if (splittable && webGpuKernelSettings().splitForward) return planSplitGemm(m, n, k, tile);
  return { tile, m, n, k, splits: 1, kPerSplit: k, dispatch: [Math.ceil(n / tile.tn), Math.ceil(m / tile.tm), 1] };
}

export class ForwardProgram implements GpuProgram {
  variableNames: string[];
  uniforms = 'padTop : i32, padLeft : i32,';
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [3], y: [0, 1, 2] };
  dispatch: [number, number, number];
  workgroupSize = gemmWorkgroupSize();
  variableComponents?: number[];

  constructor(
    private readonly conv: ConvGeometry,
    private readonly plan: SplitGemmPlan,
    private readonly hasBias: boolean,
    private readonly activation: ForwardActivation,
  ) {
    if (plan.splits > 1 && (hasBias || activation !== 'linear')) throw new Error('a split forward convolution takes no bias or activation');
    this.variableNames = hasBias ? ['x', 'w', 'bias'] : ['x', 'w'];
    if (usesWideLoads(conv)) this.variableComponents = hasBias ? [4, 4, 1] : [4, 4];
    // Split: partial sums [splits, M, N], the output's layout once summed.
    this.outputShape = plan.splits > 1 ? [plan.splits, plan.m, plan.n] : [conv.batchSize, conv.outHeight, conv.outWidth, conv.outChannels];
    if (plan.splits > 1) {
      this.uniforms += ' kPerSplit : i32,';
      this.dispatchLayout = { x: [2], y: [0, 1] };
    }
    this.dispatch = plan.dispatch;
    this.shaderKey = `${convShaderKey('cifarConvForward', conv, plan.tile)}_${hasBias ? 'bias' : 'nobias'}_${activation}${plan.splits > 1 ? '_splitk' : ''}`;
  }

  uniformData(): ProgramUniform {
    const pads = padUniforms(this.conv);
    return this.plan.splits > 1 ? [...pads, { type: 'int32', data: [this.plan.kPerSplit] }] : pads;
  }

  getUserCode(): string {
    const { conv, plan } = this;
    const { tm, tn, tk } = plan.tile;
    const biased = this.hasBias ? 'v + bias[col]' : 'v';
    const out = this.activation === 'relu' ? `max(${biased}, 0.0)` : biased;
    const split = plan.splits > 1;
    const kEnd = split ? 'kEnd' : 'CG_K';
    const wide = usesWideLoads(conv);
    const r = wgslReads(wide);
    // Split: this workgroup's slice of K (kEnd), and rows from the partials' [splits, M, N].
    const prologue = split
      ? `
    let split = i32(workgroupId.z);
    let kBegin = split * uniforms.kPerSplit;
    kEnd = min(CG_K, kBegin + uniforms.kPerSplit);
    rows = uniforms.outShape[1];
    let numTiles = (uniforms.kPerSplit + ${tk - 1}) / ${tk};
    let outBase = split * rows * CG_COUT;`
      : `
    rows = uniforms.outShape[0] * CG_OH * CG_OW;
    let numTiles = ${Math.ceil(plan.k / tk)};
    let kBegin = 0;
    let outBase = 0;`;
    return `
${convConstants(conv)}
  const CG_K = ${plan.k};
  var<private> rows : i32;${split ? '\n  var<private> kEnd : i32;' : ''}

${im2colSource(wide)}

  // A[m, k]: the im2col matrix of x (wide: k..k+3, 4 channels of one tap, as one vec4 load).
  fn readA${r.suffix}(k : i32, m : i32) -> ${r.type} {
    if (k >= ${kEnd} || m >= rows) { return ${r.zero}; }
    return im2col${r.suffix}(m, k);
  }

  // B[k, co]: the filter as a [fh*fw*ci, co] matrix, already contiguous (wide: co..co+3).
  fn readB${r.suffix}(k : i32, col : i32) -> ${r.type} {
    if (k >= ${kEnd} || col >= CG_COUT) { return ${r.zero}; }
    return w[${r.index('k * CG_COUT + col')}];
  }

  ${gemmMainSource({
    tile: plan.tile,
    prologue: `
    let col0 = i32(workgroupId.x) * ${tn};
    let row0 = i32(workgroupId.y) * ${tm};${prologue}`,
    aAlongK: true,
    bAlongK: false,
    aWide: wide,
    bWide: wide,
    store: `if (row < rows && col < CG_COUT) { result[outBase + row * CG_COUT + col] = ${out}; }`,
  })}`;
  }
}

/** Runs the forward convolution for a supported geometry (see `isSupported`). */
export function runForward(backend: WebGpuBackendLike, x: TensorInfo, filter: TensorInfo, bias: TensorInfo | undefined, activation: ForwardActivation, conv: ConvGeometry): TensorInfo {
  const plan = planForward(conv, workgroupStorage(backend), bias === undefined && activation === 'linear');
  const program = new ForwardProgram(conv, plan, bias !== undefined, activation);
  const out = backend.runWebGPUProgram(program, bias ? [x, filter, bias] : [x, filter], 'float32', program.uniformData());
  return plan.splits === 1 ? out : sumSplits(backend, out, plan.splits, [conv.batchSize, conv.outHeight, conv.outWidth, conv.outChannels]);
}
