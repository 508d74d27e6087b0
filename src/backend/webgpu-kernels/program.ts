/**
 * The parts of tfjs-backend-webgpu's program interface that our kernels use, declared here so
 * that this code type-checks without the backend's WebGPU type declarations, plus the tiled
 * GEMM body that both convolution gradients share.
 */
import * as tf from '@tensorflow/tfjs';
import type { Tensor, TensorInfo } from '@tensorflow/tfjs';
import { type ConvGeometry, DEFAULT_WORKGROUP_STORAGE, THREADS_PER_SIDE, type Tile } from './plan.js';
import { type OperandScale, matrixMainSource } from './matrix.js';
import { webGpuKernelSettings } from './settings.js';

/** tfjs-backend-webgpu's WebGPUProgram (dist/webgpu_program.d.ts), minus what we never set. */
export interface GpuProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout: { x: number[]; y?: number[]; z?: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  uniforms?: string;
  size?: boolean;
  getUserCode: () => string;
}

export type ProgramUniform = Array<{ type: 'int32' | 'uint32' | 'float32'; data: number[] }>;

/** What a kernel function needs from the WebGPU backend. */
export interface WebGpuBackendLike {
  runWebGPUProgram(program: GpuProgram, inputs: TensorInfo[], dtype: 'float32', uniforms?: ProgramUniform, output?: TensorInfo): TensorInfo;
  makeTensorInfo(shape: number[], dtype: 'float32'): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
  /** The GPUDevice tfjs opened (with the adapter's workgroup-memory limit, which tfjs asks for). */
  device?: { limits?: { maxComputeWorkgroupStorageSize?: number } };
}

/** A program's output as an engine-tracked tensor (so that tidy and dispose free it), like a kernel's. */
export function trackInfo(info: TensorInfo): Tensor {
  return tf.engine().makeTensorFromTensorInfo(info);
}

/** Threads per workgroup of the flat element-wise programs (the input, ReLU's gradient, SGD). */
export const FLAT_THREADS = 256;
/** Workgroups per grid dimension that WebGPU guarantees. */
export const MAX_GROUPS_X = 65535;

/** Workgroup grid for `invocations`, FLAT_THREADS a workgroup: x up to 65,535 groups, then rows of y. */
export function flatDispatch(invocations: number): [number, number, number] {
  const groups = Math.ceil(invocations / FLAT_THREADS);
  return [Math.max(1, Math.min(groups, MAX_GROUPS_X)), Math.max(1, Math.ceil(groups / MAX_GROUPS_X)), 1];
}

/** WGSL of a tfjs program's main: the invocation's index in a `flatDispatch` grid (tfjs' own flat index is unused). */
export const FLAT_INDEX_WGSL = `((i32(workgroupId.y) * ${MAX_GROUPS_X} + i32(workgroupId.x)) * ${FLAT_THREADS} + i32(localIndex))`;

/** Bytes of workgroup memory a program may use on this backend's device. */
export function workgroupStorage(backend: WebGpuBackendLike): number {
  return backend.device?.limits?.maxComputeWorkgroupStorageSize ?? DEFAULT_WORKGROUP_STORAGE;
}

/** The convolution's geometry as WGSL constants (CG_FH ... CG_COUT), shared by both gradient shaders. */
export function convConstants(conv: ConvGeometry): string {
  return `
  const CG_FH = ${conv.filterHeight};
  const CG_FW = ${conv.filterWidth};
  const CG_SH = ${conv.strideHeight};
  const CG_SW = ${conv.strideWidth};
  const CG_H = ${conv.inHeight};
  const CG_W = ${conv.inWidth};
  const CG_CIN = ${conv.inChannels};
  const CG_OH = ${conv.outHeight};
  const CG_OW = ${conv.outWidth};
  const CG_COUT = ${conv.outChannels};`;
}

/** The top and left padding as program uniforms (`padTop`, `padLeft`), which every conv shader declares. */
export function padUniforms(conv: ConvGeometry): ProgramUniform {
  return [
    { type: 'int32', data: [conv.padInfo.top] },
    { type: 'int32', data: [conv.padInfo.left] },
  ];
}

