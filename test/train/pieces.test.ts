import { describe, expect, it } from 'vitest';
import { cropAndFlip } from '../../src/image/crop.js';
import { IMAGE_BYTES } from '../../src/image/preprocess.js';
import { mulberry32 } from '../../src/data/shuffle.js';
import { cutoutBox, drawAugmentParams, gatherAugmented } from '../../src/train/augment.js';
import { makeBatch, stepsPerEpoch, type BatchPlan } from '../../src/train/batches.js';
import { parseTrainConfig, resolveTrainConfig } from '../../src/train/config.js';
import { oneCycle, oneCycleLr, refit, scheduledLr } from '../../src/train/schedule.js';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../helpers/fixtures.js';

/** An image whose pixel (y, x) has R = y, G = x, B = 200. */
function coordinateImage(): Uint8Array {
  const img = new Uint8Array(IMAGE_BYTES);
  for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) img.set([y, x, 200], (y * 32 + x) * 3);
  return img;
}

describe('augmentation', () => {
  it('without padding or flip copies images unchanged', () => {
    const src = coordinateImage();
    const out = new Uint8Array(IMAGE_BYTES);
    gatherAugmented(src, [0], out, Math.random, 0, false);
    expect(out).toEqual(src);
  });

  it('crops a zero-padded image: the shift moves pixels and fills the border with zeros', () => {
    const src = coordinateImage();
    const out = new Uint8Array(IMAGE_BYTES);
    // random() = 0 picks the largest shift up-left: output(y,x) = image(y-4, x-4).
    gatherAugmented(src, [0], out, () => 0, 4, false);
    expect([...out.subarray(0, 3)]).toEqual([0, 0, 0]);
    const at = (y: number, x: number) => [...out.subarray((y * 32 + x) * 3, (y * 32 + x) * 3 + 3)];
    expect(at(4, 4)).toEqual([0, 0, 200]);
    expect(at(10, 7)).toEqual([6, 3, 200]);
  });

  it('flips left-right when asked', () => {
    const src = coordinateImage();
    const out = new Uint8Array(IMAGE_BYTES);
    const draws = [0.5, 0.5, 0.1]; // centre crop (dy = dx = 0), then flip
    gatherAugmented(src, [0], out, () => draws.shift()!, 4, true);
    expect([...out.subarray(0, 3)]).toEqual([0, 31, 200]);
  });

  it('returns the cutout centres it drew and leaves the bytes to be cut after normalisation', () => {
    const src = coordinateImage();
    const out = new Uint8Array(IMAGE_BYTES);
    const draws = [0.5, 0.5, 0.9, 0.25, 0.75]; // no shift, no flip, then the centre (8, 24)
    const drawn = gatherAugmented(src, [0], out, () => draws.shift()!, 4, true, 16);
    expect([drawn.cy[0], drawn.cx[0]]).toEqual([8, 24]);
    expect(out).toEqual(src);
  });
});

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

describe('cutout square', () => {
  it('has side `size` starting size/2 above and left of the centre', () => {
    expect(cutoutBox(16, 16, 16)).toEqual({ top: 8, bottom: 24, left: 8, right: 24 });
    expect(cutoutBox(10, 20, 5)).toEqual({ top: 8, bottom: 13, left: 18, right: 23 });
  });

  it('is clipped where it hangs over the edge of the image', () => {
    expect(cutoutBox(0, 31, 8)).toEqual({ top: 0, bottom: 4, left: 27, right: 32 });
    expect(cutoutBox(2, 30, 16)).toEqual({ top: 0, bottom: 10, left: 22, right: 32 });
    expect(cutoutBox(16, 16, 32)).toEqual({ top: 0, bottom: 32, left: 0, right: 32 });
  });
});

