import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { probeWebGpu } from '../../src/backend/webgpu.js';
import { mulberry32 } from '../../src/data/shuffle.js';
import { IMAGE_BYTES, IMAGE_SIZE } from '../../src/image/preprocess.js';
import { createNormalizer } from '../../src/model/normalize.js';
import { cutoutBox, drawAugmentParams, gatherAugmented } from '../../src/train/augment.js';
import { applyCutout, augmentOnDevice, gpuAugment } from '../../src/train/gpu-augment.js';

const STATS = { mean: [0.49, 0.48, 0.45], std: [0.25, 0.24, 0.26] };
const COUNT = 16;

function images(): Uint8Array {
  const random = mulberry32(42);
  return Uint8Array.from({ length: COUNT * IMAGE_BYTES }, () => Math.floor(random() * 256));
}

/** The CPU path of training: augment bytes in JS, then the shared normaliser, then the cutout squares the bytes came with (as the trainer does). */
async function cpuBatch(source: Uint8Array, seed: number, pad: number, flip: boolean, cutout = 0): Promise<Float32Array> {
  const out = new Uint8Array(COUNT * IMAGE_BYTES);
  const indices = Array.from({ length: COUNT }, (_, i) => i);
  const drawn = gatherAugmented(source, indices, out, mulberry32(seed), pad, flip, cutout);
  const norm = createNormalizer(STATS);
  const normalised = norm.apply(out, COUNT);
  const t = cutout > 0 ? applyCutout(normalised, drawn, cutout) : normalised;
  const data = (await t.data()) as Float32Array;
  tf.dispose([t, normalised]);
  norm.dispose();
  return data;
}

async function deviceBatch(source: Uint8Array, seed: number, pad: number, flip: boolean, cutout = 0): Promise<Float32Array> {
  const x = tf.tensor4d(source, [COUNT, IMAGE_SIZE, IMAGE_SIZE, 3], 'int32');
  const y = gpuAugment(x, seed, { ...STATS, pad, flip, cutout });
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

  it('with cutout 0 draws exactly the crops and flips it drew before cutout existed', () => {
    const random = mulberry32(11);
    const legacy = Array.from({ length: 50 }, () => [Math.floor(random() * 9) - 4, Math.floor(random() * 9) - 4, random() < 0.5 ? 1 : 0]);
    const p = drawAugmentParams(50, mulberry32(11), 4, true, 0);
    expect(Array.from({ length: 50 }, (_, n) => [p.dy[n], p.dx[n], p.mirror[n]])).toEqual(legacy);
    expect([...p.cy, ...p.cx]).toEqual(Array(100).fill(0));
  });

  it('draws the cutout centre (row, then column) right after each image\'s flip', () => {
    // Per image: dy, dx, flip, cy, cx.
    const draws = [0.5, 0.5, 0.9, 0.1, 0.99, 0, 0, 0.1, 0.5, 0];
    const p = drawAugmentParams(2, () => draws.shift()!, 4, true, 8);
    expect(draws).toHaveLength(0);
    expect([p.dy[0], p.dx[0], p.mirror[0], p.cy[0], p.cx[0]]).toEqual([0, 0, 0, 3, 31]);
    expect([p.dy[1], p.dx[1], p.mirror[1], p.cy[1], p.cx[1]]).toEqual([-4, -4, 1, 16, 0]);
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

  for (const [pad, flip, cutout] of [[4, true, 16], [0, false, 8], [4, true, 31], [2, true, 32]] as const) {
    it(`equals the CPU augment + normalise + cutout for the same seed (pad ${pad}, flip ${flip}, cutout ${cutout})`, async () => {
      const device = await deviceBatch(source, 1234, pad, flip, cutout);
      await tf.setBackend(backend);
      const cpu = await cpuBatch(source, 1234, pad, flip, cutout);
      expect(maxDiff(device, cpu)).toBeLessThan(1e-5);
      // Something was cut: a share of the values is exactly the mean.
      expect(device.filter((v) => v === 0).length).toBeGreaterThan(COUNT * 3 * 16);
    });
  }

  it('cuts each image\'s square where the seeded draw puts it, clipped at the edges, and nothing else', async () => {
    const cutout = 12;
    const p = drawAugmentParams(COUNT, mulberry32(77), 4, true, cutout);
    // The same crops and flips without the cut (turning cutout on changes the draws after image 0).
    const x = tf.tensor4d(source, [COUNT, IMAGE_SIZE, IMAGE_SIZE, 3], 'int32');
    const [plainT, cutT] = [augmentOnDevice(x, p, 4, STATS), augmentOnDevice(x, p, 4, STATS, cutout)];
    const [plain, cut] = [(await plainT.data()) as Float32Array, (await cutT.data()) as Float32Array];
    tf.dispose([x, plainT, cutT]);
    expect(cut).toEqual(await deviceBatch(source, 77, 4, true, cutout));
    for (let n = 0; n < COUNT; n++) {
      const box = cutoutBox(p.cy[n]!, p.cx[n]!, cutout);
      let zeros = 0;
      for (let y = 0; y < IMAGE_SIZE; y++) {
        for (let x = 0; x < IMAGE_SIZE; x++) {
          const inside = y >= box.top && y < box.bottom && x >= box.left && x < box.right;
          for (let c = 0; c < 3; c++) {
            const i = ((n * IMAGE_SIZE + y) * IMAGE_SIZE + x) * 3 + c;
            if (inside) {
              expect(Math.abs(cut[i]!)).toBe(0);
              zeros++;
            } else {
              expect(cut[i]).toBe(plain[i]);
            }
          }
        }
      }
      expect(zeros).toBe((box.bottom - box.top) * (box.right - box.left) * 3);
    }
  });

  it('with cutout 0 leaves the batch exactly as without the option', async () => {
    expect(await deviceBatch(source, 5, 4, true, 0)).toEqual(await deviceBatch(source, 5, 4, true));
  });

  it('differs for another seed', async () => {
    const a = await deviceBatch(source, 1, 4, true);
    const b = await deviceBatch(source, 2, 4, true);
    expect(maxDiff(a, b)).toBeGreaterThan(0.1);
  });
});
