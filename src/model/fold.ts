/**
 * The inference pass of a model with each batch norm (and the ReLU after it) folded into the
 * convolution before it: one FusedConv2D with a bias and an activation per conv, instead of a
 * convolution, a FusedBatchNorm pass and a ReLU pass over every activation map.
 *
 * Folding: y = gamma * (conv(x, W) - mean) / sqrt(var + eps) + beta
 *            = conv(x, W * s) + (beta - mean * s),  s = gamma / sqrt(var + eps) per channel.
 * It is exact up to float32 rounding (outputs agree with `model.predict` to ~1e-5).
 */
import * as tf from '@tensorflow/tfjs';
import type { LayersModel, Tensor, Tensor2D, Tensor4D } from '@tensorflow/tfjs';

type Layer = tf.layers.Layer;
type Values = Map<Layer, Tensor>;

/** A model's inference pass as a function of normalised NHWC images; holds its own weights. */
export interface FoldedModel {
  /** Logits for a batch (call inside `tf.tidy` or dispose the result). */
  apply(x: Tensor4D): Tensor2D;
  dispose(): void;
}

const inputsOf = (layer: Layer): Layer[] => layer.inboundNodes[0]?.inboundLayers ?? [];

/**
 * Folds `model` (a ResNet of this package, or any graph of Conv2D, CifarBatchNorm, ReLU, Add,
 * GlobalAveragePooling2D and Dense layers) for inference. Returns null for any other layer or
 * option, so callers fall back to `model.predict`. The weights are copied: fold again after
 * the model's weights change.
 */
export function foldModel(model: LayersModel): FoldedModel | null {
  const consumers = new Map<Layer, Layer[]>();
  for (const layer of model.layers) {
    for (const input of inputsOf(layer)) consumers.set(input, [...(consumers.get(input) ?? []), layer]);
  }
  const only = (layer: Layer, className: string): Layer | undefined => {
    const c = consumers.get(layer) ?? [];
    return c.length === 1 && c[0]!.getClassName() === className ? c[0] : undefined;
  };
  const held: Tensor[] = [];
  // A copy (clone shares the data, not the variable), so disposing ours never frees the model's.
  const keep = <T extends Tensor>(t: T): T => {
    const c = tf.keep(tf.clone(t));
    held.push(c);
    return c;
  };
  const folded = new Set<Layer>();
  const ops: Array<(v: Values) => void> = [];
  const input = model.inputLayers[0];
  const output = model.outputLayers[0];
  if (model.inputLayers.length !== 1 || model.outputLayers.length !== 1 || !input || !output) return null;

  const ok = tf.tidy(() => {
    for (const layer of model.layers) {
      if (folded.has(layer) || layer === input) continue;
      const cfg = layer.getConfig() as Record<string, unknown>;
      const ins = inputsOf(layer);
      const first = ins[0];
      if (first === undefined) return false;
      switch (layer.getClassName()) {
        case 'Conv2D': {
          const dilation = ([] as unknown[]).concat(cfg['dilationRate'] ?? 1);
          if (cfg['dataFormat'] !== 'channelsLast' || cfg['activation'] !== 'linear' || dilation.some((d) => d !== 1)) return false;
          const [kernel, convBias] = layer.getWeights();
          if (kernel === undefined) return false;
          const co = kernel.shape[3]!;
          let filter: Tensor = kernel;
          let bias: Tensor = convBias ?? tf.zeros([co]);
          let out: Layer = layer;
          let activation: 'linear' | 'relu' = 'linear';
          const bn = only(layer, 'CifarBatchNorm');
          if (bn !== undefined) {
            const [gamma, beta, mean, variance] = bn.getWeights();
            if (!gamma || !beta || !mean || !variance) return false;
            const scale = tf.mul(gamma, tf.rsqrt(tf.add(variance, (bn.getConfig()['epsilon'] as number | undefined) ?? 1e-5)));
            filter = tf.mul(kernel, scale);
            bias = tf.add(beta, tf.mul(tf.sub(bias, mean), scale));
            folded.add(bn);
            out = bn;
            const relu = only(bn, 'ReLU');
            const reluCfg = relu?.getConfig() as Record<string, unknown> | undefined;
            if (relu !== undefined && reluCfg?.['maxValue'] == null) {
              folded.add(relu);
              out = relu;
              activation = 'relu';
            }
          }
          const f = keep(filter as Tensor4D);
          const b = keep(bias);
          const strides = cfg['strides'] as [number, number];
          const pad = cfg['padding'] as 'same' | 'valid';
          ops.push((v) => v.set(out, tf.fused.conv2d({ x: v.get(first) as Tensor4D, filter: f, bias: b, strides, pad, activation })));
          break;
        }
        case 'ReLU':
          if (cfg['maxValue'] != null) return false;
          ops.push((v) => v.set(layer, tf.relu(v.get(first)!)));
          break;
        case 'Add':
          ops.push((v) => v.set(layer, tf.addN(ins.map((i) => v.get(i)!))));
          break;
        case 'GlobalAveragePooling2D':
          if (cfg['dataFormat'] !== undefined && cfg['dataFormat'] !== 'channelsLast') return false;
          ops.push((v) => v.set(layer, tf.mean(v.get(first)!, [1, 2])));
          break;
        case 'Dense': {
          if (cfg['activation'] !== 'linear') return false;
          const [kernel, bias] = layer.getWeights();
          if (kernel === undefined) return false;
          const k = keep(kernel as Tensor2D);
          const b = bias === undefined ? undefined : keep(bias);
          ops.push((v) => v.set(layer, tf.fused.matMul({ a: v.get(first) as Tensor2D, b: k, bias: b })));
          break;
        }
        default:
          return false;
      }
    }
    return true;
  });
  if (!ok) {
    tf.dispose(held);
    return null;
  }
  return {
    apply(x) {
      return tf.tidy(() => {
        const values: Values = new Map([[input, x as Tensor]]);
        for (const op of ops) op(values);
        return values.get(output) as Tensor2D;
      });
    },
    dispose() {
      tf.dispose(held);
    },
  };
}

/**
 * The inference pass cifar runs everywhere (serve, predict, eval, the benchmarks): the folded
 * model where `foldModel` can fold it, else `model.predict` on the whole batch at once.
 * @example const pass = inferencePass(model); const logits = pass.apply(x); pass.dispose();
 */
export function inferencePass(model: LayersModel): FoldedModel {
  return foldModel(model) ?? { apply: (x) => model.predict(x, { batchSize: x.shape[0] }) as Tensor2D, dispose: () => {} };
}
