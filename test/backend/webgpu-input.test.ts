import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { probeWebGpu } from '../../src/backend/webgpu.js';
import { flatDispatch } from '../../src/backend/webgpu-kernels/program.js';
import { registerWebGpuKernels, unregisterWebGpuKernels } from '../../src/backend/webgpu-kernels/register.js';
import { countBackendCalls } from '../../src/bench/gpu-counts.js';
import type { SampleMix } from '../../src/image/mix.js';
import { createNormalizer, mixPairs } from '../../src/model/normalize.js';
import { buildModel } from '../../src/model/resnet.js';
import { createTrainer } from '../../src/train/step.js';
import { cutoutBoxes } from '../../src/train/augment.js';
import { cropAndFlip } from '../../src/image/crop.js';
import { expectClose } from './helpers.js';

const STATS = { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] };

/** `count` images of pseudo-random bytes, placed `offset` bytes into their buffer. */
function bytes(count: number, seed: number, offset = 0): Uint8Array {
  const buffer = new Uint8Array(offset + count * 3072);
  let a = seed;
  for (let i = offset; i < buffer.length; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    buffer[i] = a >>> 24;
  }
  return buffer.subarray(offset);
}

/** (v/255 − mean)/std per channel in plain JS, with each image's box zeroed. */
function reference(images: Uint8Array, count: number, boxes?: Int32Array): Float32Array {
  const out = new Float32Array(count * 3072);
  for (let e = 0; e < out.length; e++) {
    const c = e % 3;
    const pixel = Math.floor(e / 3);
    const [n, y, x] = [Math.floor(pixel / 1024), Math.floor(pixel / 32) % 32, pixel % 32];
    const inBox = boxes !== undefined && y >= boxes[n * 4]! && y < boxes[n * 4 + 1]! && x >= boxes[n * 4 + 2]! && x < boxes[n * 4 + 3]!;
    out[e] = inBox ? 0 : (images[e]! / 255 - STATS.mean[c]!) / STATS.std[c]!;
  }
  return out;
}

describe('byte-input dispatch grid (pure)', () => {
  it('gives one invocation per 32-bit word, wrapping past 65,535 groups in x', () => {
    expect(flatDispatch(768)).toEqual([3, 1, 1]); // one image: 3,072 bytes
    expect(flatDispatch(768 * 256)).toEqual([768, 1, 1]);
    expect(flatDispatch(65535 * 256 + 1)).toEqual([65535, 2, 1]);
  });
});

const probe = await probeWebGpu();

