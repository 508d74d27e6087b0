import * as tf from '@tensorflow/tfjs';
import type { LayersModel } from '@tensorflow/tfjs';

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