/**
 * WGSL `fn im2col(p, t) -> f32`: x at output pixel p = (n, oh, ow) under filter row
 * t = (kh, kw, ci), zero outside the image — the im2col matrix of x, gathered on the fly. Needs
 * `convConstants`, an input named x and the `padUniforms`. The wide version, `im2col4`, returns
 * rows t..t+3 (t a multiple of 4, ci..ci+3 of one tap) as one vec4 load of x bound as vec4s.
 */
export function im2colSource(wide = false): string {
  const r = wgslReads(wide);
  return `
  fn im2col${r.suffix}(p : i32, t : i32) -> ${r.type} {
    let ci = t % CG_CIN;
    let tap = t / CG_CIN;
    let kh = tap / CG_FW;
    let kw = tap - kh * CG_FW;
    let ow = p % CG_OW;
    let r = p / CG_OW;
    let oh = r % CG_OH;
    let b = r / CG_OH;
    let ih = oh * CG_SH + kh - uniforms.padTop;
    let iw = ow * CG_SW + kw - uniforms.padLeft;
    if (ih < 0 || ih >= CG_H || iw < 0 || iw >= CG_W) { return ${r.zero}; }
    return x[${r.index('((b * CG_H + ih) * CG_W + iw) * CG_CIN + ci')}];
  }`;
}

/**
 * WGSL pieces of a read of one value, or (wide) of four from an input bound as vec4s: the
 * function-name suffix (readA / readA4), the type, its zero, and the element index → array index.
 */
export function wgslReads(wide: boolean): { suffix: string; type: string; zero: string; index: (element: string) => string } {
  return wide
    ? { suffix: '4', type: 'vec4<f32>', zero: 'vec4<f32>()', index: (e) => `(${e}) / 4` }
    : { suffix: '', type: 'f32', zero: '0.0', index: (e) => e };
}

/**
 * Whether a convolution's GEMM programs load their operands as vec4s: the `wideLoads` setting,
 * and channel counts that keep every group of 4 within one filter tap and aligned.
 */
export function usesWideLoads(conv: ConvGeometry): boolean {
  return webGpuKernelSettings().wideLoads && conv.inChannels % 4 === 0 && conv.outChannels % 4 === 0;
}

/** The part of a GEMM program's shader key that names its tile and variant. */
export function gemmKey(tile: Tile): string {
  const matmul = { f32: '', 'tensor-cores': 'm', emulated: 'e' }[webGpuKernelSettings().matmul];
  return `${tile.tm}x${tile.tn}x${tile.tk}${webGpuKernelSettings().prefetch ? 'p' : ''}${usesVec4(tile) ? 'v' : ''}${matmul}`;
}

/** A GEMM program's workgroup: 16 x 16 threads, or 256 in a row for subgroup matrices (whose x must be a multiple of the subgroup size). */
export function gemmWorkgroupSize(): [number, number, number] {
  return webGpuKernelSettings().matmul === 'f32' ? [THREADS_PER_SIDE, THREADS_PER_SIDE, 1] : [THREADS_PER_SIDE * THREADS_PER_SIDE, 1, 1];
}

/** Whether a tile's program reads workgroup memory as vec4s: the setting, and 4 or 8 rows and columns per thread. */
export function usesVec4(tile: Tile): boolean {
  return webGpuKernelSettings().vec4 && webGpuKernelSettings().matmul === 'f32' && (tile.tm / THREADS_PER_SIDE) % 4 === 0 && (tile.tn / THREADS_PER_SIDE) % 4 === 0;
}

/**
 * The shader key of a convolution program: every size but the batch is a constant in its code
 * (divisions by constants compile to multiplies), so all of them are in the key, with the tile
 * and variant (tfjs adds ranks and dtypes only).
 */
export function convShaderKey(name: string, conv: ConvGeometry, tile: Tile): string {
  const dims = [conv.inHeight, conv.inWidth, conv.inChannels, conv.outHeight, conv.outWidth, conv.outChannels].join('x');
  return `${name}_${conv.filterHeight}x${conv.filterWidth}_s${conv.strideHeight}x${conv.strideWidth}_${dims}_${gemmKey(tile)}${usesWideLoads(conv) ? 'w' : ''}`;
}

