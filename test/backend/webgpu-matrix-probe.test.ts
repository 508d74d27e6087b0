import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { probeWebGpu, takeWebGpuErrors } from '../../src/backend/webgpu.js';
import { type ProbeGpu, PROBE_ARRAY, describeProbe, probeCases, probeIndex, probeSource, probeValue, runMatrixProbe, wrongElements } from '../../src/backend/webgpu-kernels/matrix-probe.js';

describe('the subgroup-matrix load probe (pure)', () => {
  it('names each element by the specification: column-major (r, c) at offset + c·stride + r, row-major at offset + r·stride + c', () => {
    expect(probeIndex({ operand: 'left', columnMajor: true, stride: 136, offset: 16 }, 2, 3)).toBe(16 + 3 * 136 + 2);
    expect(probeIndex({ operand: 'right', columnMajor: false, stride: 72, offset: 48 }, 2, 3)).toBe(48 + 2 * 72 + 3);
    // Values are small integers, exact in float16 (|v| < 2048).
    expect(Math.max(...Array.from({ length: PROBE_ARRAY }, (_, i) => Math.abs(probeValue(i))))).toBeLessThan(2048);
  });

  it('has both operands and layouts at the GEMMs\' strides, each with a load ending exactly at the array\'s end', () => {
    const cases = probeCases();
    expect(cases).toHaveLength(2 * 2 * 5 * 5 + 2 * 2 * 2 * 2 + 2 * 2 * 3);
    for (const c of cases) expect(c.offset + 15 * c.stride + 16).toBeLessThanOrEqual(PROBE_ARRAY);
    expect(cases.filter((c) => c.offset + 15 * c.stride + 16 === PROBE_ARRAY)).toHaveLength(20);
    expect(new Set(cases.map((c) => c.stride))).toEqual(new Set([16, 64, 72, 128, 136]));
  });

  it('also accumulates in a loop bounded by a uniform, after a workgroup reduction, and both, each operand and layout; the expected values are multiplied by the trips', () => {
    const kinds = probeCases().filter((c) => c.trips !== undefined || c.prologue);
    expect(kinds).toHaveLength(12);
    expect(kinds.filter((c) => c.trips === 3 && c.prologue)).toHaveLength(4);
    const both = probeSource('layout', { operand: 'right', columnMajor: false, prologue: true, loop: true }, false);
    expect(both).toContain('for (var t = 0u; t < probe.trips; t++) { acc = subgroupMatrixMultiplyAccumulate(e, m, acc); }');
    expect(both).toContain('let top = workgroupUniformLoad(&reduced).x;');
    expect(both).toMatch(/var<workgroup> reduced : vec4<f32>;/);
    expect(both.indexOf('workgroupUniformLoad(&reduced)')).toBeLessThan(both.indexOf('subgroupMatrixLoad'));
    expect(probeSource('layout', { operand: 'right', columnMajor: false }, false)).not.toContain('probe.trips');
    // Three products of the matrix: a single product's values are wrong for such a case.
    const c = { operand: 'left' as const, columnMajor: false, stride: 72, offset: 16, trips: 3 };
    const once = new Float32Array(256).map((_, i) => probeValue(probeIndex(c, Math.floor(i / 16), i % 16)));
    expect(wrongElements(c, once.map((v) => 3 * v))).toBe(0);
    expect(wrongElements(c, once)).toBeGreaterThan(200);
    expect(describeProbe([{ ...c, prologue: true, wrong: 250, of: 256 }])).toEqual(['left row_major stride 72 offset 16, 3 products in a loop, after a workgroup reduction: 250 of 256 wrong']);
  });

  it('also loads after and before a 4-byte workgroup scalar, each operand and layout, and says so when such a case fails', () => {
    const withScalar = probeCases().filter((c) => c.scalar !== undefined);
    expect(withScalar).toHaveLength(16);
    expect(new Set(withScalar.map((c) => `${c.operand} ${c.columnMajor} ${c.scalar}`)).size).toBe(8);
    const first = probeSource('layout', { operand: 'left', columnMajor: true, scalar: 'first' }, false);
    // Declared before the float16 array and used (a uniform load, kept live by the output).
    expect(first.indexOf('var<workgroup> pad : f32;')).toBeLessThan(first.indexOf('var<workgroup> src'));
    expect(first).toContain('workgroupUniformLoad(&pad)');
    expect(first).toMatch(/if \(padded == [\d.]+\) \{ out\[0\] = padded; \}/);
    const last = probeSource('layout', { operand: 'left', columnMajor: true, scalar: 'last' }, false);
    expect(last.indexOf('var<workgroup> pad : f32;')).toBeGreaterThan(last.indexOf('var<workgroup> res'));
    expect(probeSource('layout', { operand: 'left', columnMajor: true }, false)).not.toContain('pad');
    expect(describeProbe([{ operand: 'right', columnMajor: false, stride: 72, offset: 16, scalar: 'first', wrong: 256, of: 256 }])).toEqual(['right row_major stride 72 offset 16, after a 4-byte workgroup scalar: 256 of 256 wrong']);
  });

  it('counts the elements that are not the specification\'s, and describes the failed cases in one line each', () => {
    const c = { operand: 'left' as const, columnMajor: true, stride: 128, offset: 112 };
    const right = new Float32Array(256).map((_, i) => probeValue(probeIndex(c, Math.floor(i / 16), i % 16)));
    expect(wrongElements(c, right)).toBe(0);
    // The transposed reading (the other layout) is wrong almost everywhere.
    const transposed = new Float32Array(256).map((_, i) => probeValue(probeIndex({ ...c, columnMajor: false }, Math.floor(i / 16), i % 16)));
    expect(wrongElements(c, transposed)).toBeGreaterThan(200);
    expect(describeProbe([{ ...c, wrong: 0, of: 256 }, { ...c, wrong: 240, of: 256 }])).toEqual(['left col_major stride 128 offset 112: 240 of 256 wrong']);
    // A device of 8 x 8 matrices: 64 elements a case, and the cases' last loads end at the array's end for that side.
    const eight = new Float32Array(64).map((_, i) => probeValue(probeIndex(c, Math.floor(i / 8), i % 8)));
    expect(wrongElements(c, eight, 8)).toBe(0);
    expect(wrongElements({ ...c, columnMajor: false }, eight, 8)).toBeGreaterThan(50);
    expect(probeCases(8).filter((p) => p.offset + 7 * p.stride + 8 === PROBE_ARRAY)).toHaveLength(20);
    expect(describeProbe([{ ...c, wrong: 60, of: 64 }])).toEqual(['left col_major stride 128 offset 112: 60 of 64 wrong']);
    const small = probeSource('layout', { operand: 'left', columnMajor: true }, false, 8);
    expect(small).toContain('subgroupMatrixLoad<subgroup_matrix_left<f16, 8, 8>, col_major>(&src, probe.offset, probe.stride)');
    expect(small).toContain('var<workgroup> res : array<f32, 64>;');
  });

  it('writes the real shader with the three operations in the syntax asked for, the layout as given', () => {
    const src = probeSource('layout', { operand: 'left', columnMajor: true }, false);
    expect(src).toContain('subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, col_major>(&src, probe.offset, probe.stride)');
    expect(src).toContain('subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>(&eye, 0u, 16u)');
    expect(src).toContain('subgroupMatrixMultiplyAccumulate(m, e, acc)');
    expect(probeSource('bool', { operand: 'right', columnMajor: false }, false)).toContain('subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&src, probe.offset, false, probe.stride)');
    expect(probeSource('layout', { operand: 'right', columnMajor: false }, false)).toContain('subgroupMatrixMultiplyAccumulate(e, m, acc)');
  });
});

