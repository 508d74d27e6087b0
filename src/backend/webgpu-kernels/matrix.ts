/**
 * Mixed precision for the convolutions' GEMMs: the same tiles as program.ts' float32 body, staged
 * in workgroup memory as float16 and multiplied 16 x 16 x 16 at a time with WGSL subgroup
 * matrices (`chromium_experimental_subgroup_matrix`: Vulkan cooperative matrices, the tensor
 * cores of an NVIDIA GPU; on a device of 8 x 8 x 8 ones, such as lavapipe since Mesa 25.1, each
 * step is eight of those), accumulating in float32. Weights, activations and gradients stay
 * float32 in memory; only the multiplications see float16 copies.
 *
 * float16 keeps 11 significant bits (like TF32, PyTorch's default for convolutions on these GPUs)
 * but only 5 exponent bits: normal from 6.1e-5 to 65,504. Activations and weights fit; loss
 * gradients do not (dy is often 1e-6 to 1e-3, where float16 is subnormal or zero). So the operand
 * that is dy is scaled first by a power of two that puts its largest magnitude between 2^13 and
 * 2^14 (from a max-abs pass over dy, `AbsMaxProgram`), and the result is scaled back, exactly.
 * This is per-tensor loss scaling done by each GEMM for itself: no loss-scale state, no skipped
 * steps, and nothing else in training changes.
 *
 * Mode `emulated` writes the three subgroup-matrix operations (load, multiply-accumulate, store)
 * out in plain WGSL with the same arguments and the semantics of the specification
 * (docs/dawn/features/subgroup_matrix.md in Dawn), each invocation computing its share of each
 * 16 x 16 result. It needs only `shader-f16`, which lavapipe offers, so the tiling, the
 * offsets and strides, the float16 staging and the scaling are all tested without a GPU.
 */
import type { TensorInfo } from '@tensorflow/tfjs';
import { THREADS_PER_SIDE, type Tile } from './plan.js';
import type { GemmSource, GpuProgram, ProgramUniform, WebGpuBackendLike } from './program.js';
import { stagedLoopSource } from './program.js';
import { type MatmulMode, webGpuKernelSettings } from './settings.js';

/** The subgroup-matrix shape used: 16 x 16 x 16, float16 operands, float32 results. */
export const MATRIX_SIDE = 16;
const THREADS = THREADS_PER_SIDE * THREADS_PER_SIDE;
/** float16's largest finite value. */
const F16_MAX = 65504;
/** The scaled operand's largest magnitude lands in [SCALE_TARGET / 2, SCALE_TARGET]: 4x below F16_MAX. */
const SCALE_TARGET = 16384;
/** Partial maxima of the max-abs pass: at most one per thread of a GEMM workgroup, which reduces them. */
export const MAX_PARTIALS = THREADS;

let subgroupSize = 32;
let hardwareSide: HardwareSide = 16;

/**
 * The side of the device's own subgroup matrices: 16 (16 x 16 x 16, NVIDIA's), or 8 (8 x 8 x 8,
 * lavapipe's since Mesa 25.1), where each 16 x 16 x 16 step of the GEMMs is written as eight
 * 8 x 8 x 8 products (the tiling, the staging and the store stay those of 16).
 */
export type HardwareSide = 8 | 16;

export function matrixHardwareSide(): HardwareSide {
  return hardwareSide;
}

export function setMatrixHardwareSide(side: HardwareSide): void {
  hardwareSide = side;
}

/**
 * The subgroup size the matrix programs are written for: the device's (fixed) size with tensor
 * cores, set when the backend starts; 32 (NVIDIA's) for the emulation.
 */
export function matrixSubgroupSize(): number {
  return webGpuKernelSettings().matmul === 'emulated' ? 32 : subgroupSize;
}

export function setMatrixSubgroupSize(size: number): void {
  subgroupSize = size;
}

let fallback: string | undefined;

/** Why the float16 GEMMs asked for did not start (the float32 ones ran instead), for reports; undefined when they did or were not asked for. */
export function matmulFallback(): string | undefined {
  return fallback;
}

/** Records why the float16 GEMMs did not start (undefined: they did, or were not asked for). */
export function setMatmulFallback(why: string | undefined): void {
  fallback = why;
}

