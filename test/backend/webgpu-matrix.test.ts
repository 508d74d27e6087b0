import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { probeWebGpu, takeWebGpuErrors } from '../../src/backend/webgpu.js';
import { absMaxPartials, autoMatmul, dyScale, matrixGrid, scaledInterface, matrixMainSource, matrixProbeSource, matrixSupport, pickMatrixSyntax, setMatrixHardwareSide, setMatrixSubgroupSize, setMatrixSyntax, withEnables } from '../../src/backend/webgpu-kernels/matrix.js';
import { MATRIX_CHECK_TOLERANCE, matrixCheckFailure, matrixCheckVerdict, relativeDisagreement } from '../../src/backend/webgpu-kernels/matrix-check.js';
import { pickTile } from '../../src/backend/webgpu-kernels/plan.js';
import { gemmKey, gemmMainSource, gemmWorkgroupSize } from '../../src/backend/webgpu-kernels/program.js';
import { configureWebGpuKernels, describeWebGpuKernels, matmulFromEnv, settingsFromEnv } from '../../src/backend/webgpu-kernels/settings.js';
import { cosine, expectClose, randomArray, read, resnetGradsOnBoth } from './helpers.js';
import { FLOAT16_RUNS, float16Convs, float16Inputs, float16Reference, float16RunName, roundToHalfPrecision, type Shape4 } from '../helpers/float16.js';
import { LAVAPIPE_TIMEOUT_MS } from '../helpers/lavapipe.js';

/** The argument list of the call whose '(' is at `open`, and the index after its ')'. */
function callArgs(code: string, open: number): { args: string; end: number } {
  let depth = 0;
  for (let i = open; i < code.length; i++) {
    if (code[i] === '(') depth++;
    else if (code[i] === ')' && --depth === 0) return { args: code.slice(open + 1, i), end: i + 1 };
  }
  throw new Error('unbalanced call');
}

/**
 * A tensor-core program with the three subgroup-matrix operations replaced by plain functions of
 * the same argument types (u32 offsets and strides, the layout as a bool): the rest of its WGSL
 * (scopes, names, types, the store) then compiles on lavapipe, which has no subgroup matrices.
 * Takes both syntaxes (`MatrixSyntax`): a layout template argument becomes the bool argument.
 */
function stubMatrixOps(code: string): string {
  const stubs = `// cifar-enable: f16 subgroups
  struct SM { v : f32 }
  fn smLoad(off : u32, columnMajor : bool, stride : u32) -> SM { return SM(f32(off + stride) + select(0.0, 1.0, columnMajor)); }
  fn smMma(a : SM, b : SM, c : SM) -> SM { return SM(a.v * b.v + c.v); }
  fn smStore(off : u32, v : SM, columnMajor : bool, stride : u32) { cgC[off] = select(v.v, 0.0, columnMajor) + f32(stride); }`;
  let out = code.replace('// cifar-enable: f16 subgroups chromium_experimental_subgroup_matrix', stubs);
  out = out.replaceAll('subgroup_matrix_result<f32, 16, 16>()', 'SM(0.0)').replaceAll('subgroupMatrixMultiplyAccumulate(', 'smMma(');
  for (const [name, stub] of [['subgroupMatrixLoad', 'smLoad'], ['subgroupMatrixStore', 'smStore']] as const) {
    for (let at = out.indexOf(name); at >= 0; at = out.indexOf(name)) {
      const open = out.indexOf('(&', at);
      const layout = /(row_major|col_major)>$/.exec(out.slice(at, open))?.[1];
      const { args, end } = callArgs(out, open);
      // The pointer (&cgA, &cgB, &cgC) goes: the stubs know their arrays.
      const rest = args.slice(args.indexOf(',') + 1).split(',').map((a) => a.trim());
      // With the layout as a template argument, it goes in as the bool before the stride.
      if (layout) rest.splice(rest.length - 1, 0, String(layout === 'col_major'));
      out = `${out.slice(0, at)}${stub}(${rest.join(', ')})${out.slice(end)}`;
    }
  }
  return out;
}

const matrixSource = { prologue: 'let row0 = 0; let col0 = 0; let kBegin = 0; let numTiles = 1;', aAlongK: true, bAlongK: false, store: 'result[row * 128 + col] = v;' };

describe('which subgroup-matrix syntax the device takes (pickMatrixSyntax)', () => {
  /** A device whose compiler rejects shaders containing any of `rejected`, with `message`. */
  const device = (rejected: string[], message = 'error: no matching call') => ({
    compiled: [] as string[],
    createShaderModule(d: { code: string }) {
      this.compiled.push(d.code);
      const bad = rejected.some((r) => d.code.includes(r));
      return { getCompilationInfo: async () => ({ messages: bad ? [{ type: 'error', message: `${message}\nmore` }] : [{ type: 'warning', message: 'fine' }] }) };
    },
  });

  it('writes the probe in each syntax: the layout as a template argument, or as a bool before the stride', () => {
    const layout = matrixProbeSource('layout');
    expect(layout).toMatch(/^enable f16;\nenable subgroups;\nenable chromium_experimental_subgroup_matrix;/);
    expect(layout).not.toContain('cifar-enable');
    expect(layout).toContain('subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, col_major>(&probeA, 0u, 16u)');
    expect(layout).toContain('subgroupMatrixStore<row_major>(&probeC, 0u, acc, 16u)');
    const bool = matrixProbeSource('bool');
    expect(bool).toContain('subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&probeA, 0u, true, 16u)');
    expect(bool).toContain('subgroupMatrixStore(&probeC, 0u, acc, false, 16u)');
  });

  it('takes the layout syntax where it compiles (a warning is no error), else the bool one, else gives the first error line', async () => {
    const both = device([]);
    expect(await pickMatrixSyntax(both)).toEqual({ syntax: 'layout' });
    expect(both.compiled).toHaveLength(1);
    expect(await pickMatrixSyntax(device(['col_major>']))).toEqual({ syntax: 'bool' });
    expect(await pickMatrixSyntax(device(['subgroupMatrix'], 'error: no subgroup matrices here'))).toEqual({ error: 'error: no subgroup matrices here' });
  });
});