describe('batches', () => {
  const plan = (seed: number): BatchPlan => {
    const count = 40;
    const images = new Uint8Array(count * IMAGE_BYTES).map((_, i) => (i * 7) & 0xff);
    const labels = new Uint8Array(count).map((_, i) => i % 10);
    return { images, labels, count, batchSize: 16, seed, cropPadding: 4, flip: true };
  };

  it('drops the ragged last batch', () => {
    expect(stepsPerEpoch(40, 16)).toBe(2);
    expect(stepsPerEpoch(10, 16)).toBe(1);
  });

  it('is a pure function of (seed, epoch, step), so a resumed run sees the same batches', () => {
    const a = makeBatch(plan(3), 2, 1);
    const b = makeBatch(plan(3), 2, 1);
    expect(b.images).toEqual(a.images);
    expect(b.labels).toEqual(a.labels);
    expect(makeBatch(plan(3), 3, 1).labels).not.toEqual(a.labels);
    expect(makeBatch(plan(4), 2, 1).images).not.toEqual(a.images);
  });

  it('with cutout 0 makes exactly the batches of a plan without the option, and no cutout centres', () => {
    const a = makeBatch(plan(3), 1, 0);
    const b = makeBatch({ ...plan(3), cutout: 0 }, 1, 0);
    expect(b).toEqual(a);
    expect(b.cutout).toBeUndefined();
  });

  it('with cutout carries each image\'s seeded centre for the trainer to cut', () => {
    const batch = makeBatch({ ...plan(3), cutout: 16 }, 1, 0);
    expect(batch.cutout!.cy).toHaveLength(16);
    expect(batch.labels).toEqual(makeBatch(plan(3), 1, 0).labels);
    expect(makeBatch({ ...plan(3), cutout: 16 }, 1, 0)).toEqual(batch);
    expect(new Set(batch.cutout!.cy).size).toBeGreaterThan(1);
    for (const v of [...batch.cutout!.cy, ...batch.cutout!.cx]) expect(v >= 0 && v < 32).toBe(true);
  });

  it('with cropOnDevice carries the same crop draws instead of applying them: the same batch once they are applied', () => {
    for (const cutout of [0, 16]) {
      const here = makeBatch({ ...plan(5), cutout }, 2, 1);
      const there = makeBatch({ ...plan(5), cutout, cropOnDevice: true }, 2, 1);
      expect(here.crops).toBeUndefined();
      expect(there.labels).toEqual(here.labels);
      expect(there.cutout).toEqual(here.cutout);
      // The images as stored, in the batch's order; cropped and flipped by the draws, the loader's batch.
      expect(there.images).not.toEqual(here.images);
      expect(cropAndFlip(there.images, 16, there.crops!)).toEqual(here.images);
      expect(new Set(there.crops!.mirror)).toEqual(new Set([0, 1]));
      expect(Math.max(...there.crops!.dy.map(Math.abs), ...there.crops!.dx.map(Math.abs))).toBe(4);
    }
    // Nothing to crop or flip: no draws to carry.
    expect(makeBatch({ ...plan(5), cropPadding: 0, flip: false, cropOnDevice: true }, 0, 0).crops).toBeUndefined();
  });

  it('visits each image at most once per epoch', () => {
    const p = plan(1);
    const seen = [0, 1].flatMap((s) => [...makeBatch(p, 0, s).labels]);
    expect(seen).toHaveLength(32);
    const counts = new Array(10).fill(0);
    seen.forEach((l) => counts[l]++);
    expect(Math.max(...counts)).toBeLessThanOrEqual(4);
  });
});

