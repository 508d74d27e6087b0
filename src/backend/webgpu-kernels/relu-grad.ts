/**
 * The gradient of ReLU in one WebGPU dispatch: dx = dy · step(x).
 *
 * tfjs-core's Relu gradient is `mul(dy, cast(step(x)))`: a Step program writes a full-size
 * tensor and a Multiply program reads it back, two dispatches and one extra pass over the
 * activation for each of ResNet-18's 17 ReLUs every step. Registered as the tfjs kernel
 * `CifarReluGrad` for the webgpu backend (`registerWebGpuKernels`); the Relu gradient
 * (backend/gradients.ts) runs it where the active backend has it, and tfjs' ops elsewhere.
 * Like tfjs' Step, a NaN in x gives NaN (dy · NaN), and x = 0 gives 0.
 */
import type { TensorInfo } from '@tensorflow/tfjs';
import { FLAT_INDEX_WGSL, FLAT_THREADS, flatDispatch, type GpuProgram, type WebGpuBackendLike } from './program.js';

export const RELU_GRAD = 'CifarReluGrad';

/** Inputs `dy` and `x` of one shape (float32); output dy · step(x), four elements an invocation. */
export class ReluGradProgram implements GpuProgram {
  variableNames = ['dy', 'x'];
  outputShape: number[];
  shaderKey = 'cifarReluGrad';
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [FLAT_THREADS, 1, 1];
  uniforms = 'count : i32,';

  constructor(shape: number[]) {
    this.outputShape = shape;
    this.dispatchLayout = { x: shape.map((_, i) => i) };
    const size = shape.reduce((n, d) => n * d, 1);
    this.dispatch = flatDispatch(Math.ceil(size / 4));
  }

  getUserCode(): string {
    return `
  fn main(index : i32) {
    let first = ${FLAT_INDEX_WGSL} * 4;
    for (var k = 0; k < 4; k = k + 1) {
      let e = first + k;
      if (e < uniforms.count) {
        let v = x[e];
        // step(v): 1 above 0, else 0; NaN stays NaN (tfjs' Step does the same).
        let s = select(select(0.0, 1.0, v > 0.0), v, isnan(v));
        result[e] = dy[e] * s;
      }
    }
  }`;
  }
}

/** Runs the program on `dy` and `x` (same shape, float32). */
export function runReluGrad(backend: WebGpuBackendLike, dy: TensorInfo, x: TensorInfo): TensorInfo {
  const program = new ReluGradProgram([...x.shape]);
  const count = x.shape.reduce((n, d) => n * d, 1);
  return backend.runWebGPUProgram(program, [dy, x], 'float32', [{ type: 'int32', data: [count] }]);
}