describe('float16 subgroup-matrix GEMMs (pure)', () => {
  afterAll(() => {
    configureWebGpuKernels(settingsFromEnv({}));
  });

  it('takes the mode from CIFAR_WEBGPU_MATMUL, auto by default (float32 until the backend starts), and names a bad value in one line', () => {
    expect(settingsFromEnv({})).toMatchObject({ matmul: 'f32', matmulAuto: true });
    expect(settingsFromEnv({ CIFAR_WEBGPU_MATMUL: 'auto' })).toMatchObject({ matmul: 'f32', matmulAuto: true });
    expect(matmulFromEnv({})).toBe('auto');
    expect(settingsFromEnv({ CIFAR_WEBGPU_MATMUL: 'f32' })).toMatchObject({ matmul: 'f32', matmulAuto: false });
    expect(settingsFromEnv({ CIFAR_WEBGPU_MATMUL: 'tensor-cores' })).toMatchObject({ matmul: 'tensor-cores', matmulAuto: false });
    expect(settingsFromEnv({ CIFAR_WEBGPU_MATMUL: 'emulated' }).matmul).toBe('emulated');
    // Read when the module loads: a typo there must not crash every command; the probe rejects it.
    expect(settingsFromEnv({ CIFAR_WEBGPU_MATMUL: 'tensorcores' })).toMatchObject({ matmul: 'f32', matmulAuto: false });
    expect(() => matmulFromEnv({ CIFAR_WEBGPU_MATMUL: 'tensorcores' })).toThrow('CIFAR_WEBGPU_MATMUL: "tensorcores" is not one of auto, f32, tensor-cores, emulated');
    expect(describeWebGpuKernels(settingsFromEnv({ CIFAR_WEBGPU_MATMUL: 'tensor-cores' }))).toContain('float16 tensor cores');
    expect(describeWebGpuKernels(settingsFromEnv({}))).not.toContain('float16');
  });

  it('auto tries the tensor cores on a hardware adapter that offers them, and never on a software adapter or Dawn\'s null backend', () => {
    const offered = { ok: true, subgroupSize: 32, side: 16 as const };
    const gpu = { software: false, runsNothing: false };
    expect(autoMatmul(gpu, offered)).toBe('tensor-cores');
    expect(autoMatmul(gpu, { ok: false, reason: 'the adapter offers no subgroup matrices (chromium-experimental-subgroup-matrix)' })).toBe('f32');
    expect(autoMatmul({ ...gpu, software: true }, { ...offered, side: 8 })).toBe('f32');
    expect(autoMatmul({ ...gpu, runsNothing: true }, offered)).toBe('f32');
  });

  it('shares a tile\'s 16 x 16 blocks among 8 subgroups of 32 with the fewest loads per subgroup', () => {
    expect(matrixGrid({ tm: 128, tn: 128, tk: 16 }, 8)).toEqual({ rows: 2, cols: 4, rowBlocks: 4, colBlocks: 2 });
    expect(matrixGrid({ tm: 64, tn: 64, tk: 16 }, 8)).toEqual({ rows: 2, cols: 4, rowBlocks: 2, colBlocks: 1 });
    expect(matrixGrid({ tm: 128, tn: 16, tk: 16 }, 8)).toEqual({ rows: 8, cols: 1, rowBlocks: 1, colBlocks: 1 });
    // 4 blocks for 8 subgroups: 4 take one each (the other 4 repeat a share and store nothing).
    expect(matrixGrid({ tm: 32, tn: 32, tk: 16 }, 8)).toEqual({ rows: 2, cols: 2, rowBlocks: 1, colBlocks: 1 });
    expect(matrixGrid({ tm: 16, tn: 16, tk: 16 }, 8)).toEqual({ rows: 1, cols: 1, rowBlocks: 1, colBlocks: 1 });
  });

  it('asks a device for shader-f16, subgroup matrices of f16 x f16 -> f32 16 x 16 x 16, one subgroup size and 32 KiB of workgroup memory', () => {
    const h100 = {
      features: ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'],
      subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 }],
      limits: { maxComputeWorkgroupStorageSize: 49152 },
      subgroupMinSize: 32,
      subgroupMaxSize: 32,
    };
    expect(matrixSupport('tensor-cores', h100)).toEqual({ ok: true, subgroupSize: 32, side: 16 });
    expect(matrixSupport('tensor-cores', { ...h100, features: ['subgroups'] }).reason).toBe('the device has no shader-f16');
    expect(matrixSupport('tensor-cores', { ...h100, subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f16', M: 16, N: 16, K: 16 }] }).reason).toBe(
      'no f16 x f16 -> f32 16 x 16 x 16 or 8 x 8 x 8 subgroup-matrix configuration',
    );
    // 16 x 16 x 16 where offered, else 8 x 8 x 8 (lavapipe since Mesa 25.1, subgroups of 8).
    const eight = { componentType: 'f16', resultComponentType: 'f32', M: 8, N: 8, K: 8 };
    expect(matrixSupport('tensor-cores', { ...h100, subgroupMatrixConfigs: [eight, ...h100.subgroupMatrixConfigs] }).side).toBe(16);
    expect(matrixSupport('tensor-cores', { ...h100, subgroupMatrixConfigs: [eight], subgroupMinSize: 8, subgroupMaxSize: 8 })).toEqual({ ok: true, subgroupSize: 8, side: 8 });
    // 16 x 8 x 16 (NVIDIA offers it too) is neither.
    expect(matrixSupport('tensor-cores', { ...h100, subgroupMatrixConfigs: [{ ...eight, M: 16, K: 16 }] }).ok).toBe(false);
    expect(matrixSupport('tensor-cores', { ...h100, subgroupMinSize: 16 }).reason).toBe('the subgroup size is not fixed (16-32)');
    expect(matrixSupport('tensor-cores', { ...h100, limits: { maxComputeWorkgroupStorageSize: 16384 } }).reason).toBe('the device has under 32 KiB of workgroup memory');
    // lavapipe: float16, no subgroup matrices.
    const lavapipe = { features: ['shader-f16', 'subgroups'], subgroupMatrixConfigs: [], limits: { maxComputeWorkgroupStorageSize: 32768 }, subgroupMinSize: 8, subgroupMaxSize: 8 };
    expect(matrixSupport('tensor-cores', lavapipe).ok).toBe(false);
    expect(matrixSupport('emulated', lavapipe)).toEqual({ ok: true, subgroupSize: 32 });
  });

  it('puts the enable directives a program\'s marker names before tfjs\' declarations, and leaves other code alone', () => {
    const code = 'struct Uniforms { x : f32 };\n  // cifar-enable: f16 subgroups chromium_experimental_subgroup_matrix\nfn main() {}';
    const out = withEnables(code);
    expect(out.startsWith('enable f16;\nenable subgroups;\nenable chromium_experimental_subgroup_matrix;\ndiagnostic(off, chromium.subgroup_matrix_uniformity);\nstruct Uniforms')).toBe(true);
    expect(withEnables('// cifar-enable: f16\nfn main() {}')).toBe('enable f16;\n// cifar-enable: f16\nfn main() {}');
    expect(withEnables('fn main() {}')).toBe('fn main() {}');
  });

  it('the start-up check: disagreement relative to the largest reference value; the first kernels over 2e-3 named with their figures (NaN fails)', () => {
    expect(relativeDisagreement(new Float32Array([1, 2.01]), new Float32Array([1, 2]))).toBeCloseTo(0.005, 6);
    expect(relativeDisagreement(new Float32Array([0, 0]), new Float32Array([0, 0]))).toBe(0);
    expect(relativeDisagreement(new Float32Array([Number.NaN, 2]), new Float32Array([1, 2]))).toBe(Infinity);
    expect(matrixCheckFailure({ forward: 3e-4, 'filter gradient': 3e-4, 'input gradient': MATRIX_CHECK_TOLERANCE })).toBeUndefined();
    // The H100's tensor cores of 2026-11-27: the forward right, both gradients wrong.
    expect(matrixCheckFailure({ forward: 3.6e-4, 'filter gradient': 1.42, 'input gradient': 1.53 })).toBe(
      'its convolutions disagree with the float32 kernels on this device (filter gradient off by 1.4, input gradient off by 1.5 of the largest value; at most 0.002 allowed)',
    );
    expect(matrixCheckFailure({ forward: Number.NaN, 'filter gradient': 0, 'input gradient': 0 })).toContain('forward off by NaN');
  });

  it('the verdict: float16 everywhere when all agree, for the forward convolutions only when just the gradients disagree, else none', () => {
    expect(matrixCheckVerdict({ forward: 3e-4, 'filter gradient': 3e-4, 'input gradient': 3e-4 })).toEqual({ scope: 'all' });
    // The H100 of 2026-11-27.
    expect(matrixCheckVerdict({ forward: 3.6e-4, 'filter gradient': 1.42, 'input gradient': 1.53 })).toEqual({
      scope: 'forward',
      note: 'for the forward convolutions only, the gradients in float32: its convolutions disagree with the float32 kernels on this device (filter gradient off by 1.4, input gradient off by 1.5 of the largest value; at most 0.002 allowed)',
    });
    expect(matrixCheckVerdict({ forward: 0.5, 'filter gradient': 3e-4, 'input gradient': 3e-4 })).toEqual({ scope: 'none', reason: expect.stringContaining('forward off by 0.50') });
    expect(matrixCheckVerdict({ forward: Number.NaN, 'filter gradient': 0, 'input gradient': 0 }).scope).toBe('none');
    expect(describeWebGpuKernels({ ...settingsFromEnv({ CIFAR_WEBGPU_MATMUL_SCOPE: 'forward' }), matmul: 'tensor-cores' })).toContain('float16 tensor cores, for the forward convolutions only');
  });

  it('CIFAR_WEBGPU_MATRIX_SCALE (a diagnosis): dy\'s scale reduced in workgroup memory by default, in registers, or not at all; the start line says which', () => {
    const before = configureWebGpuKernels({ matmul: 'tensor-cores' });
    try {
      expect(dyScale(1, 8192)).toEqual({ operand: 1, partials: 2, reduce: 'shared' });
      configureWebGpuKernels({ matrixScale: 'registers' });
      expect(dyScale(1, 8192)).toEqual({ operand: 1, partials: 2, reduce: 'registers' });
      configureWebGpuKernels({ matrixScale: 'off' });
      expect(dyScale(1, 8192)).toBeUndefined();
      expect(settingsFromEnv({}).matrixScale).toBe('shared');
      expect(settingsFromEnv({ CIFAR_WEBGPU_MATRIX_SCALE: '0' }).matrixScale).toBe('off');
      expect(settingsFromEnv({ CIFAR_WEBGPU_MATRIX_SCALE: 'registers' }).matrixScale).toBe('registers');
      expect(describeWebGpuKernels({ ...settingsFromEnv({ CIFAR_WEBGPU_MATRIX_SCALE: '0' }), matmul: 'tensor-cores' })).toContain('float16 tensor cores, dy unscaled');
      expect(describeWebGpuKernels({ ...settingsFromEnv({ CIFAR_WEBGPU_MATRIX_SCALE: 'registers' }), matmul: 'tensor-cores' })).toContain("dy's scale reduced in registers");
      expect(describeWebGpuKernels(settingsFromEnv({ CIFAR_WEBGPU_MATRIX_SCALE: '0' }))).not.toContain('unscaled');
      // The two reductions are different programs (their shader keys differ), and only the shared one uses workgroup memory for it.
      const shared = scaledInterface({ operand: 1, partials: 2, reduce: 'shared' }, ['x', 'dy'], undefined).keySuffix;
      expect(scaledInterface({ operand: 1, partials: 2, reduce: 'registers' }, ['x', 'dy'], undefined).keySuffix).not.toBe(shared);
    } finally {
      configureWebGpuKernels(before);
    }
  });

  it('one partial maximum per 4,096 values of dy, 1 to 256 (one per thread of the GEMM that reduces them)', () => {
    expect(absMaxPartials(10)).toBe(1);
    expect(absMaxPartials(4097)).toBe(2);
    expect(absMaxPartials(256 * 32 * 32 * 64)).toBe(256);
  });

  it('tensor cores: 16-deep float16 tiles, 256 invocations in a row, subgroup-matrix loads of the K-major tiles (A column-major, B row-major)', () => {
    const before = configureWebGpuKernels({ matmul: 'tensor-cores', prefetch: true });
    try {
      const tile = pickTile(4608, 512, 16384);
      expect(tile).toEqual({ tm: 128, tn: 128, tk: 16 });
      expect(gemmWorkgroupSize()).toEqual([256, 1, 1]);
      expect(gemmKey(tile)).toBe('128x128x16pm');
      const src = gemmMainSource({ tile, ...matrixSource });
      expect(src).toContain('// cifar-enable: f16 subgroups chromium_experimental_subgroup_matrix');
      // A staged along K is padded by 8 halves: 16 * (128 + 8); B is not.
      expect(src).toContain('var<workgroup> cgA : array<f16, 2176>;');
      expect(src).toContain('var<workgroup> cgB : array<f16, 2048>;');
      // Subgroup 2 x 4 grid, 4 x 2 blocks each: 4 left and 2 right loads and 8 multiply-accumulates per K step.
      // The layout as a template argument (the syntax of the Dawn this project installs).
      expect(src.match(/subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, col_major>\(&cgA, 0u \+ u32\(\(cgShare \/ 4\) \* 64\) \+ \d+u, 136u\)/g)).toHaveLength(4);
      expect(src.match(/subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, row_major>\(&cgB, 0u \+ u32\(\(cgShare % 4\) \* 32\) \+ \d+u, 128u\)/g)).toHaveLength(2);
      expect(src.match(/= subgroupMatrixMultiplyAccumulate\(a\d, b\d, acc\d_\d\);/g)).toHaveLength(8);
      expect(src.match(/var acc\d_\d = subgroup_matrix_result<f32, 16, 16>\(\);/g)).toHaveLength(8);
      expect(src).toContain('subgroupMatrixStore<row_major>(&cgC, cgGroup * 256u, acc3_1, 16u);');
      // Older Dawns: the layout as a bool argument before the stride.
      setMatrixSyntax('bool');
      const old = gemmMainSource({ tile, ...matrixSource });
      setMatrixSyntax('layout');
      expect(old.match(/subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>\(&cgA, 0u \+ u32\(\(cgShare \/ 4\) \* 64\) \+ \d+u, true, 136u\)/g)).toHaveLength(4);
      expect(old).toContain('subgroupMatrixStore(&cgC, cgGroup * 256u, acc3_1, false, 16u);');
      // Unscaled operands are clamped into float16's range before the conversion.
      expect(src).toContain('f16(clamp(pa0, -65504.0, 65504.0))');
      expect(src).not.toMatch(/\bcgS\b/);
      // 32 deep: two steps, each in its own scope (a0.. and b0.. are declared again).
      configureWebGpuKernels({ matrixDepth: 32 });
      const deep = gemmMainSource({ tile: pickTile(4608, 512, 16384), ...matrixSource });
      expect(deep.match(/\{\s+let a0 = subgroupMatrixLoad/g)).toHaveLength(2);
      expect(deep).toContain('subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, col_major>(&cgA, 2176u + u32((cgShare / 4) * 64) + 0u, 136u)');
      expect(deep.match(/= subgroupMatrixMultiplyAccumulate\(/g)).toHaveLength(16);
    } finally {
      configureWebGpuKernels(before);
    }
  });

  it('tensor cores on a device of 8 x 8 x 8 matrices and subgroups of 8: each 16 x 16 x 16 step is eight products, the results leave in rounds of 8 subgroups', () => {
    const before = configureWebGpuKernels({ matmul: 'tensor-cores', prefetch: true });
    setMatrixHardwareSide(8);
    setMatrixSubgroupSize(8);
    try {
      const tile = pickTile(4608, 512, 16384);
      // 32 subgroups: a 4 x 8 grid of them, 2 x 1 blocks of 16 x 16 each.
      expect(matrixGrid(tile, 32)).toEqual({ rows: 4, cols: 8, rowBlocks: 2, colBlocks: 1 });
      const src = gemmMainSource({ tile, ...matrixSource });
      // Per 16-deep step: two K parts, each loading both halves of 2 left and 1 right blocks.
      expect(src.match(/subgroupMatrixLoad<subgroup_matrix_left<f16, 8, 8>, col_major>\(&cgA, /g)).toHaveLength(8);
      expect(src.match(/subgroupMatrixLoad<subgroup_matrix_right<f16, 8, 8>, row_major>\(&cgB, /g)).toHaveLength(4);
      expect(src.match(/= subgroupMatrixMultiplyAccumulate\(a\d_\d, b\d_\d, acc\d_\d_\d_\d\);/g)).toHaveLength(16);
      expect(src.match(/var acc\d_\d_\d_\d = subgroup_matrix_result<f32, 8, 8>\(\);/g)).toHaveLength(8);
      // Left part p is rows 8p on (column-major: + 8p), right part q columns 8q on (row-major: + 8q);
      // K part 1 is 8 rows of the staged tile on (A's stride 136, B's 128).
      expect(src).toContain('let a1_1 = subgroupMatrixLoad<subgroup_matrix_left<f16, 8, 8>, col_major>(&cgA, 0u + u32((cgShare / 8) * 32) + 16u + 1096u, 136u);');
      expect(src).toContain('let b0_1 = subgroupMatrixLoad<subgroup_matrix_right<f16, 8, 8>, row_major>(&cgB, 0u + u32((cgShare % 8) * 16) + 0u + 1032u, 128u);');
      expect(src).toContain('acc1_0_1_0 = subgroupMatrixMultiplyAccumulate(a1_1, b0_0, acc1_0_1_0);');
      // Part (p, q) of a 16 x 16 result goes to row 8p, column 8q of its row-major block.
      expect(src).toContain('subgroupMatrixStore<row_major>(&cgC, (cgGroup % 8u) * 256u + 136u, acc1_0_1_1, 16u);');
      // Workgroup memory for 8 blocks (8 KiB), not 32, and four rounds through it.
      expect(src).toContain('var<workgroup> cgC : array<f32, 2048>;');
      expect(src).toContain('for (var cgRound = 0; cgRound < 4; cgRound++)');
      // NVIDIA's shape is written as before: one slot per subgroup, no rounds.
      setMatrixHardwareSide(16);
      setMatrixSubgroupSize(32);
      const h100 = gemmMainSource({ tile, ...matrixSource });
      expect(h100).not.toContain('cgRound');
      expect(h100).toContain('var<workgroup> cgC : array<f32, 2048>;');
    } finally {
      setMatrixHardwareSide(16);
      setMatrixSubgroupSize(32);
      configureWebGpuKernels(before);
    }
  });

  it('emulated: the same program with the three operations written out, and dy scaled by a power of two from its partial maxima', () => {
    const before = configureWebGpuKernels({ matmul: 'emulated', prefetch: false });
    try {
      const tile = pickTile(100, 100, 16384);
      expect(gemmKey(tile)).toBe('128x128x16e');
      const src = gemmMainSource({ tile, ...matrixSource, scale: { operand: 1, partials: 3, reduce: 'shared' } });
      expect(src).toContain('// cifar-enable: f16\n');
      expect(src).not.toContain('subgroupMatrix');
      expect(src).toContain('for (var a = 0u; a < 8u; a++) { emuMma(a, 0u + u32((cgShare / 4) * 64) + (a / 2u) * 16u, 0u + u32((cgShare % 4) * 32) + (a % 2u) * 16u); }');
      expect(src).toContain('cgC[lid] = select(0.0, dyMax[min(lid, 2)], lid < 3);');
      expect(src).toContain('exp2(clamp(floor(log2(16384.0 / m)), -64.0, 64.0))');
      // B (dy) is scaled before its conversion; A is not.
      expect(src).toMatch(/= f16\(clamp\(\(readB\(kBase \+ kk, col0 \+ mm\)\) \* cgS, -65504.0, 65504.0\)\)/);
      expect(src).toMatch(/= f16\(clamp\(readA\(kBase \+ kk, row0 \+ mm\), -65504.0, 65504.0\)\)/);
      // Reduced in registers: each invocation loops over the partials; no workgroup reduction, no uniform load.
      const inRegisters = gemmMainSource({ tile, ...matrixSource, scale: { operand: 1, partials: 3, reduce: 'registers' } });
      expect(inRegisters).toContain('for (var p = 0; p < 3; p++) { cgMax = max(cgMax, dyMax[p]); }');
      expect(inRegisters).not.toContain('workgroupUniformLoad(&cgScale)');
      expect(inRegisters).toMatch(/= f16\(clamp\(\(readB\(kBase \+ kk, col0 \+ mm\)\) \* cgS, -65504.0, 65504.0\)\)/);
      expect(() => matrixMainSource({ tile: { tm: 16, tn: 16, tk: 8 }, ...matrixSource })).toThrow('does not divide');
      // 32 deep: two steps of 16 per staged tile, the second 16 rows of K further on.
      configureWebGpuKernels({ matrixDepth: 32 });
      const deep = gemmMainSource({ tile: pickTile(100, 100, 16384), ...matrixSource });
      expect(deep).toContain('var<workgroup> cgA : array<f16, 4352>;'); // 32 * (128 + 8)
      expect(deep.match(/for \(var a = 0u; a < 8u; a\+\+\)/g)).toHaveLength(2);
      expect(deep).toContain('emuMma(a, 2176u + u32((cgShare / 4) * 64)');
      expect(describeWebGpuKernels({ ...settingsFromEnv({}), matmul: 'emulated', matrixDepth: 32 })).toContain('float16 tiles 32 deep');
    } finally {
      configureWebGpuKernels(before);
    }
  });
});

const probe = await probeWebGpu();

describe.skipIf(!probe.ok)('CIFAR_WEBGPU_MATMUL when the backend starts (dist/, a process each)', () => {
  const start = (matmul: string): Promise<{ stdout: string }> =>
    promisify(execFile)(
      process.execPath,
      ['--input-type=module', '-e', "import { initBackend } from './dist/backend/index.js'; try { console.log((await initBackend('webgpu')).reason); } catch (e) { console.log('error:', e.message); } process.exit(0);"],
      { env: { ...process.env, CIFAR_WEBGPU_MATMUL: matmul }, timeout: LAVAPIPE_TIMEOUT_MS },
    );

  it('tensor-cores on an adapter without subgroup matrices (lavapipe): float32 kernels, and the start line says why', async () => {
    const { stdout } = await start('tensor-cores');
    expect(stdout).toContain('(float16 tensor-cores not available: the adapter offers no subgroup matrices (chromium-experimental-subgroup-matrix); float32 kernels)');
    expect(stdout).not.toContain('float16 tensor cores,');
  });

  it.skipIf(!probe.ok || !probe.features.includes('shader-f16'))('emulated float16 GEMMs start only after their convolutions agree with float32 on the device (the check ran both: they differ, by float16\'s rounding)', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        "import { initBackend } from './dist/backend/index.js'; import { matrixCheck } from './dist/backend/webgpu-kernels/matrix-check.js'; const r = await initBackend('webgpu'); console.log(r.reason); console.log(JSON.stringify(matrixCheck())); process.exit(0);",
      ],
      { env: { ...process.env, CIFAR_WEBGPU_MATMUL: 'emulated' }, timeout: LAVAPIPE_TIMEOUT_MS },
    );
    const [detail, figures] = stdout.trim().split('\n').slice(-2);
    expect(detail).toContain('float16 subgroup matrices emulated');
    expect(detail).not.toContain('float32 kernels)');
    const check = JSON.parse(figures!) as Record<string, number>;
    expect(Object.keys(check).sort()).toEqual(['filter gradient', 'forward', 'input gradient']);
    for (const e of Object.values(check)) {
      expect(e).toBeGreaterThan(1e-5); // float16 operands: had both runs used the same program, 0
      expect(e).toBeLessThanOrEqual(MATRIX_CHECK_TOLERANCE);
    }
  });

  it('a value that is not a mode stops the start with a one-line error', async () => {
    const { stdout } = await start('fp16');
    expect(stdout.trim()).toBe('error: CIFAR_WEBGPU_MATMUL: "fp16" is not one of auto, f32, tensor-cores, emulated');
  });

  it('auto (the default) on an adapter without subgroup matrices: float32 kernels, and the start line says nothing of float16', async () => {
    const { stdout } = await start('');
    expect(stdout).toContain('kernels: tiles up to 128');
    expect(stdout).not.toContain('float16');
  });
});

// lavapipe has shader-f16 but no subgroup matrices: the emulation checks everything but the three operations themselves.
describe.skipIf(!probe.ok || !probe.features.includes('shader-f16'))('float16 GEMMs (emulated subgroup matrices) vs the cpu backend on float16-rounded inputs', () => {
  beforeAll(async () => {
    expect((await initBackend('webgpu')).name).toBe('webgpu');
  });

  afterAll(async () => {
    configureWebGpuKernels(settingsFromEnv({}));
    await tf.setBackend('cpu');
  });

  const convs = float16Convs;

  for (const run of FLOAT16_RUNS) {
    const { x, f, s, pad, tile, wide, prefetch, depth } = run;
    it(`${float16RunName(run)}: dW, dx, conv2d and fused conv2d within 2e-5`, async () => {
      const inputs = float16Inputs(run);
      configureWebGpuKernels({ matmul: 'emulated', maxTileSide: tile, wideLoads: wide, prefetch, matrixDepth: depth });
      await tf.setBackend('webgpu');
      const gpu = await read(() => convs(tf.tensor4d(inputs.x, x), tf.tensor4d(inputs.dy, inputs.dyShape), tf.tensor4d(inputs.w, inputs.filter), s, pad, tf.tensor1d(inputs.b)));
      const keys = Object.keys((tf.backend() as unknown as { pipelineCache: Record<string, unknown> }).pipelineCache).join(' ');
      await tf.setBackend('cpu');
      const cpu = await float16Reference(run, inputs);
      ['dW', 'dx', 'conv2d', 'fused'].forEach((label, i) => expectClose(gpu[i]!, cpu[i]!, 2e-5, label));
      // The float32 programs would be 1e-4 or more off float16-rounded inputs: the emulated ones ran.
      expect(keys).toMatch(new RegExp(`cifarConvFilterGrad_${f}x${f}_s${s}x${s}_\\S+e${wide ? 'w' : ''}_s\\d+`));
      expect(keys).toMatch(new RegExp(`cifarConvInputGrad_${f}x${f}_s${s}x${s}_\\S+e${wide ? 'w' : ''}_s\\d+`));
      expect(keys).toMatch(/cifarConvForward_\S+e\w*_bias_relu/);
      expect(keys).toMatch(new RegExp(`cifarConvFilterGrad_\\S+_\\d+x\\d+x${depth}p?e`));
    });
  }

  it('asks the real WGSL compiler: on lavapipe, without subgroup matrices, neither syntax compiles and the reason is Tint\'s', async () => {
    await tf.setBackend('webgpu');
    const device = (tf.backend() as unknown as { device: Parameters<typeof pickMatrixSyntax>[0] }).device;
    takeWebGpuErrors();
    const picked = await pickMatrixSyntax(device);
    expect(picked).toEqual({ error: expect.stringContaining("extension 'chromium_experimental_subgroup_matrix' is not allowed") });
    // The rejected probes stayed inside their error scopes: nothing reported as the device's error.
    expect(takeWebGpuErrors()).toEqual([]);
  });

  it('tensor-core programs (forward, dW, dx; 16 and 32 deep) compile on lavapipe with the three subgroup-matrix operations stubbed, every workgroup variable a multiple of 16 bytes', async () => {
    await tf.setBackend('webgpu');
    const device = (tf.backend() as unknown as { device: { createShaderModule: (d: { code: string }) => unknown } }).device;
    const create = device.createShaderModule;
    const matrixPrograms: string[] = [];
    device.createShaderModule = (d) => {
      if (d.code.includes('subgroupMatrixLoad')) matrixPrograms.push(d.code);
      return create.call(device, { ...d, code: stubMatrixOps(d.code) });
    };
    takeWebGpuErrors();
    try {
      for (const matrixDepth of [16, 32] as const) {
        configureWebGpuKernels({ ...settingsFromEnv({}), matmul: 'tensor-cores', matrixDepth });
        for (const [x, co, s] of [[[2, 8, 8, 64], 128, 2], [[2, 9, 9, 6], 20, 1]] as const) {
          const filter: Shape4 = [3, 3, x[3], co];
          const info = tf.backend_util.computeConv2DInfo([...x], filter, s, 1, 'same');
          await read(() => {
            const [xt, w, dy] = [tf.ones([...x]) as tf.Tensor4D, tf.ones(filter) as tf.Tensor4D, tf.ones([x[0], info.outHeight, info.outWidth, co]) as tf.Tensor4D];
            return convs(xt, dy, w, s, 'same', tf.ones([co]));
          });
        }
      }
      const keys = Object.keys((tf.backend() as unknown as { pipelineCache: Record<string, unknown> }).pipelineCache).join(' ');
      expect(keys).toMatch(/cifarConvFilterGrad_\S+x32pm\S*_s\d+/);
      expect(keys).toMatch(/cifarConvInputGrad_\S+x16pm\S*_s\d+/);
      expect(keys).toMatch(/cifarConvForward_\S+x32pm\S*_bias_relu/);
      expect(takeWebGpuErrors()).toEqual([]);
      // Vulkan wants cooperative-matrix loads 16-byte aligned: with every workgroup variable a
      // multiple of 16 bytes, no driver layout can put the float16 arrays off it (matrix.ts).
      expect(matrixPrograms.length).toBeGreaterThanOrEqual(6);
      const bytes: Record<string, number> = { f16: 2, f32: 4, i32: 4, u32: 4, 'vec4<f16>': 8, 'vec4<f32>': 16, 'vec4<i32>': 16 };
      const sizeOf = (type: string): number => {
        const array = /^array<(.+), (\d+)>$/.exec(type);
        const size = array ? bytes[array[1]!]! * Number(array[2]) : bytes[type];
        if (size === undefined || Number.isNaN(size)) throw new Error(`unknown workgroup type ${type}`);
        return size;
      };
      for (const code of matrixPrograms) {
        const declared = [...code.matchAll(/var<workgroup> (\w+) : ([^;]+);/g)];
        expect(declared.length).toBeGreaterThanOrEqual(3);
        for (const [, name, type] of declared) expect(sizeOf(type!) % 16, `${name} : ${type}`).toBe(0);
      }
    } finally {
      device.createShaderModule = create;
      configureWebGpuKernels(settingsFromEnv({}));
    }
  });

  it('float32 kernels on the same inputs differ from the float16-rounded reference by over 5x the tolerance above (the comparison can fail)', async () => {
    const x: Shape4 = [2, 8, 8, 16];
    const filter: Shape4 = [3, 3, 16, 16];
    const [xv, wv] = [x, filter].map((shape, i) => randomArray(shape.reduce((a, b) => a * b, 1), 51 + i));
    configureWebGpuKernels({ matmul: 'f32' });
    await tf.setBackend('webgpu');
    const [gpu] = await read(() => [tf.conv2d(tf.tensor4d(xv!, x), tf.tensor4d(wv!, filter), 1, 'same')]);
    await tf.setBackend('cpu');
    const [rounded] = await read(() => [tf.conv2d(tf.tensor4d(roundToHalfPrecision(xv!), x), tf.tensor4d(roundToHalfPrecision(wv!), filter), 1, 'same')]);
    let err = 0;
    let scale = 0;
    for (let i = 0; i < rounded!.length; i++) {
      err = Math.max(err, Math.abs(gpu![i]! - rounded![i]!));
      scale = Math.max(scale, Math.abs(rounded![i]!));
    }
    expect(err / scale).toBeGreaterThan(1e-4);
  });

  for (const matrixScale of ['shared', 'registers'] as const) {
    it(`scales dy by a power of two first (its scale reduced ${matrixScale === 'shared' ? 'in workgroup memory' : 'in registers'}): gradients of dy around 1e-7 (zero or subnormal in float16) keep float16's precision`, async () => {
      const x: Shape4 = [4, 8, 8, 16];
      const filter: Shape4 = [3, 3, 16, 32];
      const dyShape: Shape4 = [4, 8, 8, 32];
      const [xv, dyv, wv] = [x, dyShape, filter].map((shape, i) => randomArray(shape.reduce((a, b) => a * b, 1), 61 + i));
      const tiny = dyv!.map((v) => v * 1e-7);
      configureWebGpuKernels({ matmul: 'emulated', maxTileSide: 128, wideLoads: true, prefetch: true, matrixScale });
      await tf.setBackend('webgpu');
      const gpu = await read(() => convs(tf.tensor4d(xv!, x), tf.tensor4d(tiny, dyShape), tf.tensor4d(wv!, filter), 1, 'same', tf.zeros([32])).slice(0, 2));
      await tf.setBackend('cpu');
      const cpu = await read(() => convs(tf.tensor4d(roundToHalfPrecision(xv!), x), tf.tensor4d(roundToHalfPrecision(tiny), dyShape), tf.tensor4d(roundToHalfPrecision(wv!), filter), 1, 'same', tf.zeros([32])).slice(0, 2));
      expectClose(gpu[0]!, cpu[0]!, 2e-5, 'dW');
      expectClose(gpu[1]!, cpu[1]!, 2e-5, 'dx');
    });
  }

  it('float16 for the forward convolutions only (matmulScope forward): the gradients are float32\'s exactly, the forward float16\'s', async () => {
    const x: Shape4 = [2, 8, 8, 16];
    const filter: Shape4 = [3, 3, 16, 32];
    const dyShape: Shape4 = [2, 8, 8, 32];
    const [xv, dyv, wv] = [x, dyShape, filter].map((shape, i) => randomArray(shape.reduce((a, b) => a * b, 1), 71 + i));
    await tf.setBackend('webgpu');
    const run = () => read(() => convs(tf.tensor4d(xv!, x), tf.tensor4d(dyv!, dyShape), tf.tensor4d(wv!, filter), 1, 'same', tf.zeros([32])).slice(0, 3));
    configureWebGpuKernels({ ...settingsFromEnv({}), matmul: 'f32' });
    const f32 = await run();
    configureWebGpuKernels({ matmul: 'emulated', matmulScope: 'forward' });
    const forwardOnly = await run();
    configureWebGpuKernels({ matmulScope: 'all' });
    const all = await run();
    expect(Array.from(forwardOnly[0]!)).toEqual(Array.from(f32[0]!)); // dW
    expect(Array.from(forwardOnly[1]!)).toEqual(Array.from(f32[1]!)); // dx
    expect(Array.from(forwardOnly[2]!)).toEqual(Array.from(all[2]!)); // the forward: float16's
    expect(Array.from(forwardOnly[2]!)).not.toEqual(Array.from(f32[2]!));
    expect(Array.from(all[0]!)).not.toEqual(Array.from(f32[0]!));
  });

  it('a whole ResNet with float16 GEMMs: the cpu backend\'s float32 loss within 1e-3, and its gradients\' directions', async () => {
    configureWebGpuKernels({ ...settingsFromEnv({}), matmul: 'emulated' });
    const { cpu, gpu } = await resnetGradsOnBoth(8, 3, [1, 7, 3]);
    expect(gpu.length).toBe(cpu.length);
    // Every conv's operands are rounded to float16. Through batch norm on 3 images that leaves the
    // loss within 3e-4 and the conv and dense gradients within 0.996 to 0.999 of their direction;
    // batch norm's scale and offset gradients (sums that mostly cancel) 0.98 to 0.999, over
    // random initialisations. A wrong index or scale gives cosines near 0.
    expectClose(gpu[0]!, cpu[0]!, 1e-3, 'loss');
    cpu.slice(1).forEach((expected, i) => expect(cosine(gpu[i + 1]!, expected), `gradient ${i}`).toBeGreaterThan(expected.length > 100 ? 0.99 : 0.95));
  });
});
