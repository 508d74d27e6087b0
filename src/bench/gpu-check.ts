/**
 * On-device check of our WebGPU convolution-gradient kernels against tfjs' stock ones, for every
 * convolution of a ResNet preset: the GPU host has no test runner, so bench:gpu runs this first.
 */
import * as tf from '@tensorflow/tfjs';
import { convKernelOutputs, relativeDisagreement } from '../backend/webgpu-kernels/matrix-check.js';
import { registerWebGpuKernels, unregisterWebGpuKernels } from '../backend/webgpu-kernels/register.js';
import { buildModel } from '../model/resnet.js';

type Shape4 = [number, number, number, number];

export interface ConvCheck {
  /** e.g. "3x3 s2 16x16x64 -> 128". */
  conv: string;
  /** max |ours - stock| / max |stock|. */
  filterError: number;
  inputError: number;
  /** The forward convolution with bias and ReLU (FusedConv2D). */
  forwardError: number;
}

/** The distinct convolutions of a preset: input shape (per image), filter and stride. */
function convolutions(preset: string): Array<{ x: [number, number, number]; filter: Shape4; stride: number }> {
  const model = buildModel(preset);
  const seen = new Map<string, { x: [number, number, number]; filter: Shape4; stride: number }>();
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'Conv2D') continue;
    const cfg = layer.getConfig() as { kernelSize: number[]; strides: number[]; filters: number };
    const inShape = (layer.input as tf.SymbolicTensor).shape as number[];
    const x: [number, number, number] = [inShape[1]!, inShape[2]!, inShape[3]!];
    const filter: Shape4 = [cfg.kernelSize[0]!, cfg.kernelSize[1]!, x[2], cfg.filters];
    seen.set(`${x}/${filter}/${cfg.strides[0]}`, { x, filter, stride: cfg.strides[0]! });
  }
  model.dispose();
  return [...seen.values()];
}

/**
 * Runs the forward pass and both gradients of every convolution of `preset` at `batch` with our kernels and with the
 * stock ones, on the current (webgpu) backend. Leaves our kernels registered.
 */
export async function checkConvKernels(preset: string, batch: number): Promise<ConvCheck[]> {
  const checks: ConvCheck[] = [];
  for (const { x: xs, filter, stride } of convolutions(preset)) {
    const info = tf.backend_util.computeConv2DInfo([batch, ...xs], filter, stride, 1, 'same');
    const x = tf.randomNormal([batch, ...xs]) as tf.Tensor4D;
    const dy = tf.randomNormal([batch, info.outHeight, info.outWidth, filter[3]]) as tf.Tensor4D;
    const w = tf.randomNormal(filter) as tf.Tensor4D;
    registerWebGpuKernels();
    const bias = tf.linspace(-1, 1, w.shape[3]) as tf.Tensor1D;
    const ours = await convKernelOutputs(x, dy, w, stride, bias);
    unregisterWebGpuKernels();
    const stock = await convKernelOutputs(x, dy, w, stride, bias);
    registerWebGpuKernels();
    tf.dispose([x, dy, w, bias]);
    checks.push({
      conv: `${filter[0]}x${filter[1]} s${stride} ${xs.join('x')} -> ${filter[3]}`,
      filterError: relativeDisagreement(ours[0]!, stock[0]!),
      inputError: relativeDisagreement(ours[1]!, stock[1]!),
      forwardError: relativeDisagreement(ours[2]!, stock[2]!),
    });
  }
  return checks;
}
