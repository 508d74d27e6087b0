import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { buildModel } from '../../src/model/resnet.js';
import { roundToFloat16 } from '../../src/model/float16.js';
import { loadModel, modelVersion, saveModel, type ModelMetadata } from '../../src/model/store.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cifar-store-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});
beforeAll(async () => {
  await initBackend('cpu');
});

const tiny = (): tf.LayersModel => buildModel({ baseWidth: 4, blocks: [1, 1, 1, 1] });
const meta: Omit<ModelMetadata, 'version'> = {
  name: 'm', architecture: 'tiny', parameters: 1, classes: ['a', 'b'], normalization: { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] },
  testAccuracy: 0.5, perClassAccuracy: null, epochs: 1, batchSize: 1, trainingSeconds: 1, backend: 'cpu', datasetChecksum: null,
  createdAt: '2026-01-01T00:00:00Z', packageVersion: '0.0.0',
};

describe('model folders', () => {
  it('round-trips a model: same predictions, metadata, and a version that is the sha256 of the weights', async () => {
    const model = tiny();
    const x = tf.randomNormal([3, 32, 32, 3]);
    const before = (model.predict(x) as tf.Tensor).dataSync();
    const saved = await saveModel(path.join(dir), model, meta);
    expect(saved.version).toMatch(/^[0-9a-f]{12}$/);
    expect((await readdir(dir)).sort()).toEqual(['metadata.json', 'model.json', `weights-${saved.version}.bin`]);
    expect(modelVersion(await readFile(path.join(dir, `weights-${saved.version}.bin`)))).toBe(saved.version);
    const loaded = await loadModel(dir);
    expect(loaded.metadata).toEqual({ ...meta, version: saved.version });
    const after = (loaded.model.predict(x) as tf.Tensor).dataSync();
    after.forEach((v, i) => expect(v).toBeCloseTo(before[i]!, 5));
  });

  it('saves float16 weights at half the size, read back as the float32 weights rounded to float16', async () => {
    const model = tiny();
    const f32 = await mkdtemp(path.join(tmpdir(), 'cifar-store-f32-'));
    try {
      const a = await saveModel(f32, model, meta);
      const b = await saveModel(dir, model, meta, { weights: 'float16' });
      const size = async (d: string, v: string): Promise<number> => (await readFile(path.join(d, `weights-${v}.bin`))).byteLength;
      expect(await size(dir, b.version)).toBe((await size(f32, a.version)) / 2);
      expect(b.version).not.toBe(a.version);
      const loaded = await loadModel(dir);
      const want = model.getWeights().map((w) => roundToFloat16(w.dataSync() as Float32Array));
      const got = loaded.model.getWeights().map((w) => w.dataSync() as Float32Array);
      expect(got.length).toBe(want.length);
      got.forEach((g, i) => expect(Array.from(g)).toEqual(Array.from(want[i]!)));
      // Rounding changed something: the test would pass vacuously on float32 files otherwise.
      expect(got.some((g, i) => g.some((v, j) => v !== model.getWeights()[i]!.dataSync()[j]))).toBe(true);
    } finally {
      await rm(f32, { recursive: true, force: true });
    }
  });

  it('saving again replaces the model and its old weights but keeps other files of the folder', async () => {
    await writeFile(path.join(dir, 'history.jsonl'), '{}\n');
    const first = await saveModel(dir, tiny(), meta);
    const second = await saveModel(dir, tiny(), meta);
    expect(second.version).not.toBe(first.version);
    expect((await readdir(dir)).sort()).toEqual(['history.jsonl', 'metadata.json', 'model.json', `weights-${second.version}.bin`]);
    expect((await loadModel(dir)).metadata.version).toBe(second.version);
  });

  it('modelVersion is 12 hex digits of the sha256 of the weight bytes', () => {
    expect(modelVersion(new Uint8Array([1, 2, 3]))).toBe('039058c6f2c0');
  });

  it('a missing folder is MODEL_MISSING, damaged weights are MODEL_INVALID', async () => {
    await expect(loadModel(path.join(dir, 'nope'))).rejects.toMatchObject({ code: 'MODEL_MISSING', message: expect.stringMatching(/no model at/) });
    const saved = await saveModel(dir, tiny(), meta);
    await writeFile(path.join(dir, `weights-${saved.version}.bin`), new Uint8Array(10));
    await expect(loadModel(dir)).rejects.toMatchObject({ code: 'MODEL_INVALID' });
  });
});
