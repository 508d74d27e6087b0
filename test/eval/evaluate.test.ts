import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { mulberry32 } from '../../src/data/shuffle.js';
import { evaluateModel } from '../../src/eval/evaluate.js';
import { IMAGE_BYTES } from '../../src/image/preprocess.js';
import { createNormalizer } from '../../src/model/normalize.js';
import { buildModel } from '../../src/model/resnet.js';

const STATS = { mean: [0.49, 0.48, 0.45], std: [0.25, 0.24, 0.26] };
const COUNT = 24;

/** Random images (so the model's view of an image and of its mirror differ) with labels 0..9. */
function dataset(): { images: Uint8Array; labels: Uint8Array; count: number } {
  const random = mulberry32(9);
  const images = Uint8Array.from({ length: COUNT * IMAGE_BYTES }, () => Math.floor(random() * 256));
  const labels = Uint8Array.from({ length: COUNT }, (_, i) => i % 10);
  return { images, labels, count: COUNT };
}

/** The TTA answer computed here, without evaluateModel: softmax on x and on mirrored x, averaged. */
async function averagedProbabilities(model: tf.LayersModel, data: ReturnType<typeof dataset>): Promise<number[][]> {
  const norm = createNormalizer(STATS);
  const probs = tf.tidy(() => {
    const x = norm.apply(data.images, data.count);
    const p = tf.softmax(model.predict(x) as tf.Tensor2D);
    const mirrored = tf.softmax(model.predict(tf.reverse(x, 2)) as tf.Tensor2D);
    return tf.div(tf.add(p, mirrored), 2);
  });
  const rows = (await probs.array()) as number[][];
  probs.dispose();
  norm.dispose();
  return rows;
}

const argmax = (row: number[]) => row.indexOf(Math.max(...row));

beforeAll(async () => {
  await initBackend('cpu');
});

describe('evaluateModel with flip TTA', () => {
  it('predicts the argmax of the mean of the softmaxes on each image and its mirror, and reports the loss of that mean', async () => {
    const model = buildModel('resnet10-w8');
    const data = dataset();
    const expected = await averagedProbabilities(model, data);
    const before = tf.memory().numTensors;
    const ev = await evaluateModel(model, data, STATS, { batchSize: 10, tta: true });
    expect(tf.memory().numTensors).toBe(before);
    expect(ev.tta).toBe(true);
    expect([...ev.predictions]).toEqual(expected.map(argmax));
    const loss = expected.reduce((s, row, i) => s - Math.log(row[data.labels[i]!]!), 0) / COUNT;
    expect(ev.loss).toBeCloseTo(loss, 4);
    expect(ev.accuracy).toBeCloseTo(expected.filter((row, i) => argmax(row) === data.labels[i]).length / COUNT, 10);
    // The mirror pass changes the numbers: this model is not symmetric.
    const plain = await evaluateModel(model, data, STATS, { batchSize: 10 });
    expect(plain.tta).toBe(false);
    expect(Math.abs(plain.loss - ev.loss)).toBeGreaterThan(1e-4);
    model.dispose();
  });

  it('gives a mirror-symmetric model exactly the results it has without TTA', async () => {
    // Global average pooling forgets where a pixel was, so a mirrored image gives the same logits.
    const model = tf.sequential({
      layers: [tf.layers.globalAveragePooling2d({ inputShape: [32, 32, 3] }), tf.layers.dense({ units: 10, kernelInitializer: 'randomNormal' })],
    });
    const data = dataset();
    const plain = await evaluateModel(model, data, STATS, { batchSize: 8 });
    const tta = await evaluateModel(model, data, STATS, { batchSize: 8, tta: true });
    expect(tta.predictions).toEqual(plain.predictions);
    expect(tta.accuracy).toBe(plain.accuracy);
    expect(tta.loss).toBeCloseTo(plain.loss, 5);
    model.dispose();
  });
});
