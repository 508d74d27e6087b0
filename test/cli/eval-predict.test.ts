import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLASSES } from '../../src/data/classes.js';
import { saveModel } from '../../src/model/store.js';
import { runCli } from '../helpers/cli.js';
import { makeRecords, tempDir } from '../helpers/fixtures.js';
import { mkdir } from 'node:fs/promises';
import { BATCH_FILES } from '../../src/data/cifar-binary.js';
import { saveTinyModel, startServe } from '../helpers/serve.js';
import { lopsidedPng } from '../serve/helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
const CONSTANT_CLASS = 3;

/** A model whose answer is known: class 3 for every image, with confidence e^5 / (e^5 + 9). */
async function constantModel(out: string): Promise<void> {
  await tf.setBackend('cpu');
  const model = tf.sequential({
    layers: [
      tf.layers.flatten({ inputShape: [32, 32, 3] }),
      tf.layers.dense({ units: 10, kernelInitializer: 'zeros', biasInitializer: tf.initializers.constant({ value: 0 }) }),
    ],
  });
  const bias = new Float32Array(10);
  bias[CONSTANT_CLASS] = 5;
  model.layers[1]!.setWeights([tf.zeros([3072, 10]), tf.tensor1d(bias)]);
  await mkdir(out, { recursive: true });
  await saveModel(out, model, {
    name: 'constant', architecture: 'dense', parameters: 30730, classes: [...CLASSES],
    normalization: { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] }, testAccuracy: null, perClassAccuracy: null,
    epochs: 0, batchSize: 0, trainingSeconds: 0, backend: 'cpu', datasetChecksum: null, createdAt: new Date().toISOString(), packageVersion: 'test',
  });
}

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir());
  await constantModel(join(dir, 'model'));
  const folder = join(dir, 'data', 'cifar-10-batches-bin');
  await mkdir(folder, { recursive: true });
  for (const [i, f] of BATCH_FILES.entries()) await writeFile(join(folder, f), makeRecords(25, i));
});
afterAll(() => cleanup());

describe('cifar eval (CLI)', () => {
  it('gives the confusion matrix of a model with known outputs, and --plot draws it', async () => {
    const plot = join(dir, 'cm.png');
    const res = await runCli(['eval', '--model', join(dir, 'model'), '--data', join(dir, 'data'), '--backend', 'cpu', '--json', '--plot', plot]);
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout);
    // The test batch is makeRecords(25, seed 5): labels 5..9, then 0..9 twice.
    const counts = [2, 2, 2, 2, 2, 3, 3, 3, 3, 3];
    expect(out.confusion).toEqual(counts.map((n) => CLASSES.map((_, j) => (j === CONSTANT_CLASS ? n : 0))));
    expect(out.accuracy).toBeCloseTo(2 / 25);
    expect(out.perClass[CONSTANT_CLASS]).toMatchObject({ recall: 1, precision: 2 / 25 });
    expect(out.modelVersion).toMatch(/^[0-9a-f]{12}$/);
    const meta = await sharp(await readFile(plot)).metadata();
    expect(meta.format).toBe('png');
  });

  it('exits 1 when --min-accuracy is not met, 0 when it is', async () => {
    const args = ['eval', '--model', join(dir, 'model'), '--data', join(dir, 'data'), '--backend', 'cpu'];
    const fail = await runCli([...args, '--min-accuracy', '50%']);
    expect(fail.code).toBe(1);
    expect(fail.stdout).toMatch(/accuracy 8\.0% on 25 test images/);
    expect(fail.stderr).toMatch(/below --min-accuracy 50\.00%/);
    expect((await runCli([...args, '--min-accuracy', '0.05'])).code).toBe(0);
  });

  it('with --tta averages each image with its mirror image and says so in the report and the JSON', async () => {
    // The constant model answers the same for an image and its mirror: TTA changes no number.
    const args = ['eval', '--model', join(dir, 'model'), '--data', join(dir, 'data'), '--backend', 'cpu'];
    const [plain, tta] = [await runCli([...args, '--json']), await runCli([...args, '--json', '--tta'])];
    expect(tta.code, tta.stderr).toBe(0);
    const [a, b] = [JSON.parse(plain.stdout), JSON.parse(tta.stdout)];
    expect(a.tta).toBe('none');
    expect(b.tta).toBe('flip');
    expect(b.confusion).toEqual(a.confusion);
    expect(b.loss).toBeCloseTo(a.loss, 5);
    const text = await runCli([...args, '--tta']);
    expect(text.stdout).toMatch(/^accuracy 8\.0% on 25 test images {2}\(model constant [0-9a-f]{12}, cpu, flip TTA, \d+ img\/s\)$/m);
    expect((await runCli(args)).stdout).not.toMatch(/TTA/);
  });

  it('tells the user to run cifar download when there is no dataset', async () => {
    const res = await runCli(['eval', '--model', join(dir, 'model'), '--data', join(dir, 'none'), '--backend', 'cpu']);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^error: no CIFAR-10 dataset at .* run `cifar download`/);
  });
});

