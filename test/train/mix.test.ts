import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../src/data/shuffle.js';
import { IMAGE_BYTES } from '../../src/image/preprocess.js';
import { mixPartner, mixWeight, mixWeights, type SampleMix } from '../../src/image/mix.js';
import { createNormalizer, mixPairs } from '../../src/model/normalize.js';
import { drawMix, sampleBeta } from '../../src/train/augment.js';
import { makeBatch, type BatchPlan } from '../../src/train/batches.js';
import { createBatchLoader } from '../../src/train/loader.js';
import { linearKernelAfterStep } from '../helpers/linear-step.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const moments = (xs: number[]) => {
  const mean = xs.reduce((a, b) => a + b) / xs.length;
  return { mean, variance: xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length };
};

describe('Beta(α, α) draws', () => {
  for (const alpha of [0.2, 1, 4]) {
    it(`have the mean 1/2 and variance 1/(4(2α + 1)) of Beta(α, α), within [0, 1], at α = ${alpha}`, () => {
      const random = mulberry32(11);
      const xs = Array.from({ length: 20000 }, () => sampleBeta(alpha, random));
      expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...xs)).toBeLessThanOrEqual(1);
      const m = moments(xs);
      expect(m.mean).toBeCloseTo(0.5, 1.7);
      expect(m.variance).toBeCloseTo(1 / (4 * (2 * alpha + 1)), 2);
    });
  }
});

describe('a batch\'s mix', () => {
  it('cutmix: a box inside the image whose area is the partner\'s share, 1 − λ', () => {
    const random = mulberry32(5);
    let clipped = 0;
    for (let t = 0; t < 2000; t++) {
      const m = drawMix(random, { mixup: 0, cutmix: 1 });
      expect(m.kind).toBe('cutmix');
      const { top, bottom, left, right } = m.box;
      expect(0 <= top && top <= bottom && bottom <= 32 && 0 <= left && left <= right && right <= 32).toBe(true);
      expect(m.lambda).toBeCloseTo(1 - ((bottom - top) * (right - left)) / 1024, 12);
      // An unclipped box is square with an even side (⌊side/2⌋ either side of its centre).
      if (top > 0 && bottom < 32 && left > 0 && right < 32) expect([(bottom - top) % 2, bottom - top]).toEqual([0, right - left]);
      else clipped++;
    }
    expect(clipped).toBeGreaterThan(0);
  });

  it('mixup: λ alone, no box; with both on, each kind about half the time', () => {
    const random = mulberry32(9);
    const m = drawMix(random, { mixup: 0.2, cutmix: 0 });
    expect(m.kind).toBe('mixup');
    expect(m.box).toEqual({ top: 0, bottom: 0, left: 0, right: 0 });
    const kinds = Array.from({ length: 2000 }, () => drawMix(random, { mixup: 0.2, cutmix: 1 }).kind);
    const cut = kinds.filter((k) => k === 'cutmix').length;
    expect(cut).toBeGreaterThan(900);
    expect(cut).toBeLessThan(1100);
  });

  it('weighs a pixel λ (mixup), or 0 inside the box and 1 outside (cutmix); pairs image i with n − 1 − i', () => {
    const cut: SampleMix = { kind: 'cutmix', lambda: 0.75, box: { top: 4, bottom: 20, left: 8, right: 24 } };
    expect([mixWeight(cut, 4, 8), mixWeight(cut, 19, 23), mixWeight(cut, 20, 8), mixWeight(cut, 4, 7)]).toEqual([0, 0, 1, 1]);
    expect(mixWeights(cut).reduce((a, b) => a + b)).toBe(1024 * 0.75);
    expect(mixWeight({ kind: 'mixup', lambda: 0.3, box: cut.box }, 10, 10)).toBe(0.3);
    expect([0, 1, 2, 3].map((i) => mixPartner(i, 4))).toEqual([3, 2, 1, 0]);
  });
});

describe('mixed batches from the loader', () => {
  const count = 64;
  const plan: BatchPlan = {
    images: Uint8Array.from({ length: count * IMAGE_BYTES }, (_, i) => (i * 7) % 256),
    labels: Uint8Array.from({ length: count }, (_, i) => i % 10),
    count,
    batchSize: 16,
    seed: 3,
    cropPadding: 4,
    flip: true,
    cutout: 8,
  };

  it('follow a change of `mixSteps` (a run re-planned to its time limit) from the next batch, those made ahead made again', async () => {
    const mixed = { ...plan, mixup: 0.4, mixSteps: 8 };
    const loader = createBatchLoader(mixed, 3);
    try {
      const got: { mix?: unknown }[] = [];
      for await (const batch of loader.epoch(0, 0, 4)) {
        got.push(batch);
        // After the first batch, three more are already being made under mixSteps 8.
        if (got.length === 1) loader.setMixSteps(2);
      }
      expect(got.map((b) => b.mix !== undefined)).toEqual([true, true, false, false]);
      expect(got[3]).toEqual(makeBatch({ ...mixed, mixSteps: 2 }, 0, 3));
    } finally {
      await loader.close();
    }
  });

  it('carry a mix before `mixSteps` and none after, drawn apart from the other draws, the same each time', () => {
    // 4 steps an epoch: steps 0–5 of the run are mixed.
    const mixed = { ...plan, cutmix: 1, mixup: 0.2, mixSteps: 6 };
    expect(makeBatch(mixed, 0, 3).mix).toBeDefined();
    expect(makeBatch(mixed, 1, 1).mix).toBeDefined();
    expect(makeBatch(mixed, 1, 2).mix).toBeUndefined();
    expect(makeBatch(mixed, 2, 0).mix).toBeUndefined();
    expect(makeBatch(mixed, 0, 3)).toEqual(makeBatch(mixed, 0, 3));
    expect(makeBatch(mixed, 0, 2).mix).not.toEqual(makeBatch(mixed, 0, 3).mix);
    // Everything else is what the run without mixing draws.
    const { mix, ...rest } = makeBatch(mixed, 0, 3);
    expect(mix).toBeDefined();
    expect(rest).toEqual(makeBatch(plan, 0, 3));
    expect(makeBatch(plan, 0, 3).mix).toBeUndefined();
    // No mixSteps: every batch.
    expect(makeBatch({ ...plan, mixup: 1 }, 30, 3).mix?.kind).toBe('mixup');
  });
});