describe.skipIf(!probe.ok)('the input transform from bytes on webgpu (CifarNormalizeBytes)', () => {
  beforeAll(async () => {
    expect((await initBackend('webgpu')).name).toBe('webgpu');
  });
  afterAll(async () => {
    registerWebGpuKernels();
    await tf.setBackend('cpu');
  });

  const centres = { cy: Int32Array.of(0, 31, 16, 5, 20), cx: Int32Array.of(31, 0, 16, 9, 2) };
  const cases = [
    { name: 'without cutout', count: 3, offset: 0, boxes: undefined },
    { name: 'with cutout boxes clipped at every edge', count: 5, offset: 0, boxes: cutoutBoxes(centres, 5, 16) },
    { name: 'from a buffer not aligned to 4 bytes, with cutout 8', count: 2, offset: 3, boxes: cutoutBoxes(centres, 2, 8) },
  ];
  for (const c of cases) {
    it(`matches the per-channel formula ${c.name}`, async () => {
      const images = bytes(c.count, 7 + c.count, c.offset);
      const normalizer = createNormalizer(STATS);
      const t = normalizer.apply(images, c.count, { boxes: c.boxes });
      expect(t.shape).toEqual([c.count, 32, 32, 3]);
      const got = (await t.data()) as Float32Array;
      t.dispose();
      normalizer.dispose();
      expectClose(got, reference(images, c.count, c.boxes), 1e-6, c.name);
    });
  }

  it('uses only the first `count` images of a longer buffer', async () => {
    const images = bytes(4, 3);
    const normalizer = createNormalizer(STATS);
    const t = normalizer.apply(images, 2);
    const got = (await t.data()) as Float32Array;
    tf.dispose(t);
    normalizer.dispose();
    expectClose(got, reference(images, 2), 1e-6);
  });

  it('agrees with the tfjs-ops path that other backends run (cutout included)', async () => {
    const images = bytes(5, 11);
    const boxes = cutoutBoxes(centres, 5, 16);
    const normalizer = createNormalizer(STATS);
    const ours = normalizer.apply(images, 5, { boxes });
    const oursData = (await ours.data()) as Float32Array;
    unregisterWebGpuKernels();
    try {
      const ops = normalizer.apply(images, 5, { boxes });
      expectClose(oursData, (await ops.data()) as Float32Array, 1e-6);
      ops.dispose();
    } finally {
      registerWebGpuKernels();
      ours.dispose();
      normalizer.dispose();
    }
  });

  // Crops at both extremes and in between, mirrored and not (with the boxes' centres above).
  const crops = { dy: Int32Array.of(-4, 4, 0, 3, -1), dx: Int32Array.of(4, -4, 0, -2, 1), mirror: Int32Array.of(1, 0, 1, 0, 1) };
  for (const cut of [false, true]) {
    it(`crops and flips on the device as the loader does in JS${cut ? ', then cuts' : ''}: the formula on cropAndFlip's bytes, and the ops path`, async () => {
      const images = bytes(5, 13);
      const boxes = cut ? cutoutBoxes(centres, 5, 16) : undefined;
      const normalizer = createNormalizer(STATS);
      const ours = normalizer.apply(images, 5, { boxes, crops });
      const oursData = (await ours.data()) as Float32Array;
      expectClose(oursData, reference(cropAndFlip(images, 5, crops), 5, boxes), 1e-6);
      // The same bytes' values through the normalisation the ops path runs, exactly.
      const plain = normalizer.apply(cropAndFlip(images, 5, crops), 5, { boxes });
      expect(Array.from(oursData)).toEqual(Array.from((await plain.data()) as Float32Array));
      unregisterWebGpuKernels();
      try {
        const ops = normalizer.apply(images, 5, { boxes, crops });
        expectClose(oursData, (await ops.data()) as Float32Array, 1e-6);
        ops.dispose();
      } finally {
        registerWebGpuKernels();
        tf.dispose([ours, plain]);
        normalizer.dispose();
      }
    });
  }

  const mixes: SampleMix[] = [
    { kind: 'cutmix', lambda: 0.6875, box: { top: 0, bottom: 16, left: 12, right: 32 } },
    { kind: 'mixup', lambda: 0.3, box: { top: 0, bottom: 0, left: 0, right: 0 } },
  ];
  for (const mix of mixes) {
    for (const crop of [true, false]) {
      it(`mixes the pairs in the same dispatch (${mix.kind}${crop ? ', after crops and cutout' : ', no crops drawn'}): the ops path's mixPairs of the unmixed batch`, async () => {
        const images = bytes(5, 21);
        const augment = { boxes: cutoutBoxes(centres, 5, 12), ...(crop ? { crops } : {}) };
        const normalizer = createNormalizer(STATS);
        const counts = await countBackendCalls(async () => {
          const t = normalizer.apply(images, 5, { ...augment, mix });
          await t.data();
          t.dispose();
        });
        expect(counts).toMatchObject({ dispatches: 1, uploads: 2 });
        const ours = normalizer.apply(images, 5, { ...augment, mix });
        const unmixed = normalizer.apply(images, 5, augment);
        const expected = mixPairs(unmixed, mix);
        const [got, want] = [(await ours.data()) as Float32Array, (await expected.data()) as Float32Array];
        // CutMix takes values as they are: exactly the partner's inside the box, the image's own outside.
        if (mix.kind === 'cutmix') expect(Array.from(got)).toEqual(Array.from(want));
        else expectClose(got, want, 1e-6, mix.kind);
        unregisterWebGpuKernels();
        try {
          const ops = normalizer.apply(images, 5, { ...augment, mix });
          expectClose(got, (await ops.data()) as Float32Array, 1e-6, `${mix.kind} against the ops`);
          ops.dispose();
        } finally {
          registerWebGpuKernels();
          tf.dispose([ours, unmixed, expected]);
          normalizer.dispose();
        }
      });
    }
  }

  it('crops in the same dispatch: one dispatch, the bytes and 32 bytes an image of boxes and crops', async () => {
    const normalizer = createNormalizer(STATS);
    const images = bytes(5, 5);
    const counts = await countBackendCalls(async () => {
      const t = normalizer.apply(images, 5, { boxes: cutoutBoxes(centres, 5, 16), crops });
      await t.data();
      t.dispose();
    });
    normalizer.dispose();
    expect(counts).toMatchObject({ dispatches: 1, uploads: 2, uploadBytes: 5 * 3072 + 5 * 32 });
  });

  it('is one dispatch uploading the bytes as they are (a quarter of int32), plus 16 bytes an image of cutout boxes', async () => {
    const normalizer = createNormalizer(STATS);
    const images = bytes(8, 5);
    const boxes = cutoutBoxes({ cy: new Int32Array(8).fill(10), cx: new Int32Array(8).fill(10) }, 8, 16);
    const counts = await countBackendCalls(async () => {
      const t = normalizer.apply(images, 8, { boxes });
      await t.data();
      t.dispose();
    });
    normalizer.dispose();
    expect(counts).toMatchObject({ dispatches: 1, uploads: 2, uploadBytes: 8 * 3072 + 8 * 16 });
  });

  it('leaves a training step with 3 uploads (bytes, labels, the gradient seed), 4 with cutout or crops or both: no scalars', async () => {
    const model = buildModel('resnet10-w8');
    const trainer = createTrainer(model, { momentum: 0.9, weightDecay: 5e-4, labelSmoothing: 0.1, ...STATS, classes: 10, cutout: 16 });
    const [images, labels] = [bytes(4, 9), Uint8Array.of(1, 2, 3, 4)];
    const uploads = async (cut: boolean, crop = false): Promise<number> => {
      const step = async () => {
        const { lossSum, correct } = trainer.step({ images, labels, size: 4, ...(cut ? { cutout: centres } : {}), ...(crop ? { crops } : {}) }, 0.01);
        await lossSum.data();
        tf.dispose([lossSum, correct]);
      };
      await step(); // the first step of a kind creates its constants
      return (await countBackendCalls(step))!.uploads;
    };
    try {
      expect(await uploads(false)).toBe(3);
      expect(await uploads(true)).toBe(4);
      expect(await uploads(false, true)).toBe(4);
      expect(await uploads(true, true)).toBe(4);
    } finally {
      trainer.dispose();
      model.dispose();
    }
  });
});