let tried: MatmulMode = 'f32';

/** The mode the backend's last start tried (asked for, or chosen by `auto`), whether or not it passed its start-up check. */
export function matmulTried(): MatmulMode {
  return tried;
}

export function setMatmulTried(mode: MatmulMode): void {
  tried = mode;
}

/**
 * What CIFAR_WEBGPU_MATMUL=auto (the default) tries on a device: the tensor cores where a hardware
 * adapter offers them (`matrixSupport`), else float32. Never on a software adapter: lavapipe's
 * subgroup matrices run on the CPU, slower than its float32 (17 against 28 img/s training a
 * ResNet-10 on this project's 2-core machine); nor on Dawn's null backend, which runs no shader.
 * @example autoMatmul({ software: false, runsNothing: false }, { ok: true, subgroupSize: 32, side: 16 }) // 'tensor-cores'
 */
export function autoMatmul(adapter: { software: boolean; runsNothing: boolean }, support: MatrixSupport): MatmulMode {
  return support.ok && !adapter.software && !adapter.runsNothing ? 'tensor-cores' : 'f32';
}

/**
 * How the device's WGSL compiler writes a subgroup matrix's memory layout: as a template argument
 * (`subgroupMatrixLoad<T, col_major>(p, offset, stride)`, `subgroupMatrixStore<row_major>(p,
 * offset, value, stride)`: the Dawn in the `webgpu` package this project installs, whose Tint
 * keeps the layout as a template parameter), or as a bool argument before the stride (the
 * experimental feature's first form, in older Dawns). `pickMatrixSyntax` asks the device.
 */
export type MatrixSyntax = 'layout' | 'bool';

let syntax: MatrixSyntax = 'layout';

export function matrixSyntax(): MatrixSyntax {
  return syntax;
}

export function setMatrixSyntax(s: MatrixSyntax): void {
  syntax = s;
}

/** WGSL loading a subgroup matrix of type `type` from `&ptr` at `offset`, rows or columns `stride` apart. */
export function matrixLoad(s: MatrixSyntax, type: string, ptr: string, offset: string, columnMajor: boolean, stride: string): string {
  return s === 'layout'
    ? `subgroupMatrixLoad<${type}, ${columnMajor ? 'col_major' : 'row_major'}>(&${ptr}, ${offset}, ${stride})`
    : `subgroupMatrixLoad<${type}>(&${ptr}, ${offset}, ${columnMajor}, ${stride})`;
}

/** WGSL storing subgroup matrix `value` to `&ptr` at `offset`, rows or columns `stride` apart. */
export function matrixStore(s: MatrixSyntax, ptr: string, offset: string, value: string, columnMajor: boolean, stride: string): string {
  return s === 'layout'
    ? `subgroupMatrixStore<${columnMajor ? 'col_major' : 'row_major'}>(&${ptr}, ${offset}, ${value}, ${stride})`
    : `subgroupMatrixStore(&${ptr}, ${offset}, ${value}, ${columnMajor}, ${stride})`;
}

/** A compute shader using the three operations as the GEMMs do (f16 operands from workgroup memory, f32 results), written in `s`. */
export function matrixProbeSource(s: MatrixSyntax, side: HardwareSide = hardwareSide): string {
  const marker = '// cifar-enable: f16 subgroups chromium_experimental_subgroup_matrix';
  // The directives written out, without the marker (a device's createShaderModule would add them again).
  return `${withEnables(marker).replace(marker, '').trim()}
var<workgroup> probeA : array<f16, ${side * side}>;
var<workgroup> probeC : array<f32, ${side * side}>;
@group(0) @binding(0) var<storage, read_write> probeOut : array<f32>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(local_invocation_index) lid : u32) {
  probeA[lid % ${side * side}u] = f16(lid);
  workgroupBarrier();
  let a = ${matrixLoad(s, `subgroup_matrix_left<f16, ${side}, ${side}>`, 'probeA', '0u', true, `${side}u`)};
  let b = ${matrixLoad(s, `subgroup_matrix_right<f16, ${side}, ${side}>`, 'probeA', '0u', false, `${side}u`)};
  var acc = subgroup_matrix_result<f32, ${side}, ${side}>();
  acc = subgroupMatrixMultiplyAccumulate(a, b, acc);
  ${matrixStore(s, 'probeC', '0u', 'acc', false, `${side}u`)};
  workgroupBarrier();
  probeOut[lid] = probeC[lid % ${side * side}u];
}`;
}

