/**
 * The variants of our WebGPU kernels, in one place: the defaults, the environment over them (read
 * once, at load), and `configureWebGpuKernels` over both (benchmarks, tests). Programs compiled
 * after a change use the new settings; each variant has its own shader key.
 *   CIFAR_WEBGPU_TILE=64      4 x 4 outputs per thread instead of 8 x 8 (tiles up to 64 wide)
 *   CIFAR_WEBGPU_PREFETCH=1   load the next K tile into registers while computing the current one
 *   CIFAR_WEBGPU_CONV=stock   tfjs' forward convolution instead of ours
 */
export interface WebGpuKernelSettings {
  /** Largest GEMM tile side. */
  maxTileSide: 64 | 128;
  /** GEMM programs prefetch the next K tile into registers. */
  prefetch: boolean;
  /** Conv2D and FusedConv2D run our kernel (else tfjs' Conv2DMMProgram). */
  ourForward: boolean;
}

/** 128: 3% faster a ResNet-18 step than 64 on an H100 (3,319 vs 3,214 img/s at batch 256). */
export const DEFAULT_MAX_TILE_SIDE = 128;

/** The settings an environment asks for, over the defaults. */
export function settingsFromEnv(env: NodeJS.ProcessEnv): WebGpuKernelSettings {
  return {
    maxTileSide: env['CIFAR_WEBGPU_TILE'] === '64' ? 64 : DEFAULT_MAX_TILE_SIDE,
    prefetch: env['CIFAR_WEBGPU_PREFETCH'] === '1',
    ourForward: env['CIFAR_WEBGPU_CONV'] !== 'stock',
  };
}

const current = settingsFromEnv(process.env);

/** The settings in force (read on every program built and every convolution dispatched). */
export function webGpuKernelSettings(): Readonly<WebGpuKernelSettings> {
  return current;
}

/** Changes some settings; returns the previous ones, for putting them back. */
export function configureWebGpuKernels(change: Partial<WebGpuKernelSettings>): WebGpuKernelSettings {
  const before = { ...current };
  Object.assign(current, change);
  return before;
}