export interface GemmSource {
  tile: Tile;
  /** WGSL statements at the top of main; must define `row0`, `col0`, `kBegin` and `numTiles` (workgroup-uniform). */
  prologue: string;
  /** Load order into workgroup memory: consecutive threads along K (when K is the contiguous axis in memory) or along rows/columns. */
  aAlongK: boolean;
  bAlongK: boolean;
  /**
   * Load the operand from memory four values at a time through `readA4(k, row)` / `readB4(k, col)`
   * (vec4s of k..k+3 when the operand is loaded along K, else of row..row+3 or col..col+3), which
   * the user code must then define; the operand's input is bound as an array of vec4s.
   */
  aWide?: boolean;
  bWide?: boolean;
  /** WGSL statement that stores `v` at (`row`, `col`). */
  store: string;
  /** With float16 operands (matmul setting other than f32): the operand that is dy, scaled before its conversion. */
  scale?: OperandScale;
}

/**
 * WGSL of `main()` for C[row, col] = sum_k readA(k, row) * readB(k, col) over one workgroup
 * tile: A and B tiles staged in workgroup memory TK deep, each thread accumulating a
 * (tm/16) x (tn/16) block in registers. The user code must define `readA` and `readB`.
 *
 * Which rows and columns a thread holds:
 * - scalar layout: rows ty + 16i and columns tx + 16j, so that neighbouring threads read
 *   neighbouring words of workgroup memory;
 * - vec4 layout (`usesVec4`): runs of 4, rows 64g + 4ty + e and columns 64h + 4tx + f, read as
 *   one vec4 each (2 + 2 loads per K step for an 8 x 8 block instead of 8 + 8; the 16 threads of
 *   a row read 256 consecutive bytes).
 * With a matmul setting other than f32, the float16 subgroup-matrix body of matrix.ts instead.
 */
export function gemmMainSource(s: GemmSource): string {
  if (webGpuKernelSettings().matmul !== 'f32') return matrixMainSource(s);
  const { tm, tn, tk } = s.tile;
  const side = THREADS_PER_SIDE;
  const rm = tm / side;
  const rn = tn / side;
  const vec = usesVec4(s.tile);
  const { declarations, loop, strides } = stagedLoopSource(s, {
    vec,
    element: 'f32',
    // Padding where threads store along K, so those stores hit distinct banks (a vec4 in the vec4 layout).
    pad: (alongK) => (alongK ? (vec ? 4 : 1) : 0),
    convert: (_operand, value) => value,
  });
  const [as, bs] = strides;
  const lanes = ['x', 'y', 'z', 'w'];
  const acc = range(rm).flatMap((i) => range(rn).map((j) => `c${i}_${j}`));
  // Per K step: this thread's A values a0.. and B values b0.. (vec4s in the vec4 layout), then the outer product.
  const aOf = (i: number): string => (vec ? `a${i >> 2}.${lanes[i & 3]}` : `a${i}`);
  const bOf = (j: number): string => (vec ? `b${j >> 2}.${lanes[j & 3]}` : `b${j}`);
  const reads = vec
    ? `${range(rm / 4).map((g) => `let a${g} = cgA[kk * ${as / 4} + ty + ${g * side}];`).join(' ')}
        ${range(rn / 4).map((h) => `let b${h} = cgB[kk * ${bs / 4} + tx + ${h * side}];`).join(' ')}`
    : `${range(rm).map((i) => `let a${i} = cgA[kk * ${as} + ty + ${i * side}];`).join(' ')}
        ${range(rn).map((j) => `let b${j} = cgB[kk * ${bs} + tx + ${j * side}];`).join(' ')}`;
  const compute = `for (var kk = 0; kk < ${tk}; kk++) {
        ${reads}
        ${range(rm).flatMap((i) => range(rn).map((j) => `c${i}_${j} = fma(${aOf(i)}, ${bOf(j)}, c${i}_${j});`)).join('\n        ')}
      }`;
  // Row and column of accumulator (i, j) within the tile.
  const rowOf = (i: number): string => (vec ? `${(i >> 2) * 4 * side} + ty * 4 + ${i & 3}` : `ty + ${i * side}`);
  const colOf = (j: number): string => (vec ? `${(j >> 2) * 4 * side} + tx * 4 + ${j & 3}` : `tx + ${j * side}`);
  return `
  ${declarations}

  fn main() {
    let tx = i32(localId.x);
    let ty = i32(localId.y);
    let lid = i32(localIndex);
    ${s.prologue}
    ${acc.map((c) => `var ${c} = 0.0;`).join(' ')}
    ${loop(compute)}
    ${range(rm)
      .flatMap((i) => range(rn).map((j) => `{ let row = row0 + ${rowOf(i)}; let col = col0 + ${colOf(j)}; let v = c${i}_${j}; ${s.store} }`))
      .join('\n    ')}
  }`;
}