describe('one-cycle learning rate', () => {
  it('warms up from lr/25 to lr, then decays by cosine to lr/2500', () => {
    const total = 1000;
    expect(oneCycleLr(0, total, 0.1, 0.2)).toBeCloseTo(0.004, 6);
    expect(oneCycleLr(200, total, 0.1, 0.2)).toBeCloseTo(0.1, 6);
    expect(oneCycleLr(100, total, 0.1, 0.2)).toBeCloseTo(0.052, 6);
    expect(oneCycleLr(1000, total, 0.1, 0.2)).toBeCloseTo(0.00004, 8);
    const mid = oneCycleLr(600, total, 0.1, 0.2);
    expect(mid).toBeCloseTo(0.00004 + (0.1 - 0.00004) / 2, 6);
  });

  describe('re-fitted to a new number of steps (a run re-planned to its time limit)', () => {
    const lr = 0.1;
    const base = oneCycle(1000, 0.2);
    it('after the warm-up, goes on from the learning rate it had, keeps the warm-up and reaches lr/2500 at the new end', () => {
      for (const total of [1400, 700]) {
        const s = refit(base, 500, total, 0.2);
        expect(s).toMatchObject({ totalSteps: total, warmSteps: 200 });
        // No jump: step 500 has the rate it had under the old schedule; the steps before keep theirs.
        expect(scheduledLr(s, 500, lr)).toBeCloseTo(oneCycleLr(500, 1000, lr, 0.2), 12);
        expect(scheduledLr(s, 100, lr)).toBeCloseTo(oneCycleLr(100, 1000, lr, 0.2), 12);
        expect(scheduledLr(s, total - 1, lr)).toBeGreaterThan(lr / 2500);
        expect(scheduledLr(s, total, lr)).toBeCloseTo(lr / 2500, 12);
        // Decreasing all the way from there, at the slope the steps left call for.
        const after = Array.from({ length: total - 500 }, (_, i) => scheduledLr(s, 500 + i, lr));
        after.slice(1).forEach((v, i) => expect(v).toBeLessThan(after[i]!));
      }
      // Longer: a slower decay than the old schedule's; shorter: a faster one.
      expect(scheduledLr(refit(base, 500, 1400, 0.2), 800, lr)).toBeGreaterThan(oneCycleLr(800, 1000, lr, 0.2));
      expect(scheduledLr(refit(base, 500, 700, 0.2), 600, lr)).toBeLessThan(oneCycleLr(600, 1000, lr, 0.2));
    });

    it('re-fitted twice, still continuous at each point; fitted to its own length, unchanged', () => {
      const once = refit(base, 500, 1400, 0.2);
      const twice = refit(once, 900, 1200, 0.2);
      expect(scheduledLr(twice, 900, lr)).toBeCloseTo(scheduledLr(once, 900, lr), 12);
      expect(scheduledLr(twice, 1200, lr)).toBeCloseTo(lr / 2500, 12);
      expect(refit(once, 950, 1400, 0.2)).toBe(once);
      // A plain schedule re-fitted at its own length gives oneCycleLr's rates.
      expect(scheduledLr(refit(base, 300, 1000, 0.2), 700, lr)).toBe(oneCycleLr(700, 1000, lr, 0.2));
    });

    it('in the warm-up, becomes the one-cycle schedule of the new length; cut below the step reached, ends the warm-up there', () => {
      expect(refit(base, 50, 2000, 0.2)).toEqual(oneCycle(2000, 0.2));
      expect(refit(base, 150, 500, 0.2)).toEqual({ totalSteps: 500, warmSteps: 150, from: 150, t: 0 });
      expect(scheduledLr(refit(base, 150, 500, 0.2), 150, lr)).toBeCloseTo(lr, 12);
    });
  });
});

describe('training config', () => {
  it('fills defaults and lets flags override the file', async () => {
    const { dir, cleanup } = await tempDir();
    try {
      const file = join(dir, 'c.json');
      await writeFile(file, JSON.stringify({ epochs: 7, lr: 0.2 }));
      const config = await resolveTrainConfig(file, { lr: 0.05, batchSize: undefined });
      expect(config).toMatchObject({ epochs: 7, lr: 0.05, batchSize: 128, momentum: 0.9, labelSmoothing: 0.1 });
    } finally {
      await cleanup();
    }
  });

  it('reads every recipe shipped in configs/: the 50-epoch GPU ResNet-18 with cutout 16, the CPU quarter-width without', async () => {
    const names = (await readdir('configs')).filter((f) => f.endsWith('.json'));
    expect(names).toEqual(expect.arrayContaining(['resnet18.json', 'resnet18-w4.json']));
    const configs = Object.fromEntries(await Promise.all(names.map(async (f) => [f, await resolveTrainConfig(join('configs', f), {})] as const)));
    expect(configs['resnet18.json']).toMatchObject({ model: 'resnet18', epochs: 50, batchSize: 256, lr: 0.2, cutout: 16, testEvery: 5, weights: 'float32' });
    expect(configs['resnet18-w4.json']).toMatchObject({ model: 'resnet18-w4', cutout: 0 });
  });

  it('names an unknown key', () => {
    expect(() => parseTrainConfig({ epochz: 3 }, 'configs/x.json')).toThrowError(/configs\/x\.json: unknown key "epochz"/);
  });

  it('names a key with the wrong type', () => {
    expect(() => parseTrainConfig({ epochs: 'ten' }, 'c.json')).toThrowError(/c\.json: "epochs" /);
    expect(() => parseTrainConfig({ backend: 'cuda' }, 'c.json')).toThrowError(/"backend"/);
  });

  it('has cutout off by default and rejects a negative, fractional or too large side, naming the key', () => {
    expect(parseTrainConfig({}).cutout).toBe(0);
    expect(parseTrainConfig({ cutout: 16 }).cutout).toBe(16);
    for (const bad of [-1, 2.5, 33, '16']) {
      expect(() => parseTrainConfig({ cutout: bad }, 'c.json')).toThrowError(/c\.json: "cutout" /);
    }
  });
});