interface ProbeDevice {
  createShaderModule(d: { code: string }): { getCompilationInfo(): Promise<{ messages: ReadonlyArray<{ type: string; message: string }> }> };
  pushErrorScope?(filter: 'validation'): void;
  popErrorScope?(): Promise<unknown>;
}

/**
 * Which subgroup-matrix syntax the device's WGSL compiler takes: the probe shader compiled in
 * each, `layout` first; the first without an error, or else the first line of `layout`'s error.
 * Each compile runs in a validation error scope, so that a rejected probe is not reported as the
 * device's error (which would fail a training run).
 */
export async function pickMatrixSyntax(device: ProbeDevice): Promise<{ syntax: MatrixSyntax } | { error: string }> {
  let first: string | undefined;
  for (const s of ['layout', 'bool'] as const) {
    device.pushErrorScope?.('validation');
    const module = device.createShaderModule({ code: matrixProbeSource(s) });
    await device.popErrorScope?.();
    const info = await module.getCompilationInfo();
    const error = info.messages.find((m) => m.type === 'error');
    if (error === undefined) return { syntax: s };
    first ??= error.message.split('\n')[0];
  }
  return { error: first ?? 'no message' };
}

/** Subgroups whose 16 x 16 results pass through workgroup memory at a time (NVIDIA's 256 / 32). */
const RESULT_SLOTS = 8;

/** The device matrix sides the programs can use, the one preferred first. */
const HARDWARE_SIDES: readonly HardwareSide[] = [16, 8];

/** What a device needs for a matmul mode: the features to ask for, and why it cannot run it. */
export interface MatrixSupport {
  ok: boolean;
  reason?: string;
  subgroupSize?: number;
  /** The device's subgroup-matrix side the programs are written for (tensor cores only). */
  side?: HardwareSide;
}

/**
 * Whether a device can run a matmul mode: `emulated` needs `shader-f16`; `tensor-cores` also
 * needs subgroup matrices with a float16 x float16 -> float32 16 x 16 x 16 configuration (or else
 * 8 x 8 x 8, `HardwareSide`) and one subgroup size; both need 32 KiB of workgroup memory (the staged tiles and the results).
 * @example matrixSupport('tensor-cores', { features: ['shader-f16'], subgroupMatrixConfigs: [], limits: { maxComputeWorkgroupStorageSize: 49152 } })
 * // { ok: false, reason: 'the adapter offers no subgroup matrices (chromium-experimental-subgroup-matrix)' }
 */
export function matrixSupport(
  mode: 'tensor-cores' | 'emulated',
  device: { features: Iterable<string>; subgroupMatrixConfigs: Array<Record<string, unknown>>; limits: Record<string, number | undefined>; subgroupMinSize?: number; subgroupMaxSize?: number },
): MatrixSupport {
  const features = new Set(device.features);
  if (!features.has('shader-f16')) return { ok: false, reason: 'the device has no shader-f16' };
  if ((device.limits['maxComputeWorkgroupStorageSize'] ?? 0) < 32768) return { ok: false, reason: 'the device has under 32 KiB of workgroup memory' };
  if (mode === 'emulated') return { ok: true, subgroupSize: 32 };
  if (!features.has('chromium-experimental-subgroup-matrix')) return { ok: false, reason: 'the adapter offers no subgroup matrices (chromium-experimental-subgroup-matrix)' };
  const fits = (side: number): boolean =>
    device.subgroupMatrixConfigs.some((c) => c['componentType'] === 'f16' && c['resultComponentType'] === 'f32' && c['M'] === side && c['N'] === side && c['K'] === side);
  const side = HARDWARE_SIDES.find(fits);
  if (side === undefined) return { ok: false, reason: 'no f16 x f16 -> f32 16 x 16 x 16 or 8 x 8 x 8 subgroup-matrix configuration' };
  const size = device.subgroupMaxSize;
  if (size === undefined || size !== device.subgroupMinSize || THREADS % size !== 0) {
    return { ok: false, reason: `the subgroup size is not fixed (${device.subgroupMinSize}-${device.subgroupMaxSize})` };
  }
  return { ok: true, subgroupSize: size, side };
}