const range = (n: number): number[] => [...Array(n).keys()];

/** How a GEMM program keeps its staged tiles in workgroup memory. */
export interface StagingLayout {
  /** Cells are vec4s of 4 rows or columns (the f32 programs' vec4 layout, `usesVec4`). */
  vec: boolean;
  element: 'f32' | 'f16';
  /** Elements of padding per K row of an operand, given whether threads store it along K. */
  pad: (alongK: boolean) => number;
  /** The WGSL stored in a cell for an f32 value of operand 0 (A) or 1 (B). */
  convert: (operand: 0 | 1, value: string) => string;
}

/**
 * The workgroup arrays `cgA` and `cgB` (A and B tiles, TK rows of TM or TN cells, K-major: cell
 * (kk, mm) at kk * stride + mm) and the K loop that fills them, TK deep per step, with `compute`
 * run on each staged tile between two barriers. With the prefetch setting the next tile's global
 * reads are issued before this tile's arithmetic, so their latency overlaps it (one register per
 * staged element). Needs `lid`, and `kBegin` and `numTiles` (workgroup-uniform) from the prologue.
 */
export function stagedLoopSource(s: GemmSource, layout: StagingLayout): { declarations: string; loop: (compute: string) => string; strides: [number, number] } {
  const { tm, tn, tk } = s.tile;
  const threads = THREADS_PER_SIDE * THREADS_PER_SIDE;
  const { vec } = layout;
  const as = tm + layout.pad(s.aAlongK);
  const bs = tn + layout.pad(s.bAlongK);
  interface Operand {
    index: 0 | 1;
    smem: string;
    reg: string;
    stride: number;
    width: number;
    alongK: boolean;
    wide: boolean;
    read: string;
    origin: string;
  }
  const operands: Operand[] = [
    { index: 0, smem: 'cgA', reg: 'pa', stride: as, width: tm, alongK: s.aAlongK, wide: s.aWide === true, read: s.aWide ? 'readA4' : 'readA', origin: 'row0' },
    { index: 1, smem: 'cgB', reg: 'pb', stride: bs, width: tn, alongK: s.bAlongK, wide: s.bWide === true, read: s.bWide ? 'readB4' : 'readB', origin: 'col0' },
  ];
  // The loads of a tile each thread makes: (kk, mm) of the first element, r = 0, 1, ... A wide
  // load covers kk..kk+3 (along K) or mm..mm+3; when a tile has fewer of them than threads x r,
  // the last round is guarded by the load's index.
  const slots = (o: Operand): Array<{ kk: string; mm: string; guard: string }> => {
    const count = (tk * o.width) / (o.wide ? 4 : 1);
    return range(Math.ceil(count / threads)).map((r) => {
      const idx = `(lid + ${r * threads})`;
      const guard = (r + 1) * threads > count ? `${idx} < ${count}` : '';
      if (!o.wide) return o.alongK ? { kk: `${idx} % ${tk}`, mm: `${idx} / ${tk}`, guard } : { kk: `${idx} / ${o.width}`, mm: `${idx} % ${o.width}`, guard };
      return o.alongK ? { kk: `4 * (${idx} % ${tk / 4})`, mm: `${idx} / ${tk / 4}`, guard } : { kk: `${idx} / ${o.width / 4}`, mm: `4 * (${idx} % ${o.width / 4})`, guard };
    });
  };
  // Element (kk, mm) of a staged tile in workgroup memory.
  const p = (e: string): string => (/^\w+$/.test(e) ? e : `(${e})`);
  const cellAt = (o: Operand, kk: string, mm: string): string =>
    vec ? `${o.smem}[${p(kk)} * ${o.stride / 4} + (${p(mm)} >> 2u)][${p(mm)} & 3]` : `${o.smem}[${p(kk)} * ${o.stride} + ${mm}]`;
  const lanes = ['x', 'y', 'z', 'w'];
  // Stores value `v` of a load at (kk, mm) into workgroup memory: 4 cells for a wide load (one
  // vec4 store when it runs along rows or columns in the vec4 layout).
  const put = (o: Operand, v: string): string => {
    if (!o.wide) return `${cellAt(o, 'kk', 'mm')} = ${layout.convert(o.index, v)};`;
    if (!o.alongK && vec) return `${o.smem}[kk * ${o.stride / 4} + (mm >> 2u)] = ${layout.convert(o.index, v)};`;
    return range(4)
      .map((e) => `${o.alongK ? cellAt(o, `kk + ${e}`, 'mm') : cellAt(o, 'kk', `mm + ${e}`)} = ${layout.convert(o.index, `${v}.${lanes[e]}`)};`)
      .join(' ');
  };
  const guarded = (guard: string, body: string): string => (guard ? `if (${guard}) { ${body} }` : `{ ${body} }`);
  // Straight into workgroup memory, or (prefetch) into registers and from there into workgroup memory.
  const load = (into: 'smem' | 'reg'): string =>
    operands
      .flatMap((o) =>
        slots(o).map(({ kk, mm, guard }, r) => {
          const value = `${o.read}(kBase + kk, ${o.origin} + mm)`;
          // A wide value goes to up to four cells: read it once.
          const store = o.wide ? `let v = ${value}; ${put(o, 'v')}` : put(o, value);
          return guarded(guard, `let kk = ${kk}; let mm = ${mm}; ${into === 'smem' ? store : `${o.reg}${r} = ${value};`}`);
        }),
      )
      .join('\n      ');
  const stage = operands
    .flatMap((o) => slots(o).map(({ kk, mm, guard }, r) => guarded(guard, `let kk = ${kk}; let mm = ${mm}; ${put(o, `${o.reg}${r}`)}`)))
    .join('\n      ');
  const loop = (compute: string): string =>
    webGpuKernelSettings().prefetch
      ? `${operands.flatMap((o) => slots(o).map((_, r) => `var ${o.reg}${r} = ${o.wide ? 'vec4<f32>()' : '0.0'};`)).join(' ')}
    { let kBase = kBegin; ${load('reg')} }
    for (var t = 0; t < numTiles; t++) {
      ${stage}
      workgroupBarrier();
      if (t + 1 < numTiles) {
        let kBase = kBegin + (t + 1) * ${tk};
        ${load('reg')}
      }
      ${compute}
      workgroupBarrier();
    }`
      : `for (var t = 0; t < numTiles; t++) {
      let kBase = kBegin + t * ${tk};
      ${load('smem')}
      workgroupBarrier();
      ${compute}
      workgroupBarrier();
    }`;
  const element = vec ? `vec4<${layout.element}>` : layout.element;
  const words = vec ? 4 : 1;
  return {
    declarations: `var<workgroup> cgA : array<${element}, ${(tk * as) / words}>;
  var<workgroup> cgB : array<${element}, ${(tk * bs) / words}>;`,
    loop,
    strides: [as, bs],
  };
}

