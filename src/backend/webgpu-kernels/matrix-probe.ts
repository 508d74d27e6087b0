/**
 * What the device's subgroup-matrix loads read, checked against the specification: each case
 * loads one 16 x 16 float16 matrix (a left or a right operand, row- or column-major, at an offset
 * with a stride) from workgroup memory holding small integers, multiplies it by the identity
 * (exact in float32) and stores the product row-major; the result must equal, exactly, the
 * elements the specification names: element (r, c) at offset + c * stride + r (column-major) or
 * offset + r * stride + c (row-major).
 *
 * Why: on the H100 of 2026-11-27 the tensor cores' forward convolutions were right and both
 * gradients wrong (matrix-check.ts). The gradients load one operand each with a stride the
 * forward pass does not use; these cases ask the device about the primitives alone, the strides
 * and offsets the GEMMs use (16-deep tiles of 64 and 128, padded by 8 or not), and loads that
 * end exactly at the array's end (where a bounds check that is off by one would move them).
 * `bench:gpu --matmul tensor-cores` records the answers (`matrixProbe`).
 *
 * Some cases also declare a 4-byte workgroup variable before (or after) the arrays, as the
 * gradient programs did (their dy scale, dx's tile count) and the forward did not: Vulkan requires
 * a cooperative-matrix load's pointer to be 16-byte aligned (VUID-RuntimeSpirv-
 * OpCooperativeMatrixLoadKHR-08986), and a driver that lays the variables out one after the
 * other at their own alignment would put the float16 arrays 4 bytes off it.
 *
 * With `emulate`, the three operations are plain WGSL functions of the specification's
 * semantics, so that CI runs the same harness on an adapter without subgroup matrices.
 */
import { type HardwareSide, type MatrixSyntax, matrixLoad, matrixStore } from './matrix.js';
/** float16 elements of the workgroup array the cases load from. */
export const PROBE_ARRAY = 4096;

export interface ProbeCase {
  operand: 'left' | 'right';
  columnMajor: boolean;
  stride: number;
  offset: number;
  /** A used 4-byte workgroup scalar declared before (`first`) or after (`last`) the arrays; absent: none. */
  scalar?: 'first' | 'last';
  /**
   * The product accumulated this many times in a loop whose bound comes from the uniform (not a
   * constant), as the gradient programs' K loops are; absent: one product, no loop.
   */
  trips?: number;
  /**
   * Before the matrices, a reduction in workgroup memory (branches on the invocation index,
   * barriers) and a uniform load of its result, as the gradient programs' dy scaling does.
   */
  prologue?: boolean;
}

/** What a probe program depends on (the offset, stride and trip count come from its uniform). */
export type ProbeShape = Pick<ProbeCase, 'operand' | 'columnMajor' | 'scalar' | 'prologue'> & { loop?: boolean };

export interface ProbeResult extends ProbeCase {
  /** Elements of the result (16 x 16, or 8 x 8 on such a device) that differ from the specification's. */
  wrong: number;
  /** Elements of the result. */
  of: number;
}

/** Element (r, c) of a case's matrix, as an index into the array. */
export function probeIndex(c: ProbeCase, r: number, col: number): number {
  return c.columnMajor ? c.offset + col * c.stride + r : c.offset + r * c.stride + col;
}

/** The value stored at index i: small integers, exact in float16 and in float32 sums with zeros. */
export function probeValue(i: number): number {
  return (i % 1999) - 999;
}

/**
 * The cases: both operands and layouts, at the strides the GEMMs use (16, 64, 72, 128, 136) with
 * offsets 0, 16, 48 and 112, and at each stride the load that ends exactly at the array's end;
 * then, at strides 72 and 128, with a 4-byte workgroup scalar declared first and last; then, at
 * stride 72, the product accumulated 3 times in a loop bounded by a uniform, after a workgroup
 * reduction, and both (what else the gradient programs do and the forward does not).
 */