describe('mixing the network\'s input (tfjs ops)', () => {
  const stats = { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };
  const images = Uint8Array.from({ length: 3 * IMAGE_BYTES }, (_, i) => (i * 13 + (i >> 10)) % 256);
  const plain = (e: number) => (images[e]! / 255 - 0.5) / 0.25;

  it('cutmix: the box\'s pixels are the partner\'s exactly, the rest the image\'s own; the middle image of an odd batch is its own partner', async () => {
    const mix: SampleMix = { kind: 'cutmix', lambda: 0.75, box: { top: 4, bottom: 20, left: 8, right: 24 } };
    const normalizer = createNormalizer(stats);
    const got = (await normalizer.apply(images, 3, { mix }).data()) as Float32Array;
    const own = (await normalizer.apply(images, 3).data()) as Float32Array;
    for (let e = 0; e < got.length; e++) {
      const [n, y, x] = [Math.floor(e / 3072), Math.floor(e / 96) % 32, Math.floor(e / 3) % 32];
      const from = mixWeight(mix, y, x) === 0 ? mixPartner(n, 3) : n;
      if (got[e] !== own[from * 3072 + (e % 3072)]) throw new Error(`value ${e} (image ${n}, ${y}, ${x}) is not image ${from}'s`);
    }
    expect(got[1 * 3072 + (10 * 32 + 10) * 3]).toBe(own[1 * 3072 + (10 * 32 + 10) * 3]);
    normalizer.dispose();
  });

  it('mixup: λ·own + (1 − λ)·partner\'s at every pixel', async () => {
    const x = tf.tensor4d(Float32Array.from(images, (_, e) => plain(e)), [3, 32, 32, 3]);
    const got = (await mixPairs(x, { kind: 'mixup', lambda: 0.3, box: { top: 0, bottom: 0, left: 0, right: 0 } }).data()) as Float32Array;
    for (const e of [0, 5, 3071, 3072, 7000, 9215]) {
      const n = Math.floor(e / 3072);
      expect(got[e]).toBeCloseTo(0.3 * plain(e) + 0.7 * plain(mixPartner(n, 3) * 3072 + (e % 3072)), 5);
    }
  });
});

describe('a training step on a mixed batch', () => {
  /** A linear model's kernel after one plain SGD step (lr 1, kernel 0: the kernel is −gradient). */
  function kernelAfterStep(mix?: SampleMix): Promise<Float32Array> {
    // Image 0 is bright (labelled 1), image 1 dark (labelled 2).
    const images = new Uint8Array(2 * IMAGE_BYTES);
    images.fill(250, 0, IMAGE_BYTES);
    images.fill(5, IMAGE_BYTES);
    return linearKernelAfterStep({ images, labels: Uint8Array.from([1, 2]), size: 2, ...(mix ? { mix } : {}) }, 1);
  }

  it('mixes both the images and the targets: the gradient is Σ x̃ᵢ ⊗ (softmax − t̃ᵢ) / n', async () => {
    const [bright, dark] = [(250 / 255 - 0.5) / 0.25, (5 / 255 - 0.5) / 0.25];
    const input = 3072 * 0 + 0; // the first input (pixel 0, 0, red); kernel row of 10 classes
    const at = (k: Float32Array, cls: number) => k[input * 10 + cls]!;
    // Zero kernel: softmax 0.1 everywhere. Own targets: image 0 → class 1, image 1 → class 2.
    const expected = (x0: number, x1: number, t0: number[], t1: number[], cls: number) => -(x0 * (0.1 - t0[cls]!) + x1 * (0.1 - t1[cls]!)) / 2;
    const onehot = (c: number) => Array.from({ length: 10 }, (_, j) => (j === c ? 1 : 0));
    const plain = await kernelAfterStep();
    for (const cls of [1, 2, 5]) expect(at(plain, cls)).toBeCloseTo(expected(bright, dark, onehot(1), onehot(2), cls), 5);
    // Mixup λ = 0.25: x̃0 = 0.25·bright + 0.75·dark, t̃0 = 0.25·e1 + 0.75·e2; image 1 the mirror.
    const lam = 0.25;
    const mixed = await kernelAfterStep({ kind: 'mixup', lambda: lam, box: { top: 0, bottom: 0, left: 0, right: 0 } });
    const x0 = lam * bright + (1 - lam) * dark;
    const x1 = lam * dark + (1 - lam) * bright;
    const t0 = onehot(1).map((v, j) => lam * v + (1 - lam) * onehot(2)[j]!);
    const t1 = onehot(2).map((v, j) => lam * v + (1 - lam) * onehot(1)[j]!);
    for (const cls of [1, 2, 5]) expect(at(mixed, cls)).toBeCloseTo(expected(x0, x1, t0, t1, cls), 5);
    expect(Math.abs(at(mixed, 1) - at(plain, 1))).toBeGreaterThan(0.1);
  });
});
