/**
 * Registers our WebGPU convolution-gradient kernels over tfjs-backend-webgpu's, keeping the
 * stock kernels for the configurations ours do not handle (see `isSupported`).
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs';
import { type ForwardActivation, runForward } from './conv-forward.js';
import { runFilterGrad } from './conv-filter-grad.js';
import { runInputGrad } from './conv-input-grad.js';
import { NORMALIZE_BYTES, type NormalizeBytesAttrs, runNormalizeBytes } from './input.js';
import { RELU_GRAD, runReluGrad } from './relu-grad.js';
import { isSupported } from './plan.js';
import { webGpuKernelSettings, withWebGpuKernels } from './settings.js';
import type { WebGpuBackendLike } from './program.js';

type Shape4 = [number, number, number, number];
interface ConvGradAttrs {
  strides: number | [number, number];
  pad: 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}
interface KernelArgs {
  inputs: Record<string, TensorInfo>;
  backend: unknown;
  attrs: Record<string, unknown>;
}

function convInfo(inShape: Shape4, filterShape: Shape4, a: ConvGradAttrs): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(inShape, filterShape, a.strides, 1, a.pad, a.dimRoundingMode, false, tf.backend_util.convertConv2DDataFormat(a.dataFormat));
}

const usable = (c: tf.backend_util.Conv2DInfo, ...inputs: TensorInfo[]): boolean => isSupported(c) && inputs.every((t) => t.dtype === 'float32');

/**
 * Runs a gradient kernel in float32 when the float16 mode covers the forward convolutions only
 * (`matmulScope`); its programs are built inside, so their code, keys and plans are float32's.
 */
function inGradientPrecision<T>(run: () => T): T {
  const s = webGpuKernelSettings();
  return s.matmul === 'f32' || s.matmulScope === 'all' ? run() : withWebGpuKernels({ matmul: 'f32' }, run);
}

function filterGrad(stock: KernelFunc): KernelFunc {
  return ((args: KernelArgs) => {
    const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
    const attrs = args.attrs as unknown as ConvGradAttrs & { filterShape: Shape4 };
    const c = convInfo(x.shape as Shape4, attrs.filterShape, attrs);
    if (!usable(c, x, dy)) return stock(args as Parameters<KernelFunc>[0]);
    return inGradientPrecision(() => runFilterGrad(args.backend as WebGpuBackendLike, x, dy, c));
  }) as unknown as KernelFunc;
}

function inputGrad(stock: KernelFunc): KernelFunc {
  return ((args: KernelArgs) => {
    const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
    const attrs = args.attrs as unknown as ConvGradAttrs & { inputShape: Shape4 };
    const c = convInfo(attrs.inputShape, filter.shape as Shape4, attrs);
    if (!usable(c, dy, filter)) return stock(args as Parameters<KernelFunc>[0]);
    return inGradientPrecision(() => runInputGrad(args.backend as WebGpuBackendLike, dy, filter, c));
  }) as unknown as KernelFunc;
}

function forward(stock: KernelFunc): KernelFunc {
  return ((args: KernelArgs) => {
    const { x, filter, bias, preluActivationWeights } = args.inputs as { x: TensorInfo; filter: TensorInfo; bias?: TensorInfo; preluActivationWeights?: TensorInfo };
    const attrs = args.attrs as unknown as ConvGradAttrs & { dilations?: number | [number, number]; activation?: string };
    const activation = attrs.activation ?? 'linear';
    const dilations = attrs.dilations ?? 1;
    const ours =
      webGpuKernelSettings().ourForward &&
      preluActivationWeights === undefined &&
      (activation === 'linear' || activation === 'relu') &&
      (dilations === 1 || (Array.isArray(dilations) && dilations[0] === 1 && dilations[1] === 1)) &&
      (bias === undefined || (bias.shape.length === 1 && bias.dtype === 'float32'));
    if (!ours) return stock(args as Parameters<KernelFunc>[0]);
    const c = convInfo(x.shape as Shape4, filter.shape as Shape4, attrs);
    if (!usable(c, x, filter) || (bias !== undefined && bias.shape[0] !== c.outChannels)) return stock(args as Parameters<KernelFunc>[0]);
    return runForward(args.backend as WebGpuBackendLike, x, filter, bias, activation as ForwardActivation, c);
  }) as unknown as KernelFunc;
}