export function probeCases(side: HardwareSide = 16): ProbeCase[] {
  const cases: ProbeCase[] = [];
  for (const operand of ['left', 'right'] as const) {
    for (const columnMajor of [true, false]) {
      for (const stride of [16, 64, 72, 128, 136]) {
        const last = PROBE_ARRAY - ((side - 1) * stride + side);
        for (const offset of [0, 16, 48, 112, last]) cases.push({ operand, columnMajor, stride, offset });
      }
      for (const scalar of ['first', 'last'] as const) {
        for (const stride of [72, 128]) cases.push({ operand, columnMajor, stride, offset: 16, scalar });
      }
      cases.push({ operand, columnMajor, stride: 72, offset: 16, trips: 3 }, { operand, columnMajor, stride: 72, offset: 16, prologue: true }, { operand, columnMajor, stride: 72, offset: 16, trips: 3, prologue: true });
    }
  }
  return cases;
}

/** The three operations in plain WGSL (one invocation computes everything), for `emulate`. */
function emulation(side: number): string {
  return `
struct EmuMatrix { v : array<f32, ${side * side}> };
fn emuLoad(offset : u32, stride : u32, columnMajor : bool) -> EmuMatrix {
  var m : EmuMatrix;
  for (var r = 0u; r < ${side}u; r++) {
    for (var c = 0u; c < ${side}u; c++) {
      m.v[r * ${side}u + c] = f32(src[select(offset + r * stride + c, offset + c * stride + r, columnMajor)]);
    }
  }
  return m;
}
fn emuIdentity() -> EmuMatrix {
  var m : EmuMatrix;
  for (var i = 0u; i < ${side}u; i++) { m.v[i * ${side}u + i] = 1.0; }
  return m;
}
fn emuMultiply(a : EmuMatrix, b : EmuMatrix) -> EmuMatrix {
  var m : EmuMatrix;
  for (var r = 0u; r < ${side}u; r++) {
    for (var c = 0u; c < ${side}u; c++) {
      var s = 0.0;
      for (var k = 0u; k < ${side}u; k++) { s = fma(a.v[r * ${side}u + k], b.v[k * ${side}u + c], s); }
      m.v[r * ${side}u + c] = s;
    }
  }
  return m;
}`;
}

