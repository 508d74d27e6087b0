import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { probeWebGpu, takeWebGpuErrors } from '../../src/backend/webgpu.js';
import { CLASSES } from '../../src/data/classes.js';
import { predictorFromModel } from '../../src/model/predictor.js';
import { buildModel } from '../../src/model/resnet.js';
import { errorResponse } from '../../src/serve/http-errors.js';
import { parseTrainConfig } from '../../src/train/config.js';
import { trainModel } from '../../src/train/train.js';
import { tempDir, writeLearnableDataset } from '../helpers/fixtures.js';

const probe = await probeWebGpu();

/** Makes the device report an error outside any error scope, as a broken shader of ours would. */
function breakAShader(): void {
  const device = (tf.backend() as unknown as { device: { createShaderModule(d: { code: string }): unknown } }).device;
  device.createShaderModule({ code: 'fn main( { not wgsl' });
}

const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 20));
};

describe.skipIf(!probe.ok)('errors the WebGPU device reports', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    ({ dir, cleanup } = await tempDir());
    await writeLearnableDataset(join(dir, 'data', 'cifar-10-batches-bin'), 16);
    expect((await initBackend('webgpu')).name).toBe('webgpu');
    takeWebGpuErrors();
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
    await cleanup?.();
  });

  it('are recorded (tfjs would leave zeros and say nothing) and handed out once', async () => {
    breakAShader();
    await settle();
    const errors = takeWebGpuErrors();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/WGSL/);
    expect(takeWebGpuErrors()).toEqual([]);
  });

  it('fail the inference they happened in (served as 503), and the next one goes through', async () => {
    const predictor = predictorFromModel(buildModel('resnet10-w8'), { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] }, { name: 't', version: 'v', classes: CLASSES, backend: 'webgpu' });
    try {
      const pixels = new Uint8Array(2 * 32 * 32 * 3).fill(128);
      breakAShader();
      await settle();
      const failed = await predictor.predict(pixels, 2).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(failed).toMatchObject({ code: 'BACKEND_FAILED' });
      expect(errorResponse(failed).status).toBe(503);
      expect(await predictor.predict(pixels, 2)).toHaveLength(20);
    } finally {
      predictor.dispose();
    }
  });

  it('stop a training run at the end of the epoch, before its history or checkpoint', async () => {
    const out = join(dir, 'broken');
    const config = parseTrainConfig({ model: 'resnet10-w8', epochs: 2, batchSize: 16, limit: 32, testLimit: 16, backend: 'webgpu', data: join(dir, 'data'), out });
    const run = trainModel(config, { onStep: () => breakAShader() });
    await expect(run).rejects.toMatchObject({ code: 'BACKEND_FAILED', message: expect.stringMatching(/^the GPU reported an error in epoch 1: .*WGSL/) });
    await expect(import('node:fs/promises').then((fs) => fs.readFile(join(out, 'history.jsonl'), 'utf8'))).rejects.toThrow();
  });
});
