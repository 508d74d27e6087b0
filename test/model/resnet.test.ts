import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { isCifarError } from '../../src/errors.js';
import { MODEL_PRESETS, buildModel, countParams, modelPresetNames, resolvePreset } from '../../src/model/resnet.js';

beforeAll(async () => {
  await initBackend('cpu');
});

describe('ResNet presets', () => {
  it('resnet18 is the CIFAR ResNet-18 with exactly 11,173,962 trainable parameters', () => {
    const model = buildModel('resnet18');
    expect(countParams(model).trainable).toBe(11_173_962);
    // 1x1 projection shortcuts exist only where stride or width changes: stages 2, 3 and 4.
    expect(model.layers.filter((l) => l.name.endsWith('_proj')).map((l) => l.name)).toEqual(['s2b1_proj', 's3b1_proj', 's4b1_proj']);
    expect(model.layers.some((l) => l.getClassName() === 'MaxPooling2D')).toBe(false);
    model.dispose();
  });

  it('lists every preset by name, smallest ones sized for a CPU', () => {
    expect(modelPresetNames()).toEqual(['resnet18', 'resnet18-w4', 'resnet10-w8']);
    const small = buildModel('resnet18-w4');
    expect(countParams(small).trainable).toBeLessThan(1_000_000);
    small.dispose();
    expect(MODEL_PRESETS.get('resnet10-w8')?.config.blocks).toEqual([1, 1, 1, 1]);
  });

  it('rejects an unknown preset with a USAGE error that names the valid choices', () => {
    try {
      resolvePreset('resnet50');
      expect.unreachable();
    } catch (err) {
      expect(isCifarError(err) && err.code).toBe('USAGE');
      expect(isCifarError(err) && err.hint).toContain('resnet18, resnet18-w4, resnet10-w8');
    }
    expect(() => buildModel({ baseWidth: 0, blocks: [1, 1, 1, 1] })).toThrow(/invalid model config/);
  });

  it('draws the same initial weights from the same seed, others from another, and a fresh draw per layer', () => {
    const weights = (seed: number) => {
      const model = buildModel('resnet10-w8', { seed });
      const named = new Map(model.weights.map((w) => [w.originalName, w.read().dataSync() as Float32Array]));
      model.dispose();
      return named;
    };
    const [a, again, other] = [weights(7), weights(7), weights(8)];
    expect([...again]).toEqual([...a]);
    expect(other.get('s1b1_conv1/kernel')).not.toEqual(a.get('s1b1_conv1/kernel'));
    expect(other.get('logits/kernel')).not.toEqual(a.get('logits/kernel'));
    // Two layers of one shape: not the same draw.
    expect(a.get('s1b1_conv1/kernel')!.length).toBe(a.get('s1b1_conv2/kernel')!.length);
    expect(a.get('s1b1_conv2/kernel')).not.toEqual(a.get('s1b1_conv1/kernel'));
  });

  it('maps NHWC [n, 32, 32, 3] images to 10 logits (not probabilities)', () => {
    const model = buildModel({ baseWidth: 4, blocks: [1, 1, 1, 1] });
    const logits = model.predict(tf.randomNormal([2, 32, 32, 3])) as tf.Tensor;
    expect(logits.shape).toEqual([2, 10]);
    const rowSums = tf.sum(tf.softmax(logits), 1).arraySync() as number[];
    rowSums.forEach((s) => expect(s).toBeCloseTo(1, 5));
    expect(model.outputs[0]?.sourceLayer.getConfig()['activation']).toBe('linear');
    model.dispose();
  });
});