/** The probe shader for one kind of case; the offset, stride and trip count come from a uniform. */
export function probeSource(syntax: MatrixSyntax, shape: ProbeShape, emulate: boolean, side: HardwareSide = 16): string {
  const n = side * side;
  const { operand, columnMajor, scalar, prologue, loop } = shape;
  const pad = 'var<workgroup> pad : f32;';
  const head = `@group(0) @binding(0) var<storage, read> values : array<f32>;
@group(0) @binding(1) var<storage, read_write> out : array<f32>;
struct Case { offset : u32, stride : u32, trips : u32 };
@group(0) @binding(2) var<uniform> probe : Case;${scalar === 'first' ? `\n${pad}` : ''}
var<workgroup> src : array<f16, ${PROBE_ARRAY}>;
var<workgroup> eye : array<f16, ${n}>;
var<workgroup> res : array<f32, ${n}>;${scalar === 'last' ? `\n${pad}` : ''}${prologue ? '\nvar<workgroup> reduced : vec4<f32>;' : ''}`;
  // The scalar is written and read as the gradient programs' were (a uniform load), and kept live;
  // the prologue reduces 32 values in workgroup memory as their dy scaling does.
  const fill = `
  for (var i = lid; i < ${PROBE_ARRAY}u; i += 32u) { src[i] = f16(values[i]); }
  for (var i = lid; i < ${n}u; i += 32u) { eye[i] = select(0.0h, 1.0h, i / ${side}u == i % ${side}u); }${scalar ? `
  if (lid == 0u) { pad = values[1]; }
  let padded = workgroupUniformLoad(&pad);` : ''}${prologue ? `
  res[lid] = values[lid];
  workgroupBarrier();
  for (var half = 16u; half > 0u; half = half / 2u) {
    if (lid < half) { res[lid] = max(res[lid], res[lid + half]); }
    workgroupBarrier();
  }
  if (lid == 0u) { reduced = vec4<f32>(res[0]); }
  let top = workgroupUniformLoad(&reduced).x;` : ''}
  workgroupBarrier();`;
  const trips = loop ? 'probe.trips' : '1u';
  const multiply = `subgroupMatrixMultiplyAccumulate(${operand === 'left' ? 'm, e' : 'e, m'}, acc)`;
  const body = emulate
    ? `
  if (lid == 0u) {
    let m = emuLoad(probe.offset, probe.stride, ${columnMajor});
    let p = ${operand === 'left' ? 'emuMultiply(m, emuIdentity())' : 'emuMultiply(emuIdentity(), m)'};
    for (var i = 0u; i < ${n}u; i++) {
      var s = 0.0;
      for (var t = 0u; t < ${trips}; t++) { s += p.v[i]; }
      res[i] = s;
    }
  }`
    : `
  let m = ${matrixLoad(syntax, `subgroup_matrix_${operand}<f16, ${side}, ${side}>`, 'src', 'probe.offset', columnMajor, 'probe.stride')};
  let e = ${matrixLoad(syntax, `subgroup_matrix_${operand === 'left' ? 'right' : 'left'}<f16, ${side}, ${side}>`, 'eye', '0u', false, `${side}u`)};
  var acc = subgroup_matrix_result<f32, ${side}, ${side}>();
  ${loop ? `for (var t = 0u; t < probe.trips; t++) { acc = ${multiply}; }` : `acc = ${multiply};`}
  ${matrixStore(syntax, 'res', '0u', 'acc', false, `${side}u`)};`;
  const enables = emulate ? 'enable f16;' : 'enable f16;\nenable subgroups;\nenable chromium_experimental_subgroup_matrix;\ndiagnostic(off, chromium.subgroup_matrix_uniformity);';
  return `${enables}
${head}
${emulate ? emulation(side) : ''}
@compute @workgroup_size(32)
fn main(@builtin(local_invocation_index) lid : u32) {${fill}${body}
  workgroupBarrier();
  for (var i = lid; i < ${n}u; i += 32u) { out[i] = res[i]; }${scalar ? `
  if (padded == 12345.0) { out[0] = padded; }` : ''}${prologue ? `
  if (top == 12345.0) { out[1] = top; }` : ''}
}`;
}

/** Counts the elements of a case's result that are not the specification's. */
export function wrongElements(c: ProbeCase, result: Float32Array, side: HardwareSide = 16): number {
  let wrong = 0;
  const times = c.trips ?? 1;
  for (let r = 0; r < side; r++) for (let col = 0; col < side; col++) if (result[r * side + col] !== times * probeValue(probeIndex(c, r, col))) wrong++;
  return wrong;
}

/** WebGPU's buffer usage flags (the globals are not always installed in Node). */
const USAGE = { MAP_READ: 1, COPY_SRC: 4, COPY_DST: 8, UNIFORM: 0x40, STORAGE: 0x80 };

interface ProbeBuffer {
  destroy(): void;
  mapAsync(mode: number): Promise<void>;
  getMappedRange(): ArrayBuffer;
  unmap(): void;
}

/** The parts of a GPUDevice the probe uses. */
export interface ProbeGpu {
  createBuffer(d: { size: number; usage: number }): ProbeBuffer;
  createShaderModule(d: { code: string }): unknown;
  createComputePipeline(d: { layout: 'auto'; compute: { module: unknown; entryPoint: string } }): { getBindGroupLayout(index: number): unknown };
  createBindGroup(d: { layout: unknown; entries: Array<{ binding: number; resource: { buffer: ProbeBuffer; offset?: number; size?: number } }> }): unknown;
  createCommandEncoder(): {
    beginComputePass(): { setPipeline(p: unknown): void; setBindGroup(index: number, group: unknown): void; dispatchWorkgroups(x: number): void; end(): void };
    copyBufferToBuffer(from: ProbeBuffer, fromOffset: number, to: ProbeBuffer, toOffset: number, size: number): void;
    finish(): unknown;
  };
  queue: { writeBuffer(b: ProbeBuffer, offset: number, data: ArrayBufferView): void; submit(commands: unknown[]): void };
}

