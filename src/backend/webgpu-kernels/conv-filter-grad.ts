/**
 * Conv2DBackpropFilter for the WebGPU backend as a tiled implicit GEMM with split-K:
 * dW[(kh,kw,ci), co] = sum over k = (n,oh,ow) of x[n, oh*s+kh-pad, ow*s+kw-pad, ci] * dy[k, co].
 * The stock kernel gives one thread per output and loops over the whole batch in it, which
 * leaves a large GPU nearly idle for the early ResNet stages (576 x 64 outputs, K = 262,144).
 */
import * as tf from '@tensorflow/tfjs';
import type { TensorInfo } from '@tensorflow/tfjs';
import { type ConvGeometry, type FilterGradPlan, planFilterGrad } from './plan.js';
import { type OperandScale, dyScale, runScaled, scaledInterface } from './matrix.js';
import { type GpuProgram, type ProgramUniform, type WebGpuBackendLike, convConstants, convShaderKey, gemmMainSource, gemmWorkgroupSize, im2colSource, padUniforms, sumSplits, usesWideLoads, wgslReads, workgroupStorage } from './program.js';

export class FilterGradProgram implements GpuProgram {
  variableNames = ['x', 'dy'];
  uniforms = 'padTop : i32, padLeft : i32, gemmK : i32, kPerSplit : i32,';
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[]; y: number[] };
  dispatch: [number, number, number];
  workgroupSize = gemmWorkgroupSize();
  variableComponents?: number[];
  /** float16 operands: dy (B) is scaled by its largest magnitude, from the partial maxima in input `dyMax`. */
  readonly scale?: OperandScale;

  constructor(
    private readonly conv: ConvGeometry,
    private readonly plan: FilterGradPlan,
  ) {
    this.scale = dyScale(1, plan.k * conv.outChannels);
    const scaled = scaledInterface(this.scale, this.variableNames, usesWideLoads(conv) ? [4, 4] : undefined);
    this.variableNames = scaled.variableNames;
    this.variableComponents = scaled.variableComponents;
    // Split: partial sums [splits, M, N]; otherwise straight into the filter's [fh, fw, ci, co].
    this.outputShape = plan.splits > 1 ? [plan.splits, plan.m, plan.n] : [conv.filterHeight, conv.filterWidth, conv.inChannels, conv.outChannels];
    const rank = this.outputShape.length;
    this.dispatchLayout = { x: [rank - 1], y: [...Array(rank - 1).keys()] };
    this.dispatch = plan.dispatch;
    // Only the batch-dependent K stays a uniform; everything else is in the code and the key.
    this.shaderKey = `${convShaderKey('cifarConvFilterGrad', conv, plan.tile)}${scaled.keySuffix}`;
  }

  uniformData(): ProgramUniform {
    const { conv, plan } = this;
    return [
      ...padUniforms(conv),
      { type: 'int32', data: [plan.k] },
      { type: 'int32', data: [plan.kPerSplit] },
    ];
  }

  getUserCode(): string {
    const { conv, plan } = this;
    const wide = usesWideLoads(conv);
    const r = wgslReads(wide);
    return `
${convConstants(conv)}
  const CG_M = ${plan.m};
  const CG_N = ${plan.n};
  var<private> kEnd : i32;

${im2colSource(wide)}

  // A[k, m]: the im2col matrix of x (pixel k, filter row m; wide: m..m+3, 4 channels of one tap).
  fn readA${r.suffix}(k : i32, m : i32) -> ${r.type} {
    if (k >= kEnd || m >= CG_M) { return ${r.zero}; }
    return im2col${r.suffix}(k, m);
  }

  // B[k, co]: dy as a [n*oh*ow, co] matrix, already contiguous (wide: co..co+3).
  fn readB${r.suffix}(k : i32, col : i32) -> ${r.type} {
    if (k >= kEnd || col >= CG_N) { return ${r.zero}; }
    return dy[${r.index('k * CG_N + col')}];
  }

  ${gemmMainSource({
    tile: plan.tile,
    prologue: `
    let col0 = i32(workgroupId.x) * ${plan.tile.tn};
    let row0 = i32(workgroupId.y) * ${plan.tile.tm};
    let split = i32(workgroupId.z);
    let kBegin = split * uniforms.kPerSplit;
    kEnd = min(uniforms.gemmK, kBegin + uniforms.kPerSplit);
    let numTiles = (uniforms.kPerSplit + ${plan.tile.tk - 1}) / ${plan.tile.tk};
    let outBase = split * CG_M * CG_N;`,
    aAlongK: false,
    bAlongK: false,
    aWide: wide,
    bWide: wide,
    store: 'if (row < CG_M && col < CG_N) { result[outBase + row * CG_N + col] = v; }',
    scale: this.scale,
  })}`;
  }
}

/** Runs the filter gradient for a supported convolution (see `isSupported`). */
export function runFilterGrad(backend: WebGpuBackendLike, x: TensorInfo, dy: TensorInfo, conv: ConvGeometry & tf.backend_util.Conv2DInfo): TensorInfo {
  const plan = planFilterGrad(conv, workgroupStorage(backend));
  const program = new FilterGradProgram(conv, plan);
  const out = runScaled(backend, program, [x, dy], dy, program.scale);
  return plan.splits === 1 ? out : sumSplits(backend, out, plan.splits, conv.filterShape);
}