describe('cifar predict (CLI)', () => {
  it('predicts PNG, JPEG, WebP, transparent, greyscale and large images; names a corrupt file and exits 1', async () => {
    const img = (w: number, h: number, channels: 3 | 4) => sharp({ create: { width: w, height: h, channels, background: { r: 30, g: 140, b: 60, alpha: 0.4 } } });
    const files: Record<string, Buffer> = {
      'a.png': await img(32, 32, 3).png().toBuffer(),
      'b.jpg': await img(64, 48, 3).jpeg().toBuffer(),
      'c.webp': await img(100, 100, 3).webp().toBuffer(),
      'd-alpha.png': await img(40, 40, 4).png().toBuffer(),
      'e-grey.png': await img(33, 33, 3).greyscale().toColourspace('b-w').png().toBuffer(),
      'f-large.jpg': await img(3000, 2000, 3).jpeg().toBuffer(),
      'g-corrupt.png': (await img(32, 32, 3).png().toBuffer()).subarray(0, 30),
    };
    const folder = join(dir, 'imgs');
    await mkdir(folder, { recursive: true });
    for (const [name, data] of Object.entries(files)) await writeFile(join(folder, name), data);
    const res = await runCli(['predict', folder, '--model', join(dir, 'model'), '--backend', 'cpu', '--json']);
    expect(res.code).toBe(1);
    const lines = res.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(7);
    const confidence = Math.exp(5) / (Math.exp(5) + 9);
    for (const l of lines.slice(0, 6)) {
      expect(l).toMatchObject({ prediction: CONSTANT_CLASS, class_name: 'cat' });
      expect(l.confidence).toBeCloseTo(confidence, 5);
      expect(l.probabilities).toHaveLength(10);
    }
    expect(lines[6]).toMatchObject({ file: join(folder, 'g-corrupt.png'), error: expect.stringMatching(/not a decodable image/) });
    expect(res.stderr).toMatch(/1 of 7 images could not be read/);
  });

  it('prints the top K classes as text', async () => {
    const png = join(dir, 'one.png');
    await writeFile(png, await sharp({ create: { width: 32, height: 32, channels: 3, background: 'red' } }).png().toBuffer());
    const res = await runCli(['predict', png, '--model', join(dir, 'model'), '--backend', 'cpu', '--top', '2']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/one\.png: cat 94\.3%, airplane 0\.6%\n$/);
  });

  it('says which model folder is missing', async () => {
    const res = await runCli(['predict', 'x.png', '--model', join(dir, 'nope')]);
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^error: no model at .*nope/);
    expect(existsSync(join(dir, 'nope'))).toBe(false);
  });
});

describe('flip TTA in predict and serve (--tta)', () => {
  it('answers the mean of each image\'s and its mirror image\'s probabilities, in cifar predict and a cifar serve process alike', async () => {
    const model = join(dir, 'random-model');
    await saveTinyModel(model, tf.initializers.randomNormal({ seed: 3, stddev: 0.05 }));
    const [image, mirror] = [join(dir, 'lopsided.png'), join(dir, 'lopsided-mirror.png')];
    await writeFile(image, await lopsidedPng());
    await writeFile(mirror, await lopsidedPng(true));
    const predict = async (...args: string[]) => {
      const res = await runCli(['predict', ...args, '--model', model, '--backend', 'cpu', '--json']);
      expect(res.code, res.stderr).toBe(0);
      return res.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { probabilities: number[] }).probabilities);
    };
    const [a, m] = await predict(image, mirror);
    const [t] = await predict(image, '--tta');
    t!.forEach((p, i) => expect(p).toBeCloseTo((a![i]! + m![i]!) / 2, 6));
    expect(Math.max(...a!.map((p, i) => Math.abs(p - t![i]!)))).toBeGreaterThan(1e-4);
    expect((await runCli(['predict', image, '--model', model, '--backend', 'cpu', '--tta'])).stderr).toMatch(/^backend: cpu .*; flip TTA$/m);

    const server = await startServe(['--model', model, '--backend', 'cpu', '--workers', '1', '--tta']);
    try {
      const health = (await (await fetch(`${server.url}/health`)).json()) as { tta: string };
      expect(health.tta).toBe('flip');
      const body = new FormData();
      body.append('file', new Blob([new Uint8Array(await readFile(image))], { type: 'image/png' }), 'lopsided.png');
      const answer = (await (await fetch(`${server.url}/predict`, { method: 'POST', body })).json()) as { probabilities: number[] };
      answer.probabilities.forEach((p, i) => expect(p).toBeCloseTo(t![i]!, 6));
    } finally {
      await server.stop();
    }
  });
});
