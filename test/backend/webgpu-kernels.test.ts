import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { probeWebGpu } from '../../src/backend/webgpu.js';
import { type ConvGeometry, isSupported, phaseTaps, pickTile, planFilterGrad, planInputGrad, tileStorageBytes } from '../../src/backend/webgpu-kernels/plan.js';
import { gemmKey, gemmMainSource, usesVec4 } from '../../src/backend/webgpu-kernels/program.js';
import { planForward } from '../../src/backend/webgpu-kernels/conv-forward.js';
import { inputGradAsForward } from '../../src/backend/webgpu-kernels/conv-input-grad.js';
import { configureWebGpuKernels, DEFAULT_MAX_TILE_SIDE, describeWebGpuKernels, type KernelVariant, settingsFromEnv, webGpuKernelSettings, withWebGpuKernels } from '../../src/backend/webgpu-kernels/settings.js';
import { expectClose, randomArray, read, resnetGradsOnBoth } from './helpers.js';

type Shape4 = [number, number, number, number];

function geometry(x: Shape4, filter: number, co: number, stride: number, pad: 'same' | 'valid'): ConvGeometry {
  return tf.backend_util.computeConv2DInfo(x, [filter, filter, x[3], co], stride, 1, pad);
}

describe('withWebGpuKernels (pure)', () => {
  it('runs with the change and puts back only what it changed, after a throw, and after an async run settles', async () => {
    const start = configureWebGpuKernels({ matmul: 'emulated', prefetch: true });
    try {
      expect(withWebGpuKernels({ matmul: 'f32' }, () => webGpuKernelSettings().matmul)).toBe('f32');
      expect(webGpuKernelSettings().matmul).toBe('emulated');
      // A setting changed inside, not by the change, stays changed.
      withWebGpuKernels({ matmul: 'f32' }, () => configureWebGpuKernels({ prefetch: false }));
      expect([webGpuKernelSettings().matmul, webGpuKernelSettings().prefetch]).toEqual(['emulated', false]);
      expect(() => withWebGpuKernels({ matmul: 'f32' }, () => { throw new Error('boom'); })).toThrow('boom');
      expect(webGpuKernelSettings().matmul).toBe('emulated');
      let release!: () => void;
      const running = withWebGpuKernels({ matmul: 'f32' }, () => new Promise<string>((resolve) => (release = () => resolve(webGpuKernelSettings().matmul))));
      expect(webGpuKernelSettings().matmul).toBe('f32'); // still running
      release();
      expect(await running).toBe('f32');
      expect(webGpuKernelSettings().matmul).toBe('emulated');
    } finally {
      configureWebGpuKernels(start);
    }
  });
});

