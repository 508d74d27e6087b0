/**
 * The CIFAR variant of ResNet (He et al. 2016, as in kuangliu/pytorch-cifar): a 3x3 stem with no
 * max-pool, four stages of BasicBlocks at widths w, 2w, 4w, 8w (strides 1, 2, 2, 2), 1x1
 * conv + BN projection shortcuts where the stride or width changes, global average pool and a
 * dense layer. Input is NHWC [32, 32, 3] float, already normalised.
 *
 * The model outputs **logits** (no softmax): losses such as label-smoothed cross-entropy want
 * logits, and `tf.softmax(logits)` gives probabilities for prediction.
 */
import * as tf from '@tensorflow/tfjs';
import type { LayersModel, SymbolicTensor } from '@tensorflow/tfjs';
import { CifarError } from '../errors.js';
import { mulberry32 } from '../data/shuffle.js';
import { BatchNorm } from './batchnorm.js';

/** Architecture of one ResNet of this family. */
export interface ModelConfig {
  /** Channels of the first stage; later stages double it (64 = ResNet-18). */
  baseWidth: number;
  /** BasicBlocks in each of the four stages ([2, 2, 2, 2] = ResNet-18). */
  blocks: readonly [number, number, number, number];
  /** Output classes. Default 10. */
  numClasses?: number;
  /** Batch-norm moving-average momentum (Keras convention). Default 0.9. */
  bnMomentum?: number;
}

/** A named architecture that users pick with `--model`. */
export interface ModelPreset {
  name: string;
  description: string;
  config: ModelConfig;
}

const PRESET_LIST: readonly ModelPreset[] = [
  {
    name: 'resnet18',
    description: 'ResNet-18, CIFAR variant (11.2M parameters); for a GPU',
    config: { baseWidth: 64, blocks: [2, 2, 2, 2] },
  },
  {
    name: 'resnet18-w4',
    description: 'ResNet-18 at a quarter of the width (0.7M parameters); trains on a 2-core CPU',
    config: { baseWidth: 16, blocks: [2, 2, 2, 2] },
  },
  {
    name: 'resnet10-w8',
    description: 'ResNet-10 at an eighth of the width (78k parameters); smoke tests and quick runs',
    config: { baseWidth: 8, blocks: [1, 1, 1, 1] },
  },
];

/** The model presets by name, in the order the CLI lists them. */
export const MODEL_PRESETS: ReadonlyMap<string, ModelPreset> = new Map(PRESET_LIST.map((p) => [p.name, p]));

/** Names of the presets, e.g. for a commander `.choices()`. */
export function modelPresetNames(): string[] {
  return [...MODEL_PRESETS.keys()];
}

/**
 * Looks up a preset by name.
 * @throws CifarError('USAGE') naming the valid choices when the name is unknown.
 */
export function resolvePreset(name: string): ModelPreset {
  const preset = MODEL_PRESETS.get(name);
  if (preset === undefined) {
    throw new CifarError('USAGE', `unknown model '${name}'`, { hint: `valid choices: ${modelPresetNames().join(', ')}` });
  }
  return preset;
}

function validate(config: ModelConfig): void {
  const ok =
    Number.isInteger(config.baseWidth) && config.baseWidth > 0 &&
    config.blocks.length === 4 && config.blocks.every((b) => Number.isInteger(b) && b > 0) &&
    (config.numClasses === undefined || (Number.isInteger(config.numClasses) && config.numClasses > 1));
  if (!ok) {
    throw new CifarError('CONFIG_INVALID', `invalid model config ${JSON.stringify(config)}`, {
      hint: 'baseWidth and blocks must be positive integers, blocks has four entries',
    });
  }
}

export interface BuildOptions {
  /**
   * Seed of the initial weights: the same seed gives the same weights (each layer draws from its
   * own seed, taken in layer order from this one). Absent: unseeded.
   */
  seed?: number;
}

/**
 * Builds a fresh, randomly initialised ResNet of this family.
 * @param config a preset name (`'resnet18'`) or an explicit architecture.
 * @example
 * const model = buildModel('resnet18-w4', { seed: 0 });
 * const probs = tf.softmax(model.predict(x) as tf.Tensor); // the model returns logits
 */
export function buildModel(config: ModelConfig | string, options: BuildOptions = {}): LayersModel {
  const cfg = typeof config === 'string' ? resolvePreset(config).config : config;
  validate(cfg);
  const momentum = cfg.bnMomentum ?? 0.9;
  const draw = options.seed === undefined ? undefined : mulberry32(options.seed);
  const layerSeed = (): { seed?: number } => (draw ? { seed: Math.floor(draw() * 2 ** 32) } : {});
  const conv = (x: SymbolicTensor, filters: number, kernelSize: number, strides: number, name: string): SymbolicTensor =>
    tf.layers
      .conv2d({ filters, kernelSize, strides, padding: 'same', useBias: false, kernelInitializer: tf.initializers.heNormal(layerSeed()), name })
      .apply(x) as SymbolicTensor;
  const bn = (x: SymbolicTensor, name: string): SymbolicTensor => new BatchNorm({ momentum, name }).apply(x) as SymbolicTensor;
  const relu = (x: SymbolicTensor, name: string): SymbolicTensor => tf.layers.reLU({ name }).apply(x) as SymbolicTensor;

  const input = tf.input({ shape: [32, 32, 3], name: 'image' });
  let x = relu(bn(conv(input, cfg.baseWidth, 3, 1, 'stem_conv'), 'stem_bn'), 'stem_relu');
  let channels = cfg.baseWidth;
  cfg.blocks.forEach((count, stage) => {
    const width = cfg.baseWidth * 2 ** stage;
    for (let b = 0; b < count; b++) {
      const stride = stage > 0 && b === 0 ? 2 : 1;
      const p = `s${stage + 1}b${b + 1}`;
      let y = relu(bn(conv(x, width, 3, stride, `${p}_conv1`), `${p}_bn1`), `${p}_relu1`);
      y = bn(conv(y, width, 3, 1, `${p}_conv2`), `${p}_bn2`);
      const shortcut = stride !== 1 || channels !== width ? bn(conv(x, width, 1, stride, `${p}_proj`), `${p}_proj_bn`) : x;
      x = relu(tf.layers.add({ name: `${p}_add` }).apply([y, shortcut]) as SymbolicTensor, `${p}_out`);
      channels = width;
    }
  });
  const pooled = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(x) as SymbolicTensor;
  const logits = tf.layers.dense({ units: cfg.numClasses ?? 10, kernelInitializer: tf.initializers.glorotUniform(layerSeed()), name: 'logits' }).apply(pooled) as SymbolicTensor;
  return tf.model({ inputs: input, outputs: logits, name: typeof config === 'string' ? config : 'resnet' });
}

/** Number of trainable and non-trainable scalars in a model. */
export function countParams(model: LayersModel): { trainable: number; nonTrainable: number } {
  const sum = (ws: { shape: readonly (number | null)[] }[]): number =>
    ws.reduce((n, w) => n + w.shape.reduce<number>((a, d) => a * (d ?? 0), 1), 0);
  return { trainable: sum(model.trainableWeights), nonTrainable: sum(model.nonTrainableWeights) };
}
