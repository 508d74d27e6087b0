import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { probeWebGpu } from '../../src/backend/webgpu.js';
import { mulberry32 } from '../../src/data/shuffle.js';
import { IMAGE_BYTES, IMAGE_SIZE } from '../../src/image/preprocess.js';
import { createNormalizer } from '../../src/model/normalize.js';
import { gatherAugmented } from '../../src/train/augment.js';
import { drawAugmentParams, gpuAugment } from '../../src/train/gpu-augment.js';

const STATS = { mean: [0.49, 0.48, 0.45], std: [0.25, 0.24, 0.26] };
const COUNT = 16;

function images(): Uint8Array {
  const random = mulberry32(42);
  return Uint8Array.from({ length: COUNT * IMAGE_BYTES }, () => Math.floor(random() * 256));
}

/** The CPU path of training: augment bytes in JS, then the shared normaliser. */
async function cpuBatch(source: Uint8Array, seed: number, pad: number, flip: boolean): Promise<Float32Array> {
  const out = new Uint8Array(COUNT * IMAGE_BYTES);
  const indices = Array.from({ length: COUNT }, (_, i) => i);
  gatherAugmented(source, indices, out, mulberry32(seed), pad, flip);
  const norm = createNormalizer(STATS);
  const t = norm.apply(out, COUNT);
  const data = (await t.data()) as Float32Array;
  t.dispose();
  norm.dispose();
  return data;
}

async function deviceBatch(source: Uint8Array, seed: number, pad: number, flip: boolean): Promise<Float32Array> {
  const x = tf.tensor4d(source, [COUNT, IMAGE_SIZE, IMAGE_SIZE, 3], 'int32');
  const y = gpuAugment(x, seed, { ...STATS, pad, flip });
  const data = (await y.data()) as Float32Array;
  tf.dispose([x, y]);
  return data;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('drawAugmentParams', () => {
  it('draws offsets within the padding and both flips, deterministically', () => {
    const p = drawAugmentParams(200, mulberry32(7), 4, true);
    expect(Math.min(...p.dy, ...p.dx)).toBe(-4);
    expect(Math.max(...p.dy, ...p.dx)).toBe(4);
    expect(new Set(p.mirror)).toEqual(new Set([0, 1]));
    expect(drawAugmentParams(200, mulberry32(7), 4, true)).toEqual(p);
  });

  it('draws nothing it does not use (pad 0, no flip)', () => {
    const p = drawAugmentParams(5, () => 0.99, 0, false);
    expect([...p.dy, ...p.dx, ...p.mirror]).toEqual(Array(15).fill(0));
  });
});

const backends = ['cpu', ...((await probeWebGpu()).ok ? ['webgpu'] : [])];

describe.each(backends)('gpuAugment on %s', (backend) => {
  const source = images();

  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it('starts the backend', async () => {
    expect((await initBackend(backend as 'cpu')).name).toBe(backend);
  });

  for (const [pad, flip] of [[4, true], [4, false], [0, true], [2, true]] as const) {
    it(`equals the CPU augment + normalise for the same seed (pad ${pad}, flip ${flip})`, async () => {
      const device = await deviceBatch(source, 1234, pad, flip);
      await tf.setBackend(backend);
      const cpu = await cpuBatch(source, 1234, pad, flip);
      expect(maxDiff(device, cpu)).toBeLessThan(1e-5);
    });
  }

  it('differs for another seed', async () => {
    const a = await deviceBatch(source, 1, 4, true);
    const b = await deviceBatch(source, 2, 4, true);
    expect(maxDiff(a, b)).toBeGreaterThan(0.1);
  });
});