const probe = await probeWebGpu();

// lavapipe has shader-f16 but no subgroup matrices: the harness runs with the operations emulated.
describe.skipIf(!probe.ok || !probe.features.includes('shader-f16'))('the probe\'s harness on lavapipe (operations emulated)', () => {
  let device: ProbeGpu;
  beforeAll(async () => {
    expect((await initBackend('webgpu')).name).toBe('webgpu');
    device = (tf.backend() as unknown as { device: ProbeGpu }).device;
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('reads every case as the specification says (no element wrong), and no device error', async () => {
    takeWebGpuErrors();
    // Offset 0, the array's end and the scalar cases: lavapipe runs each one-invocation case slowly.
    // Of the loop and prologue kinds, one case each (every kind is a program lavapipe compiles slowly).
    const kinds = new Set<string>();
    const cases = probeCases().filter((c) => {
      if (c.trips === undefined && !c.prologue) return c.scalar !== undefined || c.offset === 0 || c.offset + 15 * c.stride + 16 === PROBE_ARRAY;
      const kind = `${c.trips}${c.prologue}`;
      return !kinds.has(kind) && kinds.add(kind) !== undefined;
    });
    expect(cases.filter((c) => c.scalar)).toHaveLength(16);
    expect(cases.filter((c) => c.trips !== undefined || c.prologue).map((c) => [c.trips, c.prologue])).toEqual([[3, undefined], [undefined, true], [3, true]]);
    const results = await runMatrixProbe(device, 'layout', { emulate: true, cases });
    expect(results).toHaveLength(cases.length);
    expect(describeProbe(results)).toEqual([]);
    expect(takeWebGpuErrors()).toEqual([]);
  });

  it('the real shaders compile on lavapipe with the three operations stubbed (the rest of their WGSL is valid)', async () => {
    const stub = (code: string): string =>
      code
        .replace('enable subgroups;\nenable chromium_experimental_subgroup_matrix;\ndiagnostic(off, chromium.subgroup_matrix_uniformity);', 'struct SM { v : f32 }\nfn smMma(a : SM, b : SM, c : SM) -> SM { return SM(a.v * b.v + c.v); }')
        .replace(/subgroupMatrixLoad<subgroup_matrix_\w+<f16, 16, 16>(?:, \w+)?>\(&(\w+), ([\w.]+), (?:(?:true|false), )?([\w.]+)\)/g, 'SM(f32($1[$2 + $3]))')
        .replace('subgroup_matrix_result<f32, 16, 16>()', 'SM(0.0)')
        .replace('subgroupMatrixMultiplyAccumulate(', 'smMma(')
        .replace(/subgroupMatrixStore(?:<\w+>)?\(&res, 0u, acc, (?:(?:true|false), )?16u\)/, 'res[0] = acc.v');
    const gpu = device as unknown as { createShaderModule(d: { code: string }): { getCompilationInfo(): Promise<{ messages: Array<{ type: string; message: string }> }> } };
    for (const syntax of ['layout', 'bool'] as const) {
      for (const operand of ['left', 'right'] as const) {
        for (const [columnMajor, scalar, prologue, loop] of [[true, undefined, false, false], [false, undefined, false, false], [true, 'first', false, false], [false, 'last', false, false], [true, undefined, true, true], [false, undefined, false, true]] as const) {
          const code = stub(probeSource(syntax, { operand, columnMajor, scalar, prologue, loop }, false));
          expect(code).not.toContain('subgroupMatrix');
          const info = await gpu.createShaderModule({ code }).getCompilationInfo();
          expect(info.messages.filter((m) => m.type === 'error').map((m) => m.message)).toEqual([]);
        }
      }
    }
  });

  it('reports a case whose layout the device reads differently (the harness can fail)', async () => {
    // The shader for column-major loads, asked about a row-major case: what a device that swaps the layout would do.
    const c = { operand: 'left' as const, columnMajor: false, stride: 72, offset: 48 };
    const swapped = { ...device, createShaderModule: (d: { code: string }) => device.createShaderModule({ code: d.code.replace('emuLoad(probe.offset, probe.stride, false)', 'emuLoad(probe.offset, probe.stride, true)') }) };
    for (const name of ['createBuffer', 'createComputePipeline', 'createBindGroup', 'createCommandEncoder'] as const) (swapped as Record<string, unknown>)[name] = (device[name] as (...a: unknown[]) => unknown).bind(device);
    Object.defineProperty(swapped, 'queue', { value: device.queue });
    const [result] = await runMatrixProbe(swapped as ProbeGpu, 'layout', { emulate: true, cases: [c] });
    expect(result!.wrong).toBeGreaterThan(200);
  });
});