/** The WGSL `enable` extensions a matrix program needs, as the marker line `withEnables` looks for. */
export function enableMarker(): string {
  const tensorCores = webGpuKernelSettings().matmul === 'tensor-cores';
  return `// cifar-enable: f16${tensorCores ? ' subgroups chromium_experimental_subgroup_matrix' : ''}`;
}

/**
 * A shader's code with the `enable` directives its marker line asks for put first, where WGSL
 * wants them (tfjs writes its own declarations before a program's code). Code without a marker is
 * returned as it is.
 * @example withEnables('// cifar-enable: f16\nfn main() {}') // 'enable f16;\n// cifar-enable: f16\nfn main() {}'
 */
export function withEnables(code: string): string {
  const marker = /\/\/ cifar-enable: ([\w ]+)/.exec(code);
  if (marker === null) return code;
  const names = marker[1]!.trim().split(/\s+/);
  const enables = names.map((n) => `enable ${n};`);
  // The analysis cannot see that each subgroup's offsets are the same on all its invocations.
  if (names.includes('chromium_experimental_subgroup_matrix')) enables.push('diagnostic(off, chromium.subgroup_matrix_uniformity);');
  return `${enables.join('\n')}\n${code}`;
}

/**
 * How a tile's (TM/16) x (TN/16) result blocks are shared among the workgroup's subgroups: a grid
 * of `rows` x `cols` subgroups, each holding `rowBlocks` x `colBlocks` accumulators. Up to all
 * subgroups get blocks; with fewer blocks than subgroups the rest repeat a share (see `matrixMainSource`).
 * @example matrixGrid({ tm: 128, tn: 128, tk: 16 }, 8) // { rows: 2, cols: 4, rowBlocks: 4, colBlocks: 2 }
 */
export function matrixGrid(tile: Tile, subgroups: number): { rows: number; cols: number; rowBlocks: number; colBlocks: number } {
  const br = tile.tm / MATRIX_SIDE;
  const bc = tile.tn / MATRIX_SIDE;
  let best = { rows: 1, cols: 1, rowBlocks: br, colBlocks: bc };
  for (let rows = 1; rows <= br; rows *= 2) {
    for (let cols = 1; cols <= bc && rows * cols <= subgroups; cols *= 2) {
      const better =
        rows * cols > best.rows * best.cols ||
        (rows * cols === best.rows * best.cols && br / rows + bc / cols < best.rowBlocks + best.colBlocks);
      if (better) best = { rows, cols, rowBlocks: br / rows, colBlocks: bc / cols };
    }
  }
  return best;
}

/** The program input that holds `AbsMaxProgram`'s partial maxima of dy. */
const DY_MAX_INPUT = 'dyMax';

/** Where a GEMM's operand is dy, and how many partial maxima of it its last input (`dyMax`) holds. */
export interface OperandScale {
  /** 0: A, 1: B. */
  operand: 0 | 1;
  partials: number;
  /** Where the GEMM reduces the partials: in workgroup memory, or each invocation in its registers. */
  reduce: 'shared' | 'registers';
}

/**
 * The scale of a gradient GEMM's dy operand with float16 operands (a matmul setting other than
 * f32); undefined for float32, which needs none, and with the scaling turned off (`matrixScale` off).
 */
export function dyScale(operand: 0 | 1, dyElements: number): OperandScale | undefined {
  const { matmul, matrixScale } = webGpuKernelSettings();
  return matmul === 'f32' || matrixScale === 'off' ? undefined : { operand, partials: absMaxPartials(dyElements), reduce: matrixScale };
}

/**
 * What a gradient program with a scaled dy adds to its interface: the partial maxima as a last
 * input (one float per element), and a shader-key suffix (the partials' count is in its code).
 */
