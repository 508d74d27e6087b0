/**
 * The variants of our WebGPU kernels, in one place: the defaults, the environment over them (read
 * once, at load), and `configureWebGpuKernels` over both (benchmarks, tests). Programs compiled
 * after a change use the new settings; each variant has its own shader key.
 *   CIFAR_WEBGPU_TILE=64      4 x 4 outputs per thread instead of 8 x 8 (tiles up to 64 wide)
 *   CIFAR_WEBGPU_PREFETCH=1   load the next K tile into registers while computing the current one
 *   CIFAR_WEBGPU_CONV=stock   tfjs' forward convolution instead of ours
 *   CIFAR_WEBGPU_VEC4=1       read the staged tiles from workgroup memory four floats at a time
 *   CIFAR_WEBGPU_TK=16        128 x 128 tiles 16 deep instead of 8 where the device allows it
 */
export interface WebGpuKernelSettings {
  /** Largest GEMM tile side. */
  maxTileSide: 64 | 128;
  /** GEMM programs prefetch the next K tile into registers. */
  prefetch: boolean;
  /** Conv2D and FusedConv2D run our kernel (else tfjs' Conv2DMMProgram). */
  ourForward: boolean;
  /**
   * GEMM programs whose threads hold 4 or 8 rows and columns read them from workgroup memory as
   * vec4s: 4 loads per K step instead of 16 for an 8 x 8 block.
   */
  vec4: boolean;
  /** 128 x 128 tiles stage 16 K steps per barrier instead of 8 when the device's workgroup memory holds them. */
  deepK: boolean;
}

/** 128: 3% faster a ResNet-18 step than 64 on an H100 (3,319 vs 3,214 img/s at batch 256). */
export const DEFAULT_MAX_TILE_SIDE = 128;

/** The settings an environment asks for, over the defaults. */
export function settingsFromEnv(env: NodeJS.ProcessEnv): WebGpuKernelSettings {
  return {
    maxTileSide: env['CIFAR_WEBGPU_TILE'] === '64' ? 64 : DEFAULT_MAX_TILE_SIDE,
    prefetch: env['CIFAR_WEBGPU_PREFETCH'] === '1',
    ourForward: env['CIFAR_WEBGPU_CONV'] !== 'stock',
    vec4: env['CIFAR_WEBGPU_VEC4'] === '1',
    deepK: env['CIFAR_WEBGPU_TK'] === '16',
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
