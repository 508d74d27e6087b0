/**
 * Training-time rewrites of a model's layers: each changes how some layers compute in a training
 * pass, never what they compute nor the model's saved form, and returns a function that undoes it.
 * The trainer applies them all (`prepareForTraining`).
 */
import * as tf from '@tensorflow/tfjs';
import type { LayersModel } from '@tensorflow/tfjs';
import { BatchNorm, batchNormFusesRelu } from './batchnorm.js';

/** What a Keras Conv2D layer keeps that its call needs (protected in tfjs-layers' types). */
interface ConvInternals {
  kernel: { read(): tf.Tensor };
  strides: [number, number];
  padding: 'same' | 'valid';
  call: (inputs: tf.Tensor | tf.Tensor[], kwargs: object) => tf.Tensor | tf.Tensor[];
}

/**
 * Makes the model's bias-free, linear Conv2D layers run as `tf.conv2d` instead of tfjs-layers'
 * `tf.fused.conv2d`, so that a gradient tape computes only the gradients it needs. The fused op's
 * gradient (a `customGrad`) computes the input gradient and the filter gradient together, even
 * where the input comes from no variable: the stem convolution then spends a whole
 * `Conv2DBackpropInput` (batch × 32 × 32 × 3) that is thrown away — about 1.5% of a ResNet-18
 * step's GPU time on the H100 (docs/gpu bench profile), 3% on lavapipe. `tf.conv2d`'s registered
 * gradient is lazy, so the tape prunes that one. Same kernels, same numbers otherwise.
 *
 * Only layers with the shapes our models use (channels last, no dilation) are changed; others
 * keep their own call. Returns a function that puts every changed layer's call back.
 */
export function useUnfusedConvolutions(model: LayersModel): () => void {
  const changed: Array<{ layer: ConvInternals; own: boolean; previous: ConvInternals['call'] }> = [];
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'Conv2D') continue;
    const config = layer.getConfig();
    const dilation = config.dilationRate;
    const plain =
      config.useBias === false &&
      (config.activation === undefined || config.activation === 'linear') &&
      config.dataFormat === 'channelsLast' &&
      (dilation === undefined || dilation === 1 || (Array.isArray(dilation) && dilation.every((d) => d === 1)));
    if (!plain) continue;
    const conv = layer as unknown as ConvInternals;
    changed.push({ layer: conv, own: Object.prototype.hasOwnProperty.call(conv, 'call'), previous: conv.call });
    conv.call = (inputs) =>
      tf.tidy(() => {
        const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor4D;
        return tf.conv2d(x, conv.kernel.read() as tf.Tensor4D, conv.strides, conv.padding);
      });
  }
  return () => {
    for (const { layer, own, previous } of changed.splice(0)) {
      if (own) layer.call = previous;
      else delete (layer as Partial<ConvInternals>).call;
    }
  };
}

/** The graph links a layer keeps (tfjs-layers' Node). */
interface GraphLayer {
  inboundNodes: Array<{ inboundLayers: unknown[] }>;
  outboundNodes: Array<{ outboundLayer: unknown }>;
  call: (inputs: tf.Tensor | tf.Tensor[], kwargs: { training?: boolean }) => tf.Tensor | tf.Tensor[];
}

/**
 * Fuses each ReLU layer into the BatchNorm right before it, in training passes on WebGPU: the
 * batch norm's normalising program applies the ReLU and its backward programs take ReLU's
 * gradient (`fuseRelu`), and the ReLU layer passes its input through. That saves the ReLU's
 * dispatch and its gradient's, and a full-size pass over memory each: in ResNet-18, the stem's and
 * each block's first batch norm (9 pairs; the others feed the residual add). Only a batch norm
 * applied once whose one consumer is a ReLU applied once to it alone (no max value) is fused;
 * inference, and backends without the WebGPU programs, run the layers as they are.
 */
export function useFusedBatchNormRelu(model: LayersModel): () => void {
  const pairs: Array<{ bn: BatchNorm; relu: GraphLayer; own: boolean; previous: GraphLayer['call'] }> = [];
  for (const layer of model.layers) {
    if (!(layer instanceof BatchNorm)) continue;
    const bn = layer as unknown as GraphLayer;
    if (bn.inboundNodes.length !== 1 || bn.outboundNodes.length !== 1) continue;
    const next = bn.outboundNodes[0]!.outboundLayer as tf.layers.Layer & GraphLayer;
    if (next.getClassName() !== 'ReLU' || next.getConfig()['maxValue'] != null) continue;
    if (next.inboundNodes.length !== 1 || next.inboundNodes[0]!.inboundLayers.length !== 1 || next.inboundNodes[0]!.inboundLayers[0] !== layer) continue;
    const previous = next.call;
    pairs.push({ bn: layer, relu: next, own: Object.prototype.hasOwnProperty.call(next, 'call'), previous });
    layer.fuseRelu = true;
    next.call = function (this: unknown, inputs, kwargs) {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor;
      // The batch norm applied it already where its WebGPU programs ran (the same test it makes).
      if (kwargs?.training === true && batchNormFusesRelu(x)) return x;
      return previous.call(next, inputs, kwargs);
    };
  }
  return () => {
    for (const { bn, relu, own, previous } of pairs.splice(0)) {
      bn.fuseRelu = false;
      if (own) relu.call = previous;
      else delete (relu as Partial<GraphLayer>).call;
    }
  };
}

/** All of this module's training-time rewrites; returns what undoes them. */
export function prepareForTraining(model: LayersModel): () => void {
  const undo = [useUnfusedConvolutions(model), useFusedBatchNormRelu(model)];
  return () => undo.reverse().forEach((f) => f());
}