const OURS: Array<{ kernelName: string; make: (stock: KernelFunc) => KernelFunc }> = [
  { kernelName: 'Conv2DBackpropFilter', make: filterGrad },
  { kernelName: 'Conv2DBackpropInput', make: inputGrad },
  { kernelName: 'Conv2D', make: forward },
  { kernelName: 'FusedConv2D', make: forward },
];

/** The input transform from byte images (input.ts): a kernel of our own, with no stock one under it. */
const normalizeBytes: KernelFunc = ((args: KernelArgs) => {
  const { packed, boxes, augment } = args.inputs as { packed: TensorInfo; boxes?: TensorInfo; augment?: TensorInfo };
  return runNormalizeBytes(args.backend as WebGpuBackendLike, packed, { boxes, augment }, args.attrs as unknown as NormalizeBytesAttrs);
}) as unknown as KernelFunc;

/** ReLU's gradient in one dispatch (relu-grad.ts): a kernel of our own, run by the Relu gradient (gradients.ts). */
const reluGrad: KernelFunc = ((args: KernelArgs) => {
  const { dy, x } = args.inputs as { dy: TensorInfo; x: TensorInfo };
  return runReluGrad(args.backend as WebGpuBackendLike, dy, x);
}) as unknown as KernelFunc;

/** Kernels of our own, with no stock one under them: their callers fall back to tfjs' ops without them. */
const OWN: ReadonlyArray<[string, KernelFunc]> = [
  [NORMALIZE_BYTES, normalizeBytes],
  [RELU_GRAD, reluGrad],
];

// The stock kernels, captured once: registering twice must not wrap our own kernel.
const stockKernels = new Map<string, KernelConfig>();

/**
 * Puts our kernels in place for the `webgpu` backend (idempotent). Call after
 * tfjs-backend-webgpu has registered its kernels, i.e. after importing it.
 */
export function registerWebGpuKernels(): void {
  for (const { kernelName, make } of OURS) {
    const current = tf.getKernel(kernelName, 'webgpu');
    if (!stockKernels.has(kernelName)) {
      if (current === undefined) continue; // tfjs-backend-webgpu not loaded: nothing to fall back to
      stockKernels.set(kernelName, current);
    }
    const stock = stockKernels.get(kernelName)!;
    if (current !== undefined) tf.unregisterKernel(kernelName, 'webgpu');
    tf.registerKernel({ kernelName, backendName: 'webgpu', kernelFunc: make(stock.kernelFunc) });
  }
  for (const [kernelName, kernelFunc] of OWN) {
    if (stockKernels.size > 0 && tf.getKernel(kernelName, 'webgpu') === undefined) tf.registerKernel({ kernelName, backendName: 'webgpu', kernelFunc });
  }
}

/** Puts the stock tfjs kernels back (for comparisons in tests and benchmarks). */
export function unregisterWebGpuKernels(): void {
  for (const [kernelName, config] of stockKernels) {
    if (tf.getKernel(kernelName, 'webgpu') !== undefined) tf.unregisterKernel(kernelName, 'webgpu');
    tf.registerKernel(config);
  }
  // Without ours, the input and ReLU's gradient go through tfjs' ops again (their callers' fallbacks).
  for (const [kernelName] of OWN) if (tf.getKernel(kernelName, 'webgpu') !== undefined) tf.unregisterKernel(kernelName, 'webgpu');
}

/** Names of the kernels this module replaces. */
export const webGpuKernelNames: readonly string[] = OURS.map((k) => k.kernelName);
