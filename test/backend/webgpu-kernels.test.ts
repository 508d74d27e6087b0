import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { buildModel } from '../../src/model/resnet.js';
import { probeWebGpu } from '../../src/backend/webgpu.js';
import { type ConvGeometry, isSupported, phaseTaps, pickTile, planFilterGrad, planInputGrad } from '../../src/backend/webgpu-kernels/plan.js';
import { gemmKey, gemmMainSource } from '../../src/backend/webgpu-kernels/program.js';
import { configureWebGpuKernels, DEFAULT_MAX_TILE_SIDE, settingsFromEnv } from '../../src/backend/webgpu-kernels/settings.js';
import { expectClose, randomArray, read } from './helpers.js';

type Shape4 = [number, number, number, number];

function geometry(x: Shape4, filter: number, co: number, stride: number, pad: 'same' | 'valid'): ConvGeometry {
  return tf.backend_util.computeConv2DInfo(x, [filter, filter, x[3], co], stride, 1, pad);
}

describe('webgpu conv-gradient plans (pure)', () => {
  it('takes its variants from CIFAR_WEBGPU_TILE, CIFAR_WEBGPU_PREFETCH and CIFAR_WEBGPU_CONV', () => {
    expect(settingsFromEnv({})).toEqual({ maxTileSide: 128, prefetch: false, ourForward: true });
    expect(settingsFromEnv({ CIFAR_WEBGPU_TILE: '64', CIFAR_WEBGPU_PREFETCH: '1', CIFAR_WEBGPU_CONV: 'stock' })).toEqual({ maxTileSide: 64, prefetch: true, ourForward: false });
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
    const plain = gemmMainSource({ tile, prologue: '', aAlongK: true, bAlongK: false, store: '' });
    expect(plain).not.toContain('var pa0');
    expect(gemmKey(tile)).toBe('64x32x16');
    configureWebGpuKernels({ prefetch: true });
    try {
      const src = gemmMainSource({ tile, prologue: '', aAlongK: true, bAlongK: false, store: '' });
      // 64 x 16 A elements and 32 x 16 B elements over 256 threads: 4 and 2 registers each.
      expect(src.match(/var pa\d = 0\.0;/g)).toHaveLength(4);
      expect(src.match(/var pb\d = 0\.0;/g)).toHaveLength(2);
      expect(src).toContain('if (t + 1 < numTiles)');
      expect(gemmKey(tile)).toBe('64x32x16p');
    } finally {
      configureWebGpuKernels({ prefetch: false });
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
    configureWebGpuKernels({ maxTileSide: DEFAULT_MAX_TILE_SIDE });
    configureWebGpuKernels({ prefetch: false });
    await tf.setBackend('cpu');
  });

  /** Every case with 64-wide tiles, with and without prefetch; some with 128-wide tiles, both ways. */
  function variants<T>(list: T[]): Array<readonly [T, 64 | 128, boolean]> {
    return [
      ...list.map((c) => [c, 64, false] as const),
      ...list.map((c) => [c, 64, true] as const),
      ...list.slice(1, 6).map((c) => [c, 128, false] as const),
      ...list.slice(1, 4).map((c) => [c, 128, true] as const),
    ];
  }

  for (const [{ x, f, co, s, pad }, maxSide, prefetch] of variants(cases)) {
    it(`${f}x${f} stride ${s} ${pad}, x ${x.join('x')}, ${co} filters, tiles up to ${maxSide}${prefetch ? ', prefetch' : ''}: dW and dx within 1e-4`, async () => {
      configureWebGpuKernels({ maxTileSide: maxSide });
      configureWebGpuKernels({ prefetch: prefetch });
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
      // Our programs ran, not the stock ones.
      expect(keys).toContain(`cifarConvFilterGrad_${f}x${f}_s${s}x${s}`);
      expect(keys).toContain(`cifarConvInputGrad_${f}x${f}_s${s}x${s}`);
      if (maxSide === 128) expect(keys).toMatch(/cifarConv\w+_128x\d+x\d+|cifarConv\w+_\d+x128x\d+/);
      if (prefetch) expect(keys).toMatch(/cifarConv(Filter|Input)Grad_\S+_\d+x\d+x\d+p/);
    });
  }

  for (const [{ x, f, co, s, pad }, maxSide, prefetch] of variants(cases.slice(0, 8))) {
    it(`forward ${f}x${f} stride ${s} ${pad}, x ${x.join('x')}, ${co} filters, tiles up to ${maxSide}${prefetch ? ', prefetch' : ''}: conv2d and fused conv2d (bias, relu) within 1e-4`, async () => {
      configureWebGpuKernels({ maxTileSide: maxSide });
      configureWebGpuKernels({ prefetch: prefetch });
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
      if (prefetch) expect(keys).toMatch(/cifarConvForward_\S+x\d+p_bias_relu/);
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
    const batch = 3;
    const xs = randomArray(batch * 32 * 32 * 3, 21);
    const results: Record<string, Float32Array[]> = {};
    let weights: tf.Tensor[] | undefined;
    for (const backend of ['cpu', 'webgpu']) {
      await tf.setBackend(backend);
      const model = buildModel({ baseWidth: 6, blocks: [1, 1, 1, 1] });
      if (weights) model.setWeights(weights);
      else weights = model.getWeights().map((w) => tf.keep(w.clone()));
      results[backend] = await read(() => {
        const x = tf.tensor4d(xs, [batch, 32, 32, 3]);
        const y = tf.oneHot(tf.tensor1d([1, 7, 3], 'int32'), 10);
        const loss = (): tf.Scalar => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as tf.Tensor);
        const { value, grads } = tf.variableGrads(loss, model.trainableWeights.map((w) => w.read() as tf.Variable));
        return [value, ...Object.values(grads)];
      });
      model.dispose();
    }
    tf.dispose(weights);
    const [cpu, gpu] = [results['cpu']!, results['webgpu']!];
    expect(gpu.length).toBe(cpu.length);
    cpu.forEach((expected, i) => expectClose(gpu[i]!, expected, 1e-3, `gradient ${i}`));
  }, 60_000);
});