/**
 * Runs the cases (by default all of `probeCases(side)`) on `device` (a GPUDevice with shader-f16,
 * and subgroup matrices of `side`, 16 by default, unless `emulate`), one dispatch each, and reads
 * the results back.
 */
export async function runMatrixProbe(
  device: ProbeGpu,
  syntax: MatrixSyntax,
  { emulate = false, side = 16, cases }: { emulate?: boolean; side?: HardwareSide; cases?: ProbeCase[] } = {},
): Promise<ProbeResult[]> {
  const all = cases ?? probeCases(side);
  const values = new Float32Array(PROBE_ARRAY).map((_, i) => probeValue(i));
  const input = device.createBuffer({ size: values.byteLength, usage: USAGE.STORAGE | USAGE.COPY_DST });
  device.queue.writeBuffer(input, 0, values);
  const outBytes = side * side * 4;
  const out = device.createBuffer({ size: outBytes * all.length, usage: USAGE.STORAGE | USAGE.COPY_SRC });
  const read = device.createBuffer({ size: outBytes * all.length, usage: USAGE.MAP_READ | USAGE.COPY_DST });
  const uniforms: ProbeBuffer[] = [];
  const pipelines = new Map<string, ReturnType<ProbeGpu['createComputePipeline']>>();
  try {
    const encoder = device.createCommandEncoder();
    all.forEach((c, i) => {
      const shape: ProbeShape = { operand: c.operand, columnMajor: c.columnMajor, scalar: c.scalar, prologue: c.prologue, loop: c.trips !== undefined };
      const key = JSON.stringify(shape);
      let pipeline = pipelines.get(key);
      if (pipeline === undefined) {
        pipeline = device.createComputePipeline({ layout: 'auto', compute: { module: device.createShaderModule({ code: probeSource(syntax, shape, emulate, side) }), entryPoint: 'main' } });
        pipelines.set(key, pipeline);
      }
      const uniform = device.createBuffer({ size: 16, usage: USAGE.UNIFORM | USAGE.COPY_DST });
      device.queue.writeBuffer(uniform, 0, new Uint32Array([c.offset, c.stride, c.trips ?? 1, 0]));
      uniforms.push(uniform);
      const bindGroup = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: input } },
          { binding: 1, resource: { buffer: out, offset: i * outBytes, size: outBytes } },
          { binding: 2, resource: { buffer: uniform } },
        ],
      });
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(1);
      pass.end();
    });
    encoder.copyBufferToBuffer(out, 0, read, 0, outBytes * all.length);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(1);
    const results = new Float32Array(read.getMappedRange().slice(0));
    read.unmap();
    return all.map((c, i) => ({ ...c, wrong: wrongElements(c, results.subarray(i * side * side, (i + 1) * side * side), side), of: side * side }));
  } finally {
    for (const b of [input, out, read, ...uniforms]) b.destroy();
  }
}

/**
 * The cases that failed, in one line each: `left col_major stride 128 offset 112: 256 of 256 wrong`,
 * `… offset 16, after a 4-byte workgroup scalar: …` (declared first) or `…, before …` (last),
 * `…, 3 products in a loop, after a workgroup reduction: …`.
 */
export function describeProbe(results: ProbeResult[]): string[] {
  const where = { first: ', after a 4-byte workgroup scalar', last: ', before a 4-byte workgroup scalar' };
  return results
    .filter((r) => r.wrong > 0)
    .map(
      (r) =>
        `${r.operand} ${r.columnMajor ? 'col_major' : 'row_major'} stride ${r.stride} offset ${r.offset}${r.scalar ? where[r.scalar] : ''}${r.trips !== undefined ? `, ${r.trips} products in a loop` : ''}${r.prologue ? ', after a workgroup reduction' : ''}: ${r.wrong} of ${r.of} wrong`,
    );
}