describe('webgpu conv-gradient plans (pure)', () => {
  it('describes a variant in words for start lines and reports', () => {
    expect(describeWebGpuKernels(settingsFromEnv({}))).toBe('tiles up to 128, prefetch, vec4, 16 deep, vec4 loads');
    expect(describeWebGpuKernels(settingsFromEnv({ CIFAR_WEBGPU_TILE: '64', CIFAR_WEBGPU_PREFETCH: '0', CIFAR_WEBGPU_VEC4: '0', CIFAR_WEBGPU_TK: '8', CIFAR_WEBGPU_LOADS: 'scalar', CIFAR_WEBGPU_DX: 'forward' }))).toBe('tiles up to 64, dx as forward');
  });

  it('defaults to the fastest variant measured on an H100 (the tensor cores where the backend finds them: matmul auto) and takes others from CIFAR_WEBGPU_TILE, _PREFETCH, _CONV, _VEC4, _TK, _DX, _SPLIT_FORWARD and _LOADS', () => {
    expect(settingsFromEnv({})).toEqual({ maxTileSide: 128, prefetch: true, ourForward: true, vec4: true, deepK: true, inputGradForward: false, splitForward: false, wideLoads: true, matmul: 'f32', matmulAuto: true, matrixDepth: 16, matrixScale: 'shared', matmulScope: 'all' });
    const env = { CIFAR_WEBGPU_TILE: '64', CIFAR_WEBGPU_PREFETCH: '0', CIFAR_WEBGPU_CONV: 'stock', CIFAR_WEBGPU_VEC4: '0', CIFAR_WEBGPU_TK: '8', CIFAR_WEBGPU_DX: 'forward', CIFAR_WEBGPU_SPLIT_FORWARD: '1', CIFAR_WEBGPU_LOADS: 'scalar' };
    expect(settingsFromEnv(env)).toEqual({
      maxTileSide: 64,
      prefetch: false,
      ourForward: false,
      vec4: false,
      deepK: false,
      inputGradForward: true,
      splitForward: true,
      wideLoads: false,
      matmul: 'f32',
      matmulAuto: true,
      matrixDepth: 16,
      matrixScale: 'shared',
      matmulScope: 'all',
    });
  });

  it('the vec4 layout reads 4 rows or columns per load where a thread holds 4 or 8 of each, and keeps the scalar layout elsewhere', () => {
    const big = { tm: 128, tn: 128, tk: 8 } as const;
    const narrow = { tm: 128, tn: 32, tk: 16 } as const;
    const before = configureWebGpuKernels({ vec4: true, prefetch: false });
    try {
      expect(usesVec4(big)).toBe(true);
      expect(usesVec4({ tm: 64, tn: 64, tk: 16 })).toBe(true);
      expect(usesVec4(narrow)).toBe(false); // 2 columns per thread
      expect(gemmKey(big)).toBe('128x128x8v');
      expect(gemmKey(narrow)).toBe('128x32x16');
      const src = gemmMainSource({ tile: big, prologue: '', aAlongK: true, bAlongK: false, store: '' });
      // A staged along K gets a vec4 of padding per K row: 8 * (128 + 4) floats = 264 vec4s.
      expect(src).toContain('array<vec4<f32>, 264>');
      expect(src).toContain('array<vec4<f32>, 256>');
      // Per K step: 2 vec4 loads of A and 2 of B for 64 multiply-adds.
      expect(src.match(/let a\d = cgA\[/g)).toHaveLength(2);
      expect(src.match(/let b\d = cgB\[/g)).toHaveLength(2);
      expect(src.match(/= fma\(a\d\.[xyzw], b\d\.[xyzw], c\d_\d\);/g)).toHaveLength(64);
      // Thread (tx, ty) holds rows 64g + 4ty + e and columns 64h + 4tx + f.
      expect(src).toContain('let row = row0 + 64 + ty * 4 + 3; let col = col0 + 0 + tx * 4 + 1; let v = c7_1;');
      expect(gemmMainSource({ tile: narrow, prologue: '', aAlongK: true, bAlongK: false, store: '' })).not.toContain('vec4');
      configureWebGpuKernels({ vec4: false });
      expect(gemmKey(big)).toBe('128x128x8');
      expect(gemmMainSource({ tile: big, prologue: '', aAlongK: true, bAlongK: false, store: '' })).not.toContain('vec4');
    } finally {
      configureWebGpuKernels(before);
    }
  });

  it('deepK makes 128 x 128 tiles 16 deep only where the device has the workgroup memory for them', () => {
    expect(tileStorageBytes({ tm: 128, tn: 128, tk: 16 })).toBe(16896);
    const before = configureWebGpuKernels({ deepK: true });
    try {
      expect(pickTile(4608, 512)).toEqual({ tm: 128, tn: 128, tk: 8 }); // WebGPU's default 16 KiB
      expect(pickTile(4608, 512, 49152)).toEqual({ tm: 128, tn: 128, tk: 16 }); // NVIDIA's 48 KiB
      expect(pickTile(4608, 64, 49152)).toEqual({ tm: 128, tn: 64, tk: 16 });
      expect(planFilterGrad(geometry([256, 4, 4, 512], 3, 512, 1, 'same'), 49152).tile.tk).toBe(16);
      expect(planInputGrad(geometry([256, 8, 8, 256], 3, 512, 2, 'same'), 49152).tile.tk).toBe(16);
      configureWebGpuKernels({ deepK: false });
      expect(pickTile(4608, 512, 49152)).toEqual({ tm: 128, tn: 128, tk: 8 });
    } finally {
      configureWebGpuKernels(before);
    }
  });

  it('splits a bias-free linear forward convolution along K only with splitForward and when its tiles make few workgroups', () => {
    const late = geometry([256, 4, 4, 512], 3, 512, 1, 'same'); // 4,096 x 512 outputs: 128 tiles of 128 x 128
    const early = geometry([256, 32, 32, 64], 3, 64, 1, 'same'); // 2,048 tiles
    const before = configureWebGpuKernels({ splitForward: false });
    try {
      expect(planForward(late, 49152, true)).toMatchObject({ splits: 1, kPerSplit: 4608, dispatch: [4, 32, 1] });
      configureWebGpuKernels({ splitForward: true });
      const p = planForward(late, 49152, true);
      expect(p).toMatchObject({ m: 4096, n: 512, k: 4608, splits: 4, kPerSplit: 1152, dispatch: [4, 32, 4] });
      expect(planForward(late, 49152, false).splits).toBe(1); // a bias or an activation: no split
      expect(planForward(early, 49152, true).splits).toBe(1);
    } finally {
      configureWebGpuKernels(before);
    }
  });

  it('sees the input gradient of a stride-1 convolution as a forward one: dy in, x\'s shape out, padded by filter - 1 - pad', () => {
    const same = inputGradAsForward(geometry([8, 16, 16, 64], 3, 128, 1, 'same'));
    expect(same).toMatchObject({ inHeight: 16, inWidth: 16, inChannels: 128, outHeight: 16, outWidth: 16, outChannels: 64, padInfo: { top: 1, left: 1 } });
    const valid = inputGradAsForward(geometry([8, 7, 7, 5], 3, 9, 1, 'valid'));
    expect(valid).toMatchObject({ inHeight: 5, inWidth: 5, inChannels: 9, outHeight: 7, outWidth: 7, outChannels: 5, padInfo: { top: 2, left: 2 } });
  });

  it('wide loads stage a tile with a quarter of the loads, four cells each, and guard a last partial round', () => {
    const before = configureWebGpuKernels({ vec4: true, prefetch: false });
    try {
      const big = gemmMainSource({ tile: { tm: 128, tn: 128, tk: 16 }, prologue: '', aAlongK: true, bAlongK: false, aWide: true, bWide: true, store: '' });
      // 16 x 128 elements of each operand over 256 threads: 2 vec4 loads each instead of 8 scalar ones.
      expect(big.match(/readA4\(kBase \+ kk, row0 \+ mm\)/g)).toHaveLength(2);
      expect(big.match(/readB4\(kBase \+ kk, col0 \+ mm\)/g)).toHaveLength(2);
      expect(big).not.toMatch(/readA\(|readB\(/);
      // Along K: k..k+3 go to four rows of the staged tile; along columns: one vec4 cell.
      expect(big).toContain('let kk = 4 * ((lid + 0) % 4); let mm = (lid + 0) / 4; let v = readA4(kBase + kk, row0 + mm); cgA[(kk + 0) * 33 + (mm >> 2u)][mm & 3] = v.x;');
      expect(big).toContain('let kk = (lid + 0) / 32; let mm = 4 * ((lid + 0) % 32); let v = readB4(kBase + kk, col0 + mm); cgB[kk * 32 + (mm >> 2u)] = v;');
      // 16 x 16 elements make 64 vec4 loads: a quarter of the threads load, behind a guard.
      const narrow = gemmMainSource({ tile: { tm: 16, tn: 16, tk: 16 }, prologue: '', aAlongK: false, bAlongK: false, aWide: true, bWide: false, store: '' });
      expect(narrow).toContain('if ((lid + 0) < 64) { let kk = (lid + 0) / 4; let mm = 4 * ((lid + 0) % 4);');
      expect(narrow.match(/readB\(kBase/g)).toHaveLength(1);
    } finally {
      configureWebGpuKernels(before);
    }
  });

  it('supports NHWC 1x1 and 3x3 at stride 1 and 2 only', () => {
    expect(isSupported(geometry([2, 8, 8, 4], 3, 8, 1, 'same'))).toBe(true);
    expect(isSupported(geometry([2, 8, 8, 4], 1, 8, 2, 'valid'))).toBe(true);
    expect(isSupported(geometry([2, 8, 8, 4], 5, 8, 1, 'same'))).toBe(false);
    expect(isSupported(geometry([2, 9, 9, 4], 3, 8, 3, 'same'))).toBe(false);
    expect(isSupported({ ...geometry([2, 8, 8, 4], 3, 8, 1, 'same'), dilationHeight: 2 })).toBe(false);
    expect(isSupported({ ...geometry([2, 8, 8, 4], 3, 8, 1, 'same'), dataFormat: 'channelsFirst' })).toBe(false);
  });

  it('with 64 as the largest side, uses the narrowest of 16, 32 and 64-wide tiles that covers each side', () => {
    configureWebGpuKernels({ maxTileSide: 64 });
    try {
      expect(pickTile(27, 64)).toEqual({ tm: 32, tn: 64, tk: 16 });
      expect(pickTile(576, 3)).toEqual({ tm: 64, tn: 16, tk: 16 });
      expect(pickTile(16, 17)).toEqual({ tm: 16, tn: 32, tk: 16 });
      expect(pickTile(4608, 512)).toEqual({ tm: 64, tn: 64, tk: 16 });
    } finally {
      configureWebGpuKernels({ maxTileSide: DEFAULT_MAX_TILE_SIDE });
    }
  });

  it('prefetch stages the next K tile through registers, and its programs have their own shader key', () => {
    const tile = { tm: 64, tn: 32, tk: 16 } as const;
    const before = configureWebGpuKernels({ prefetch: false });
    try {
      const plain = gemmMainSource({ tile, prologue: '', aAlongK: true, bAlongK: false, store: '' });
      expect(plain).not.toContain('var pa0');
      expect(gemmKey(tile)).toBe('64x32x16');
      configureWebGpuKernels({ prefetch: true });
      const src = gemmMainSource({ tile, prologue: '', aAlongK: true, bAlongK: false, store: '' });
      // 64 x 16 A elements and 32 x 16 B elements over 256 threads: 4 and 2 registers each.
      expect(src.match(/var pa\d = 0\.0;/g)).toHaveLength(4);
      expect(src.match(/var pb\d = 0\.0;/g)).toHaveLength(2);
      expect(src).toContain('if (t + 1 < numTiles)');
      expect(gemmKey(tile)).toBe('64x32x16p');
    } finally {
      configureWebGpuKernels(before);
    }
  });

  it('goes up to 128-wide tiles by default, 8 deep when both sides are 128 (16 KiB of workgroup memory)', () => {
    expect(DEFAULT_MAX_TILE_SIDE).toBe(128);
    expect(pickTile(27, 64)).toEqual({ tm: 32, tn: 64, tk: 16 });
    expect(pickTile(576, 64)).toEqual({ tm: 128, tn: 64, tk: 16 });
    expect(pickTile(4608, 512)).toEqual({ tm: 128, tn: 128, tk: 8 });
    const src = gemmMainSource({ tile: { tm: 128, tn: 128, tk: 8 }, prologue: '', aAlongK: true, bAlongK: false, store: '' });
    expect(src.match(/var c\d_\d = 0\.0;/g)).toHaveLength(8 * 8);
    expect((8 * (128 + 1) + 8 * 128) * 4).toBeLessThanOrEqual(16384);
  });

  it('splits the filter gradient along K when dW alone gives few workgroups (early ResNet stage)', () => {
    const p = planFilterGrad(geometry([256, 32, 32, 64], 3, 64, 1, 'same'));
    expect(p).toMatchObject({ m: 576, n: 64, k: 256 * 32 * 32 });
    expect(p.splits).toBeGreaterThan(16);
    expect(p.kPerSplit % p.tile.tk).toBe(0);
    expect(p.kPerSplit * (p.splits - 1)).toBeLessThan(p.k); // no empty split
    expect(p.kPerSplit * p.splits).toBeGreaterThanOrEqual(p.k);
    expect(p.tile).toEqual({ tm: 128, tn: 64, tk: 16 });
    expect(p.dispatch).toEqual([1, 5, p.splits]);
  });

  it('does not split when dW is large and K short (late ResNet stage, 64-wide tiles); splits a little with 128-wide ones', () => {
    const late = geometry([256, 4, 4, 512], 3, 512, 1, 'same');
    configureWebGpuKernels({ maxTileSide: 64 });
    try {
      const p = planFilterGrad(late);
      expect(p.splits).toBe(1);
      expect(p.dispatch).toEqual([8, 72, 1]);
    } finally {
      configureWebGpuKernels({ maxTileSide: DEFAULT_MAX_TILE_SIDE });
    }
    // 4 x 36 tiles of 128 x 128: 3 splits bring it to 432 workgroups, each K = 1,376.
    const p = planFilterGrad(late);
    expect(p.dispatch).toEqual([4, 36, 3]);
    expect(p.kPerSplit).toBeGreaterThanOrEqual(256);
  });

  it('never splits below a useful K per split', () => {
    const p = planFilterGrad(geometry([1, 4, 4, 3], 3, 5, 1, 'same'));
    expect(p.splits).toBe(1);
    expect(p.kPerSplit).toBe(16);
  });

  it('a 3x3 stride-2 input gradient visits 4, 2, 2 and 1 taps per phase, not 9', () => {
    // 'same' at stride 2 on an even size pads 0 on top and 1 below (TensorFlow's rule), so
    // even rows are reached by kh = 0 and 2, odd rows by kh = 1.
    const p = planInputGrad(geometry([2, 8, 8, 16], 3, 32, 2, 'same'));
    expect(p.phases).toBe(4);
    expect(p.perPhase.map((q) => q.k / 32)).toEqual([4, 2, 2, 1]);
    expect(p.perPhase.map((q) => q.rows)).toEqual([32, 32, 32, 32]);
    expect(p.dispatch).toEqual([1, 1, 4]);
  });

  it('a 1x1 stride-2 input gradient reaches only the even pixels', () => {
    const p = planInputGrad(geometry([2, 7, 7, 16], 1, 32, 2, 'valid'));
    expect(p.perPhase.map((q) => q.k)).toEqual([32, 0, 0, 0]);
    expect(p.perPhase.map((q) => q.rows)).toEqual([2 * 16, 2 * 12, 2 * 12, 2 * 9]);
  });

  it('phaseTaps lists the filter taps of each phase', () => {
    expect(phaseTaps(0, 1, 2, 3)).toEqual({ start: 1, count: 1 });
    expect(phaseTaps(1, 1, 2, 3)).toEqual({ start: 0, count: 2 });
    expect(phaseTaps(0, 0, 1, 3)).toEqual({ start: 0, count: 3 });
    expect(phaseTaps(1, 0, 2, 1)).toEqual({ start: 1, count: 0 });
  });

  it('the GEMM body keeps an accumulator per output of a thread and pads K-major tiles', () => {
    const src = gemmMainSource({ tile: { tm: 64, tn: 32, tk: 16 }, prologue: '', aAlongK: true, bAlongK: false, store: '' });
    expect(src.match(/var c\d_\d = 0\.0;/g)).toHaveLength(4 * 2);
    expect(src).toContain('array<f32, 1040>'); // 16 * (64 + 1)
    expect(src).toContain('array<f32, 512>'); // 16 * 32
  });
});

const probe = await probeWebGpu();


// lavapipe counts: this checks the shaders' arithmetic, not their speed.
describe.skipIf(!probe.ok)('webgpu conv-gradient kernels vs the cpu backend', () => {
  const cases: Array<{ x: Shape4; f: number; co: number; s: number; pad: 'same' | 'valid' }> = [
    { x: [2, 8, 8, 5], f: 3, co: 7, s: 1, pad: 'same' },
    { x: [3, 9, 9, 6], f: 3, co: 70, s: 2, pad: 'same' },
    { x: [2, 8, 8, 67], f: 3, co: 9, s: 2, pad: 'same' },
    { x: [1, 7, 7, 33], f: 3, co: 5, s: 1, pad: 'valid' },
    { x: [2, 10, 10, 3], f: 3, co: 65, s: 2, pad: 'valid' },
    { x: [4, 6, 6, 70], f: 1, co: 66, s: 1, pad: 'same' },
    { x: [3, 8, 8, 9], f: 1, co: 20, s: 2, pad: 'same' },
    { x: [2, 7, 7, 4], f: 1, co: 6, s: 2, pad: 'valid' },
    { x: [8, 16, 16, 4], f: 3, co: 8, s: 1, pad: 'same' }, // K = 2048 over a 36 x 8 dW: split-K
  ];

  beforeAll(async () => {
    expect((await initBackend('webgpu')).name).toBe('webgpu');
  });

  afterAll(async () => {
    configureWebGpuKernels(settingsFromEnv({}));
    await tf.setBackend('cpu');
  });

  /** Cases whose channel counts are multiples of 4, where vec4 loads apply. */
  const byFours: typeof cases = [
    { x: [2, 8, 8, 8], f: 3, co: 12, s: 1, pad: 'same' },
    { x: [3, 9, 9, 16], f: 3, co: 20, s: 2, pad: 'same' },
    { x: [2, 7, 7, 4], f: 1, co: 8, s: 2, pad: 'valid' },
    { x: [1, 6, 6, 36], f: 3, co: 4, s: 1, pad: 'valid' },
  ];

  /** Cases whose GEMMs all get tiles 64 or 128 wide on both sides, where the vec4 layout applies. */
  const wide: typeof cases = [
    { x: [1, 8, 8, 68], f: 3, co: 72, s: 1, pad: 'same' },
    { x: [4, 8, 8, 66], f: 3, co: 96, s: 2, pad: 'same' },
  ];

  type Variant = KernelVariant;
  const plain: Variant = { maxTileSide: 64, prefetch: false, vec4: false, deepK: false, inputGradForward: false, splitForward: false, wideLoads: false, matmul: 'f32', matmulAuto: false, matrixDepth: 16, matrixScale: 'shared', matmulScope: 'all' };
  // The default with scalar loads from memory (CIFAR_WEBGPU_LOADS=scalar); `wideLoads: true` on it is the default.
  const fastest: Variant = { maxTileSide: 128, prefetch: true, vec4: true, deepK: true, inputGradForward: false, splitForward: false, wideLoads: false, matmul: 'f32', matmulAuto: false, matrixDepth: 16, matrixScale: 'shared', matmulScope: 'all' };
  const describeVariant = describeWebGpuKernels;
  // lavapipe offers 32 KiB of workgroup memory, as the plans see it.
  const LAVAPIPE_STORAGE = 32768;

  /**
   * Every case with 64-wide tiles, with and without prefetch; some with 128-wide tiles, both
   * ways; a few with the vec4 setting (which those narrow tiles must ignore); the wide cases with
   * every variant of the vec4 layout.
   */
  function variants(list: typeof cases): Array<readonly [(typeof cases)[number], Variant]> {
    return [
      ...list.map((c) => [c, plain] as const),
      ...list.map((c) => [c, { ...plain, prefetch: true }] as const),
      ...list.slice(1, 6).map((c) => [c, { ...plain, maxTileSide: 128 }] as const),
      ...list.slice(1, 4).map((c) => [c, { ...plain, maxTileSide: 128, prefetch: true }] as const),
      ...list.slice(1, 4).map((c) => [c, { ...plain, maxTileSide: 128, vec4: true, deepK: true }] as const),
      ...([
        { ...plain, maxTileSide: 128 },
        { ...plain, maxTileSide: 128, vec4: true },
        { ...plain, maxTileSide: 128, vec4: true, deepK: true },
        { ...plain, maxTileSide: 128, vec4: true, deepK: true, prefetch: true },
        { ...plain, vec4: true },
      ] satisfies Variant[]).map((v) => [wide[0]!, v] as const),
      ...([
        { ...plain, maxTileSide: 128, vec4: true, deepK: true },
        { ...plain, vec4: true, prefetch: true },
      ] satisfies Variant[]).map((v) => [wide[1]!, v] as const),
      // The input gradient as a forward convolution and split forward convolutions, on the
      // default variant (the stride-2 cases keep the phase kernel).
      ...list.slice(0, 6).map((c) => [c, { ...fastest, inputGradForward: true, splitForward: true }] as const),
      ...wide.map((c) => [c, { ...fastest, inputGradForward: true, splitForward: true }] as const),
      [list[0]!, { ...plain, inputGradForward: true }] as const,
      // vec4 loads from memory: on every case (those with channels that are not multiples of 4
      // must keep scalar loads), with the default and with scalar tiles, and on channel counts
      // that are multiples of 4 with every variant.
      ...list.map((c) => [c, { ...fastest, wideLoads: true }] as const),
      ...byFours.map((c) => [c, { ...plain, wideLoads: true }] as const),
      ...byFours.map((c) => [c, { ...plain, maxTileSide: 128, prefetch: true, wideLoads: true }] as const),
      ...byFours.slice(0, 2).map((c) => [c, { ...fastest, wideLoads: true, inputGradForward: true, splitForward: true }] as const),
    ];
  }
  const fours = (c: { x: Shape4; co: number }): boolean => c.x[3] % 4 === 0 && c.co % 4 === 0;
  /** Whether a linear, bias-free forward convolution of this geometry is split under `v`. */
  const splits = (info: ConvGeometry, v: Variant): boolean => {
    const before = configureWebGpuKernels(v);
    try {
      return planForward(info, LAVAPIPE_STORAGE, true).splits > 1;
    } finally {
      configureWebGpuKernels(before);
    }
  };
  const isWide = (x: Shape4): boolean => wide.some((w) => w.x === x);

  for (const [{ x, f, co, s, pad }, variant] of variants(cases)) {
    it(`${f}x${f} stride ${s} ${pad}, x ${x.join('x')}, ${co} filters, ${describeVariant(variant)}: dW and dx within 1e-4`, async () => {
      configureWebGpuKernels(variant);
      const filter: Shape4 = [f, f, x[3], co];
      const info = tf.backend_util.computeConv2DInfo(x, filter, s, 1, pad);
      const dyShape: Shape4 = [x[0], info.outHeight, info.outWidth, co];
      const [xv, dyv, wv] = [x, dyShape, filter].map((shape, i) => randomArray(shape.reduce((a, b) => a * b, 1), 11 + i));
      const run = async (backend: string): Promise<Float32Array[]> => {
        await tf.setBackend(backend);
        return read(() => {
          const [xt, dy, w] = [tf.tensor(xv!, x), tf.tensor(dyv!, dyShape), tf.tensor(wv!, filter)];
          const attrs = { strides: s, pad, dataFormat: 'NHWC' };
          return [
            tf.engine().runKernel('Conv2DBackpropFilter', { x: xt, dy }, { ...attrs, filterShape: filter }) as tf.Tensor,
            tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, { ...attrs, inputShape: x }) as tf.Tensor,
          ];
        });
      };
      const gpu = await run('webgpu');
      const backend = tf.backend() as unknown as { pipelineCache: Record<string, unknown> };
      const keys = Object.keys(backend.pipelineCache).join(' ');
      const cpu = await run('cpu');
      expectClose(gpu[0]!, cpu[0]!, 1e-4, 'dW');
      expectClose(gpu[1]!, cpu[1]!, 1e-4, 'dx');
      // Our programs ran, not the stock ones: the input gradient of a stride-1 convolution as
      // the forward convolution of dy (co channels in, x's channels out) with the flipped filter.
      expect(keys).toContain(`cifarConvFilterGrad_${f}x${f}_s${s}x${s}`);
      if (variant.inputGradForward && s === 1) {
        const asForward = inputGradAsForward(info);
        expect(keys).toContain(`cifarFlipTranspose_${filter.join('x')}`);
        expect(keys).toContain(`cifarConvForward_${f}x${f}_s1x1_${[info.outHeight, info.outWidth, co, x[1], x[2], x[3]].join('x')}_`);
        if (variant.splitForward && splits(asForward, variant)) expect(keys).toMatch(/cifarConvForward_\S+_nobias_linear_splitk/);
      } else {
        expect(keys).toContain(`cifarConvInputGrad_${f}x${f}_s${s}x${s}`);
      }
      if (variant.maxTileSide === 128) expect(keys).toMatch(/cifarConv\w+_128x\d+x\d+|cifarConv\w+_\d+x128x\d+/);
      const dimsKey = `${f}x${f}_s${s}x${s}_${[x[1], x[2], x[3], info.outHeight, info.outWidth, co].join('x')}`;
      if (variant.wideLoads && fours({ x, co })) expect(keys).toMatch(new RegExp(`cifarConvFilterGrad_${dimsKey}_\\d+x\\d+x\\d+p?v?w`));
      if (!fours({ x, co })) expect(keys).not.toMatch(new RegExp(`cifarConv\\w+_${dimsKey}_\\d+x\\d+x\\d+p?v?w_`));
      if (variant.prefetch) expect(keys).toMatch(/cifarConvFilterGrad_\S+_\d+x\d+x\d+p/);
      if (variant.vec4 && isWide(x)) {
        const dims = `${f}x${f}_s${s}x${s}_${[x[1], x[2], x[3], info.outHeight, info.outWidth, co].join('x')}`;
        expect(keys).toMatch(new RegExp(`cifarConvFilterGrad_${dims}_\\d+x\\d+x\\d+p?v`));
        if (!(variant.inputGradForward && s === 1)) expect(keys).toMatch(new RegExp(`cifarConvInputGrad_${dims}_\\d+x\\d+x\\d+p?v`));
        // lavapipe offers 32 KiB of workgroup memory: room for 16-deep 128 x 128 tiles.
        if (variant.deepK) expect(keys).toMatch(/cifarConv\w+_\S+_128x128x16p?v/);
      }
    });
  }

  for (const [{ x, f, co, s, pad }, variant] of variants(cases.slice(0, 8))) {
    it(`forward ${f}x${f} stride ${s} ${pad}, x ${x.join('x')}, ${co} filters, ${describeVariant(variant)}: conv2d and fused conv2d (bias, relu) within 1e-4`, async () => {
      configureWebGpuKernels(variant);
      const filter: Shape4 = [f, f, x[3], co];
      const [xv, wv, bv] = [x.reduce((a, b) => a * b, 1), f * f * x[3] * co, co].map((n, i) => randomArray(n, 31 + i));
      const run = async (backend: string): Promise<Float32Array[]> => {
        await tf.setBackend(backend);
        return read(() => {
          const [xt, w, b] = [tf.tensor4d(xv!, x), tf.tensor4d(wv!, filter), tf.tensor1d(bv!)];
          return [tf.conv2d(xt, w, s, pad), tf.fused.conv2d({ x: xt, filter: w, strides: s, pad, bias: b, activation: 'relu' })];
        });
      };
      const gpu = await run('webgpu');
      const keys = Object.keys((tf.backend() as unknown as { pipelineCache: Record<string, unknown> }).pipelineCache).join(' ');
      const cpu = await run('cpu');
      expectClose(gpu[0]!, cpu[0]!, 1e-4, 'conv2d');
      expectClose(gpu[1]!, cpu[1]!, 1e-4, 'fused');
      expect(keys).toContain(`cifarConvForward_${f}x${f}_s${s}x${s}`);
      expect(keys).toMatch(/cifarConvForward_\S+_bias_relu/);
      if (variant.prefetch) expect(keys).toMatch(/cifarConvForward_\S+x\d+p_bias_relu/);
      if (variant.vec4 && isWide(x)) expect(keys).toMatch(/cifarConvForward_\S+x\d+p?v_bias_relu/);
      // Only the plain conv2d (no bias, no activation) may split.
      const info = tf.backend_util.computeConv2DInfo(x, filter, s, 1, pad);
      const dimsKey = `${f}x${f}_s${s}x${s}_${[x[1], x[2], x[3], info.outHeight, info.outWidth, co].join('x')}`;
      if (variant.wideLoads && fours({ x, co })) expect(keys).toMatch(new RegExp(`cifarConvForward_${dimsKey}_\\d+x\\d+x\\d+p?v?w_bias_relu`));
      if (variant.splitForward && splits(info, variant)) expect(keys).toMatch(/cifarConvForward_\S+_nobias_linear_splitk/);
      expect(keys).not.toMatch(/_bias_relu_splitk/);
    });
  }

  it('gradients through tf.conv2d on webgpu match cpu (the kernels as tfjs calls them)', async () => {
    const xv = randomArray(2 * 8 * 8 * 6, 5);
    const wv = randomArray(3 * 3 * 6 * 10, 6);
    const grads = async (backend: string): Promise<Float32Array[]> => {
      await tf.setBackend(backend);
      return read(() => {
        const f = (x: tf.Tensor4D, w: tf.Tensor4D): tf.Tensor => tf.sum(tf.square(tf.conv2d(x, w, 2, 'same')));
        return tf.grads(f as (...a: tf.Tensor[]) => tf.Tensor)([tf.tensor4d(xv, [2, 8, 8, 6]), tf.tensor4d(wv, [3, 3, 6, 10])]);
      });
    };
    const gpu = await grads('webgpu');
    const cpu = await grads('cpu');
    expectClose(gpu[0]!, cpu[0]!, 1e-4, 'dx');
    expectClose(gpu[1]!, cpu[1]!, 1e-4, 'dW');
  });

  it('a whole ResNet (6-channel stages, stride-2 projections) gets the cpu backend\'s loss and gradients', async () => {
    const { cpu, gpu } = await resnetGradsOnBoth(6, 3, [1, 7, 3]);
    expect(gpu.length).toBe(cpu.length);
    cpu.forEach((expected, i) => expectClose(gpu[i]!, expected, 1e-3, `gradient ${i}`));
  });
});