export function scaledInterface(scale: OperandScale | undefined, variableNames: string[], components: number[] | undefined): { variableNames: string[]; variableComponents?: number[]; keySuffix: string } {
  if (scale === undefined) return { variableNames, ...(components ? { variableComponents: components } : {}), keySuffix: '' };
  return { variableNames: [...variableNames, DY_MAX_INPUT], ...(components ? { variableComponents: [...components, 1] } : {}), keySuffix: `_${scale.reduce === 'shared' ? 's' : 'r'}${scale.partials}` };
}

/**
 * Runs a gradient program: with a scale, first the max-abs pass over dy, whose partial maxima go
 * in as the program's last input and are disposed of after.
 */
export function runScaled(backend: WebGpuBackendLike, program: GpuProgram & { uniformData(): ProgramUniform }, inputs: TensorInfo[], dy: TensorInfo, scale: OperandScale | undefined): TensorInfo {
  if (scale === undefined) return backend.runWebGPUProgram(program, inputs, 'float32', program.uniformData());
  const dyMax = runAbsMax(backend, dy);
  const out = backend.runWebGPUProgram(program, [...inputs, dyMax], 'float32', program.uniformData());
  backend.disposeData(dyMax.dataId);
  return out;
}

// The left matrix (rows of A x 16 of K) is read column-major from the K-major staged tile, the
// right one (16 of K x columns of B) row-major; results are stored row-major, 16 wide.
const A_COLUMN_MAJOR = true;
const B_COLUMN_MAJOR = false;

/**
 * WGSL of `main()` for C[row, col] = sum_k readA(k, row) * readB(k, col) with float16 operands
 * and float32 accumulators on subgroup matrices, for `gemmMainSource` when the matmul setting is
 * `tensor-cores` or `emulated`. 256 invocations in subgroups of `matrixSubgroupSize()`; subgroup
 * g = lid / size holds the accumulators of its share of the tile (`matrixGrid`). The results go
 * out through workgroup memory, one accumulator per subgroup at a time, where every invocation
 * applies the program's store to one value of each subgroup's block.
 */
