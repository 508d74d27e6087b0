/**
 * Training-time rewrites of a model's layers: each changes how some layers compute in a training
 * pass, never what they compute nor the model's saved form, and returns a function that undoes it.
 * The trainer applies them all (`prepareForTraining`).
 */
import * as tf from '@tensorflow/tfjs';
import type { LayersModel } from '@tensorflow/tfjs';
import { reluGradient } from '../backend/gradients.js';
import { type WebGpuBackendLike, trackInfo } from '../backend/webgpu-kernels/program.js';
import { runAddRelu } from '../backend/webgpu-kernels/relu-grad.js';
import { BatchNorm, batchNormFusesRelu } from './batchnorm.js';

/** A layer's `call` (tfjs-layers' signature). */
type Call = (inputs: tf.Tensor | tf.Tensor[], kwargs: { training?: boolean }) => tf.Tensor | tf.Tensor[];

/** The graph links and the call a layer keeps (tfjs-layers' Node, and members protected in its types). */
interface GraphLayer {
  inboundNodes: Array<{ inboundLayers: unknown[] }>;
  outboundNodes: Array<{ outboundLayer: unknown }>;
  call: Call;
}

/** Gives `layer` a call of its own made from its current one; returns what puts the current one back. */
function replaceCall(layer: unknown, make: (previous: Call) => Call): () => void {
  const target = layer as GraphLayer;
  const own = Object.prototype.hasOwnProperty.call(target, 'call');
  const previous = target.call;
  target.call = make((inputs, kwargs) => previous.call(target, inputs, kwargs));
  return () => {
    if (own) target.call = previous;
    else delete (target as Partial<GraphLayer>).call;
  };
}

/** The ReLU layer (no max value) that is `layer`'s only consumer, applied once to `layer` alone, if there is one. */
function soleReluAfter(layer: tf.layers.Layer): (tf.layers.Layer & GraphLayer) | undefined {
  const g = layer as unknown as GraphLayer;
  if (g.inboundNodes.length !== 1 || g.outboundNodes.length !== 1) return undefined;
  const next = g.outboundNodes[0]!.outboundLayer as tf.layers.Layer & GraphLayer;
  if (next.getClassName() !== 'ReLU' || next.getConfig()['maxValue'] != null) return undefined;
  const inbound = next.inboundNodes;
  return inbound.length === 1 && inbound[0]!.inboundLayers.length === 1 && inbound[0]!.inboundLayers[0] === layer ? next : undefined;
}

const first = (inputs: tf.Tensor | tf.Tensor[]): tf.Tensor => (Array.isArray(inputs) ? inputs[0]! : inputs);

/** What a Keras Conv2D layer keeps that its call needs (protected in tfjs-layers' types). */
interface ConvInternals {
  kernel: { read(): tf.Tensor };
  strides: [number, number];
  padding: 'same' | 'valid';
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
  const undo: Array<() => void> = [];
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
    undo.push(replaceCall(layer, () => (inputs) => tf.tidy(() => tf.conv2d(first(inputs) as tf.Tensor4D, conv.kernel.read() as tf.Tensor4D, conv.strides, conv.padding))));
  }
  return () => undo.splice(0).forEach((f) => f());
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
  const undo: Array<() => void> = [];
  for (const layer of model.layers) {
    if (!(layer instanceof BatchNorm)) continue;
    const relu = soleReluAfter(layer);
    if (!relu) continue;
    layer.fuseRelu = true;
    // The batch norm applied it already where its WebGPU programs ran (the same test it makes).
    const restore = replaceCall(relu, (previous) => (inputs, kwargs) => (kwargs?.training === true && batchNormFusesRelu(first(inputs)) ? first(inputs) : previous(inputs, kwargs)));
    undo.push(() => {
      layer.fuseRelu = false;
      restore();
    });
  }
  return () => undo.splice(0).forEach((f) => f());
}

/** Whether `useFusedAddRelu`'s fused add can run for x: WebGPU, float32. */
function addFusesRelu(x: tf.Tensor): boolean {
  return tf.getBackend() === 'webgpu' && x.dtype === 'float32';
}

/** relu(a + b) in one dispatch, with ReLU's gradient (one dispatch) going to both inputs. */
function fusedAddRelu(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const backend = tf.backend() as unknown as WebGpuBackendLike;
  const f = tf.customGrad((...args: unknown[]) => {
    const [x, y, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    const value = trackInfo(runAddRelu(backend, x, y));
    save([value]);
    const gradFunc = (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]): tf.Tensor[] => {
      const g = reluGradient(dy as tf.Tensor, saved[0]!);
      // A tensor of its own for each input (the same data): tfjs' tape may dispose one.
      return [g, tf.clone(g)];
    };
    return { value, gradFunc };
  });
  return f(a, b);
}

/**
 * Fuses each ReLU layer into the two-input Add right before it (a residual block's end: 8 in
 * ResNet-18), in training passes on WebGPU: the add computes relu(a + b) in one dispatch instead
 * of two, and its gradient is ReLU's for both inputs (the add's own is free). Only an Add of two
 * same-shaped inputs, applied once, whose one consumer is a ReLU applied once to it alone (no
 * max value). The ReLU layer passes its input through; inference and other backends run the
 * layers as they are.
 */
export function useFusedAddRelu(model: LayersModel): () => void {
  const undo: Array<() => void> = [];
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'Add' || (layer as unknown as GraphLayer).inboundNodes[0]?.inboundLayers.length !== 2) continue;
    const relu = soleReluAfter(layer);
    if (!relu) continue;
    // The outputs the add made with the ReLU applied: exactly those the ReLU passes through.
    const fused = new WeakSet<tf.Tensor>();
    undo.push(
      replaceCall(layer, (previous) => (inputs, kwargs) => {
        const [a, b] = (Array.isArray(inputs) ? inputs : [inputs]) as tf.Tensor[];
        if (kwargs?.training !== true || !a || !b || !addFusesRelu(a) || b.dtype !== a.dtype || b.shape.join() !== a.shape.join()) return previous(inputs, kwargs);
        const out = fusedAddRelu(a, b);
        fused.add(out);
        return out;
      }),
      replaceCall(relu, (previous) => (inputs, kwargs) => (fused.has(first(inputs)) ? first(inputs) : previous(inputs, kwargs))),
    );
  }
  return () => undo.splice(0).forEach((f) => f());
}

/** All of this module's training-time rewrites; returns what undoes them. */
export function prepareForTraining(model: LayersModel): () => void {
  const undo = [useUnfusedConvolutions(model), useFusedBatchNormRelu(model), useFusedAddRelu(model)];
  return () => undo.reverse().forEach((f) => f());
}
