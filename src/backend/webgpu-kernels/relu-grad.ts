/**
 * The gradient of ReLU in one WebGPU dispatch: dx = dy · step(x).
 *
 * tfjs-core's Relu gradient is `mul(dy, cast(step(x)))`: a Step program writes a full-size
 * tensor and a Multiply program reads it back, two dispatches and one extra pass over the
 * activation for each of ResNet-18's 17 ReLUs every step. Registered as the tfjs kernel
 * `CifarReluGrad` for the webgpu backend (`registerWebGpuKernels`); the Relu gradient
 * (backend/gradients.ts) runs it where the active backend has it, and tfjs' ops elsewhere.
 * Like tfjs' Step, a NaN in x gives NaN (dy · NaN), and x = 0 gives 0.
 *
 * Also relu(a + b) in one dispatch (`runAddRelu`): a residual block's add and the ReLU after it,
 * fused in training by model/training-graph.ts' `useFusedAddRelu`.
 */
import type { TensorInfo } from '@tensorflow/tfjs';
import { FLAT_INDEX_WGSL, FLAT_THREADS, flatDispatch, type GpuProgram, type WebGpuBackendLike } from './program.js';

export const RELU_GRAD = 'CifarReluGrad';

/** WGSL for ReLU's step at `v`: 1 above 0, else 0; NaN stays NaN (as tfjs' Step). */
export const stepWgsl = (v: string): string => `select(select(0.0, 1.0, ${v} > 0.0), ${v}, isnan(${v}))`;

/** WGSL for relu(`v`) as tfjs' Relu computes it: NaN stays NaN. */
export const reluWgsl = (v: string): string => `select(${v}, 0.0, ${v} < 0.0)`;

/**
 * An element-wise program of two float32 inputs of one shape, four elements an invocation:
 * `body` sets `out` from `a` and `b`, the inputs' elements (named `names` in the WGSL).
 */
class PairwiseProgram implements GpuProgram {
  variableNames: string[];
  outputShape: number[];
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [FLAT_THREADS, 1, 1];
  uniforms = 'count : i32,';

  constructor(
    shape: number[],
    readonly shaderKey: string,
    names: [string, string],
    private readonly body: string,
  ) {
    this.variableNames = names;
    this.outputShape = shape;
    this.dispatchLayout = { x: shape.map((_, i) => i) };
    const size = shape.reduce((n, d) => n * d, 1);
    this.dispatch = flatDispatch(Math.ceil(size / 4));
  }

  getUserCode(): string {
    const [a, b] = this.variableNames as [string, string];
    return `
  fn main(index : i32) {
    let first = ${FLAT_INDEX_WGSL} * 4;
    for (var k = 0; k < 4; k = k + 1) {
      let e = first + k;
      if (e < uniforms.count) {
        let a = ${a}[e];
        let b = ${b}[e];
        var out = 0.0;
        ${this.body}
        result[e] = out;
      }
    }
  }`;
  }
}

function runPairwise(backend: WebGpuBackendLike, a: TensorInfo, b: TensorInfo, key: string, names: [string, string], body: string): TensorInfo {
  const program = new PairwiseProgram([...a.shape], key, names, body);
  const count = a.shape.reduce((n, d) => n * d, 1);
  return backend.runWebGPUProgram(program, [a, b], 'float32', [{ type: 'int32', data: [count] }]);
}

/** dy · step(x) for `dy` and `x` of one shape (float32): step(x) is 1 above 0, else 0; NaN stays NaN (tfjs' Step does the same). */
export function runReluGrad(backend: WebGpuBackendLike, dy: TensorInfo, x: TensorInfo): TensorInfo {
  return runPairwise(backend, dy, x, 'cifarReluGrad', ['dy', 'x'], `out = a * ${stepWgsl('b')};`);
}

/** relu(a + b) for `a` and `b` of one shape (float32), as tfjs' Add then Relu compute it (NaN stays NaN). */
export function runAddRelu(backend: WebGpuBackendLike, a: TensorInfo, b: TensorInfo): TensorInfo {
  return runPairwise(backend, a, b, 'cifarAddRelu', ['lhs', 'rhs'], `let v = a + b;\n        out = ${reluWgsl('v')};`);
}