export function matrixMainSource(s: GemmSource): string {
  const { tm, tn, tk } = s.tile;
  if (tk % MATRIX_SIDE !== 0 || tm % MATRIX_SIDE !== 0 || tn % MATRIX_SIDE !== 0) throw new Error(`a ${tm}x${tn}x${tk} tile does not divide into 16 x 16 x 16 matrices`);
  const emulated = webGpuKernelSettings().matmul === 'emulated';
  const size = matrixSubgroupSize();
  const subgroups = THREADS / size;
  const grid = matrixGrid(s.tile, subgroups);
  const active = grid.rows * grid.cols;
  const slots = Math.min(subgroups, RESULT_SLOTS);
  const rounds = Math.ceil(active / slots);
  const scaled = s.scale;
  const f16 = (operand: 0 | 1, v: string): string =>
    `f16(clamp(${scaled?.operand === operand ? `(${v}) * cgS` : v}, -${F16_MAX}.0, ${F16_MAX}.0))`;
  // f16 tiles padded by 8 elements (16 bytes) where stored along K: strides and offsets stay multiples of 8.
  const { declarations, loop, strides } = stagedLoopSource(s, { vec: false, element: 'f16', pad: (alongK) => (alongK ? 8 : 0), convert: f16 });
  const [as, bs] = strides;
  const range = (n: number): number[] => [...Array(n).keys()];
  const accs = range(grid.rowBlocks).flatMap((i) => range(grid.colBlocks).map((j) => [i, j] as const));
  const Q = (MATRIX_SIDE * MATRIX_SIDE) / size;
  // The device's matrices: `parts` x `parts` of them make a 16 x 16 block, `parts` deep a 16-deep step.
  const hw = hardwareSide;
  const parts = MATRIX_SIDE / hw;
  const halves = range(parts);
  // Names of the device matrices of block i (and part p, q with parts > 1).
  const part = (name: string, ...ps: number[]): string => (parts === 1 ? name : `${name}_${ps.join('_')}`);
  const left = `subgroup_matrix_left<f16, ${hw}, ${hw}>`;
  const right = `subgroup_matrix_right<f16, ${hw}, ${hw}>`;
  const result = `subgroup_matrix_result<f32, ${hw}, ${hw}>`;
  const accNames = accs.flatMap(([i, j]) => halves.flatMap((p) => halves.map((q) => ({ i, j, p, q, name: part(`acc${i}_${j}`, p, q) }))));
  // This subgroup's first row and column block within the tile (subgroups past the active ones repeat a share).
  const aBase = `u32((cgShare / ${grid.cols}) * ${grid.rowBlocks * MATRIX_SIDE})`;
  const bBase = `u32((cgShare % ${grid.cols}) * ${grid.colBlocks * MATRIX_SIDE})`;
  const n = accs.length;
  const mma = range(tk / MATRIX_SIDE)
    .map((step) => {
      const aOff = (i: number | string): string => `${step * MATRIX_SIDE * as}u + ${aBase} + ${typeof i === 'number' ? `${i * MATRIX_SIDE}u` : `(${i}) * ${MATRIX_SIDE}u`}`;
      const bOff = (j: number | string): string => `${step * MATRIX_SIDE * bs}u + ${bBase} + ${typeof j === 'number' ? `${j * MATRIX_SIDE}u` : `(${j}) * ${MATRIX_SIDE}u`}`;
      // One loop over the accumulators: written out per accumulator, lavapipe's compiler took up to half a minute over it.
      if (emulated) return `for (var a = 0u; a < ${n}u; a++) { emuMma(a, ${aOff(`a / ${grid.colBlocks}u`)}, ${bOff(`a % ${grid.colBlocks}u`)}); }`;
      // A scope per step (and K part): each declares its own a0.., b0... Part p of a left block is
      // its rows p * hw on (A is column-major: + p * hw), part q of a right block its columns
      // q * hw on (B is row-major: + q * hw); K part k is k * hw rows of the staged tile on.
      const within = (off: string, k: number, stride: number, p: number): string => (parts === 1 ? off : `${off} + ${k * hw * stride + p * hw}u`);
      return halves
        .map(
          (k) => `{\n      ${[
            ...range(grid.rowBlocks).flatMap((i) => halves.map((p) => `let ${part(`a${i}`, p)} = ${matrixLoad(syntax, left, 'cgA', within(aOff(i), k, as, p), A_COLUMN_MAJOR, `${as}u`)};`)),
            ...range(grid.colBlocks).flatMap((j) => halves.map((q) => `let ${part(`b${j}`, q)} = ${matrixLoad(syntax, right, 'cgB', within(bOff(j), k, bs, q), B_COLUMN_MAJOR, `${bs}u`)};`)),
            ...accNames.map(({ i, j, p, q, name }) => `${name} = subgroupMatrixMultiplyAccumulate(${part(`a${i}`, p)}, ${part(`b${j}`, q)}, ${name});`),
          ].join('\n      ')}\n      }`,
        )
        .join('\n      ');
    })
    .join('\n      ');
  // Element (r, c) of a 16 x 16 matrix at `off` with `stride`, column- or row-major, as the specification maps them.
  const at = (off: string, stride: number, columnMajor: boolean, r: string, c: string): string =>
    columnMajor ? `${off} + ${c} * ${stride}u + ${r}` : `${off} + ${r} * ${stride}u + ${c}`;
  // Emulated: accumulator a of this invocation (lane) holds elements lane + ${size}q of its 16 x 16 result.
  const emulation = emulated
    ? `
  var<private> cgAcc : array<array<f32, ${Q}>, ${n}>;
  // 16, where lavapipe's compiler cannot see it: unrolled, the loop over it takes seconds to compile.
  var<private> cgDepth : u32;
  fn emuMma(a : u32, aOff : u32, bOff : u32) {
    for (var q = 0u; q < ${Q}u; q++) {
      let e = cgLane + ${size}u * q;
      let r = e / 16u;
      let c = e % 16u;
      var sum = cgAcc[a][q];
      for (var k = 0u; k < cgDepth; k++) {
        sum = fma(f32(cgA[${at('aOff', as, A_COLUMN_MAJOR, 'r', 'k')}]), f32(cgB[${at('bOff', bs, B_COLUMN_MAJOR, 'k', 'c')}]), sum);
      }
      cgAcc[a][q] = sum;
    }
  }
  fn emuStore(a : u32, off : u32) {
    for (var q = 0u; q < ${Q}u; q++) {
      let e = cgLane + ${size}u * q;
      cgC[${at('off', MATRIX_SIDE, false, 'e / 16u', 'e % 16u')}] = cgAcc[a][q];
    }
  }`
    : '';
  // Scale of the dy operand: 2^e with the largest |dy| * 2^e in [SCALE_TARGET / 2, SCALE_TARGET]; 1 for all zeros (or inf/NaN, which stay visible).
  const scaleOf = (m: string): string => `select(1.0, exp2(clamp(floor(log2(${SCALE_TARGET}.0 / ${m})), -64.0, 64.0)), ${m} > 0.0 && ${m} <= 3.0e38)`;
  const scalePrologue = scaled?.reduce === 'registers'
    ? `
    // Every invocation reduces all the partials itself (the same loads, the same result everywhere).
    var cgMax = 0.0;
    for (var p = 0; p < ${scaled.partials}; p++) { cgMax = max(cgMax, ${DY_MAX_INPUT}[p]); }
    let cgS = ${scaleOf('cgMax')};
    let cgUnscale = 1.0 / cgS;`
    : scaled
    ? `
    cgC[lid] = select(0.0, ${DY_MAX_INPUT}[min(lid, ${scaled.partials - 1})], lid < ${scaled.partials});
    workgroupBarrier();
    for (var half = ${THREADS / 2}; half > 0; half = half / 2) {
      if (lid < half) { cgC[lid] = max(cgC[lid], cgC[lid + half]); }
      workgroupBarrier();
    }
    if (lid == 0) {
      let m = cgC[0];
      cgScale = vec4<f32>(${scaleOf('m')});
    }
    let cgS = workgroupUniformLoad(&cgScale).x;
    let cgUnscale = 1.0 / cgS;`
    : `
    let cgUnscale = 1.0;`;
  // Accumulator (i, j) out through cgC: each subgroup stores its own, then every invocation stores
  // one value of each active subgroup's block.
  // With more than RESULT_SLOTS subgroups (small subgroups, as lavapipe's 8), in rounds of that
  // many, so that cgC stays RESULT_SLOTS blocks (8 KiB) whatever the subgroup size.
  const round = (i: number | string, j: number | string, storeAcc: (base: string) => string): string => {
    const fetch = (g: string, slot: string): string => `
      let row = row0 + ((${g} / ${grid.cols}) * ${grid.rowBlocks} + ${i}) * 16 + lid / 16;
      let col = col0 + ((${g} % ${grid.cols}) * ${grid.colBlocks} + ${j}) * 16 + lid % 16;
      let v = cgC[u32(${slot}) * 256u + u32(lid)] * cgUnscale;
      ${s.store}`;
    // Every subgroup has a slot (the repeating ones' results go unread).
    if (subgroups <= slots) {
      return `${storeAcc('cgGroup * 256u')}
    workgroupBarrier();
    for (var g = 0; g < ${active}; g++) {${fetch('g', 'g')}
    }
    workgroupBarrier();`;
    }
    return `for (var cgRound = 0; cgRound < ${rounds}; cgRound++) {
    if (i32(cgGroup) / ${slots} == cgRound) {
    ${storeAcc(`(cgGroup % ${slots}u) * 256u`)}
    }
    workgroupBarrier();
    for (var g = cgRound * ${slots}; g < min(${active}, (cgRound + 1) * ${slots}); g++) {${fetch('g', `g - cgRound * ${slots}`)}
    }
    workgroupBarrier();
    }`;
  };
  // Emulated: a loop over the accumulators (the program's store written out once, which lavapipe compiles in a fraction of the time).
  const readBack = emulated
    ? `for (var a = 0; a < ${n}; a++) {
    ${round(`a / ${grid.colBlocks}`, `a % ${grid.colBlocks}`, (base) => `emuStore(u32(a), ${base});`)}
    }`
    : accs
        .map(([i, j]) =>
          round(
            i,
            j,
            // Part (p, q) of the 16 x 16 block, row-major, starts p * hw rows and q * hw columns in.
            (base) =>
              accNames
                .filter((a) => a.i === i && a.j === j)
                .map(({ p, q, name }) => `${matrixStore(syntax, 'cgC', `${base}${parts === 1 ? '' : ` + ${p * hw * MATRIX_SIDE + q * hw}u`}`, name, false, `${MATRIX_SIDE}u`)};`)
                .join('\n    '),
          ),
        )
        .join('\n    ');
  return `
  ${enableMarker()}
  ${declarations}
  // Each subgroup's results on their way out (and the scale's reduction before the loop).
  var<workgroup> cgC : array<f32, ${slots * 256}>;
  // A vec4, not an f32: Vulkan wants a cooperative-matrix load's pointer 16-byte aligned
  // (VUID-RuntimeSpirv-OpCooperativeMatrixLoadKHR-08986), and a driver that lays workgroup
  // variables out one after the other at their own alignment would put the float16 arrays 4 bytes
  // off it behind a 4-byte scalar. Only the gradient programs, wrong on the H100 of 2026-11-27,
  // had one (this scale, dx's tile count); matrix-probe.ts asks the device about it.
  var<workgroup> cgScale : vec4<f32>;
  var<private> cgLane : u32;
${emulation}

  fn main() {
    let lid = i32(localIndex);
    cgLane = u32(lid) % ${size}u;${emulated ? `
    cgDepth = 16u + u32(lid) / ${THREADS}u;` : ''}
    let cgGroup = u32(lid) / ${size}u;
    let cgShare = i32(cgGroup) % ${active};
    ${s.prologue}
    ${scalePrologue}
    ${emulated ? '' : accNames.map(({ name }) => `var ${name} = ${result}();`).join(' ')}
    ${loop(`{
      ${mma}
      }`)}
    ${readBack}
  }`;
}