/** Sums split-K partials [splits, size] into one output. */
export class SplitSumProgram implements GpuProgram {
  variableNames = ['partials'];
  uniforms = 'splits : i32,';
  outputShape: number[];
  shaderKey = 'cifarSplitSum';
  dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];
  size = true;

  constructor(outputShape: number[]) {
    this.outputShape = outputShape;
    this.dispatchLayout = { x: outputShape.map((_, i) => i) };
    this.dispatch = [Math.ceil(outputShape.reduce((a, b) => a * b, 1) / 64), 1, 1];
  }

  getUserCode(): string {
    return `
  fn main(index : i32) {
    if (index < uniforms.size) {
      var sum = 0.0;
      for (var s = 0; s < uniforms.splits; s++) {
        sum = sum + partials[s * uniforms.size + index];
      }
      setOutputAtIndex(index, sum);
    }
  }`;
  }
}

/** Sums the partials [splits, ...] of a split-K program into `shape`, disposing of them. */
export function sumSplits(backend: WebGpuBackendLike, partials: TensorInfo, splits: number, shape: number[]): TensorInfo {
  const sum = new SplitSumProgram(shape);
  const result = backend.runWebGPUProgram(sum, [partials], 'float32', [{ type: 'int32', data: [splits] }]);
  backend.disposeData(partials.dataId);
  return result;
}