/**
 * Partial maxima of |x| over a flat tensor: `partials` workgroups of 256 invocations, each
 * reducing a strided share (four values per load when the size is a multiple of 4) to one value.
 * The GEMM that scales by it reduces the partials itself, so this is the only extra dispatch.
 */
export class AbsMaxProgram implements GpuProgram {
  variableNames = ['x'];
  uniforms = 'count : i32,';
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [THREADS, 1, 1];
  variableComponents?: number[];

  constructor(private readonly elements: number) {
    const partials = absMaxPartials(elements);
    this.outputShape = [partials];
    this.dispatch = [partials, 1, 1];
    if (elements % 4 === 0) this.variableComponents = [4];
    this.shaderKey = `cifarAbsMax_${partials}_${elements % 4 === 0 ? 'v' : 's'}`;
  }

  getUserCode(): string {
    const partials = this.outputShape[0]!;
    const wide = this.elements % 4 === 0;
    const read = wide ? 'let v = abs(x[i]); m = max(m, max(max(v.x, v.y), max(v.z, v.w)));' : 'm = max(m, abs(x[i]));';
    return `
  var<workgroup> red : array<f32, ${THREADS}>;

  // tfjs passes a flat layout's global index, unused here: each workgroup strides over the tensor.
  fn main(index : i32) {
    let lid = i32(localIndex);
    var m = 0.0;
    for (var i = i32(workgroupId.x) * ${THREADS} + lid; i < uniforms.count; i = i + ${partials * THREADS}) {
      ${read}
    }
    red[lid] = m;
    workgroupBarrier();
    for (var half = ${THREADS / 2}; half > 0; half = half / 2) {
      if (lid < half) { red[lid] = max(red[lid], red[lid + half]); }
      workgroupBarrier();
    }
    if (lid == 0) { result[workgroupId.x] = red[0]; }
  }`;
  }
}

/** How many partial maxima a tensor of `size` values gets: one per 4,096 values, 1 to 256. */
export function absMaxPartials(size: number): number {
  return Math.max(1, Math.min(MAX_PARTIALS, Math.ceil(size / 4096)));
}

/** The partial maxima of |t| (see `AbsMaxProgram`); the caller disposes of them. */
function runAbsMax(backend: WebGpuBackendLike, t: TensorInfo): TensorInfo {
  const size = t.shape.reduce((a, b) => a * b, 1);
  const loads = size % 4 === 0 ? size / 4 : size;
  return backend.runWebGPUProgram(new AbsMaxProgram(size), [t], 'float32', [{ type: 'int32', data: [loads] }]);
}
