/**
 * The variants of our WebGPU kernels, in one place: the defaults, the environment over them (read
 * once, at load), and `configureWebGpuKernels` over both (benchmarks, tests). Programs compiled
 * after a change use the new settings; each variant has its own shader key.
 *
 * The defaults are the fastest combination measured on an H100 (bench:gpu, ResNet-18 training
 * step at batch 256): 128-wide tiles with vec4 reads, 16 deep, prefetching, vec4 loads 5,693-5,724
 * img/s (2026-11-27; 4,633 with scalar loads in the same call); without vec4 loads (2026-11-26,
 * one run) 4,535, and from there without prefetch 4,254, 8 deep 3,972, scalar reads 3,368.
 *   CIFAR_WEBGPU_TILE=64      4 x 4 outputs per thread instead of 8 x 8 (tiles up to 64 wide)
 *   CIFAR_WEBGPU_PREFETCH=0   no prefetch of the next K tile into registers during the current one
 *   CIFAR_WEBGPU_CONV=stock   tfjs' forward convolution instead of ours
 *   CIFAR_WEBGPU_VEC4=0       read the staged tiles from workgroup memory one float at a time
 *   CIFAR_WEBGPU_TK=8         128 x 128 tiles 8 deep, as on devices with 16 KiB of workgroup memory
 *   CIFAR_WEBGPU_DX=forward   stride-1 input gradients as our forward convolution of dy with the
 *                             filter flipped and transposed (one small transpose per call)
 *   CIFAR_WEBGPU_SPLIT_FORWARD=1  split the reduction of linear, bias-free forward convolutions
 *                             whose output alone gives few workgroups (ResNet's last stages)
 *   CIFAR_WEBGPU_LOADS=scalar load the operands from memory one float at a time, instead of four
 *                             at a time where the channel counts are multiples of 4 (a quarter
 *                             of the loads and of their index arithmetic)
 *   CIFAR_WEBGPU_MATMUL=tensor-cores  mixed precision: the convolutions' GEMMs multiply float16
 *                             copies of their operands on the tensor cores (WGSL subgroup
 *                             matrices, 16 x 16 x 16, float32 accumulators; dy scaled by a power
 *                             of two first), where the adapter offers them (see matrix.ts)
 *   CIFAR_WEBGPU_MATMUL=auto  (the default, also when unset) the tensor cores on a hardware
 *                             adapter that offers them, float32 elsewhere (software adapters,
 *                             whose emulated matrices are slower than their float32): 9,228
 *                             against 6,401 img/s on the H100 (2026-11-27, tenth session)
 *   CIFAR_WEBGPU_MATMUL=f32   float32 fused multiply-adds everywhere
 *   CIFAR_WEBGPU_MATRIX_TK=32 those float16 tiles 32 deep instead of 16 (half the barriers per
 *                             multiply-accumulate; 25 instead of 17 KiB of workgroup memory)
 *   CIFAR_WEBGPU_MATMUL=emulated      the same programs with the subgroup-matrix operations
 *                             written out in plain WGSL: for checking them on a device without
 *                             subgroup matrices (lavapipe), not for speed
 */
import { CifarError } from '../../errors.js';

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
  /** Stride-1 input gradients run as our forward convolution (flipped, transposed filter). */
  inputGradForward: boolean;
  /** Linear, bias-free forward convolutions split K when their tiles give few workgroups. */
  splitForward: boolean;
  /** GEMM programs load their operands from memory as vec4s where both channel counts are multiples of 4. */
  wideLoads: boolean;
  /** How the convolutions' GEMMs multiply: float32 FMAs, or float16 operands on subgroup matrices (real or emulated). */
  matmul: MatmulMode;
  /**
   * CIFAR_WEBGPU_MATMUL was `auto` (or unset): the backend's start settles `matmul` on the
   * tensor cores where a hardware adapter offers them (`autoMatmul`), float32 until then.
   */
  matmulAuto: boolean;
  /** K depth of the float16 tiles (two subgroup-matrix steps per barrier at 32). */
  matrixDepth: 16 | 32;
  /**
   * How float16 gradient GEMMs find dy's power-of-two scale (matrix.ts): `shared`, a reduction of
   * dy's partial maxima in workgroup memory; `registers` (CIFAR_WEBGPU_MATRIX_SCALE=registers),
   * every invocation reducing them all itself, with no workgroup memory, barrier or uniform load;
   * `off` (CIFAR_WEBGPU_MATRIX_SCALE=0), no scaling, where small loss gradients vanish in float16.
   * The last two are there to find out, on a device whose float16 gradients disagree with
   * float32 (the H100 of 2026-11-27), whether the scaling is the cause, and which part of it.
   */
  matrixScale: MatrixScaleMode;
  /**
   * Which convolutions the float16 mode (`matmul`) covers: `all`, or `forward` only, the
   * gradients in float32 (CIFAR_WEBGPU_MATMUL_SCOPE=forward; also what the start-up check
   * settles on where the forward convolutions agree with float32 and the gradients do not).
   */
  matmulScope: 'all' | 'forward';
}

export type MatrixScaleMode = 'shared' | 'registers' | 'off';

/** `f32`: float32 fused multiply-adds; `tensor-cores`: float16 subgroup matrices; `emulated`: those written out in plain WGSL. */
export type MatmulMode = 'f32' | 'tensor-cores' | 'emulated';
export const MATMUL_MODES: readonly MatmulMode[] = ['f32', 'tensor-cores', 'emulated'];
/** What CIFAR_WEBGPU_MATMUL may ask for: a mode, or `auto` (the default) for the backend's start to choose. */
export type MatmulRequest = 'auto' | MatmulMode;
export const MATMUL_REQUESTS: readonly MatmulRequest[] = ['auto', ...MATMUL_MODES];

const parseMatmul = (value: string | undefined): MatmulRequest | undefined =>
  value === undefined || value === '' ? 'auto' : (MATMUL_REQUESTS as readonly string[]).includes(value) ? (value as MatmulRequest) : undefined;

/**
 * CIFAR_WEBGPU_MATMUL as a request (auto when unset). The settings are read when this module
 * loads, where a bad value becomes f32; the WebGPU probe calls this to stop with a clear error instead.
 * @throws CifarError('USAGE') for a value that is not a request.
 */
export function matmulFromEnv(env: NodeJS.ProcessEnv): MatmulRequest {
  const value = env['CIFAR_WEBGPU_MATMUL'];
  const request = parseMatmul(value);
  if (request === undefined) throw new CifarError('USAGE', `CIFAR_WEBGPU_MATMUL: "${value}" is not one of ${MATMUL_REQUESTS.join(', ')}`);
  return request;
}

/** 128: 3% faster a ResNet-18 step than 64 on an H100 (3,319 vs 3,214 img/s at batch 256). */
export const DEFAULT_MAX_TILE_SIDE = 128;

/** The settings of our own kernels' code (all but the choice of tfjs' forward convolution). */
export type KernelVariant = Omit<WebGpuKernelSettings, 'ourForward'>;

/** The settings an environment asks for, over the defaults. */
export function settingsFromEnv(env: NodeJS.ProcessEnv): WebGpuKernelSettings {
  const matmulRequest = parseMatmul(env['CIFAR_WEBGPU_MATMUL']);
  return {
    maxTileSide: env['CIFAR_WEBGPU_TILE'] === '64' ? 64 : DEFAULT_MAX_TILE_SIDE,
    prefetch: env['CIFAR_WEBGPU_PREFETCH'] !== '0',
    ourForward: env['CIFAR_WEBGPU_CONV'] !== 'stock',
    vec4: env['CIFAR_WEBGPU_VEC4'] !== '0',
    deepK: env['CIFAR_WEBGPU_TK'] !== '8',
    inputGradForward: env['CIFAR_WEBGPU_DX'] === 'forward',
    splitForward: env['CIFAR_WEBGPU_SPLIT_FORWARD'] === '1',
    wideLoads: env['CIFAR_WEBGPU_LOADS'] !== 'scalar',
    matmul: matmulRequest === undefined || matmulRequest === 'auto' ? 'f32' : matmulRequest,
    matmulAuto: matmulRequest === 'auto',
    matrixDepth: env['CIFAR_WEBGPU_MATRIX_TK'] === '32' ? 32 : 16,
    matrixScale: env['CIFAR_WEBGPU_MATRIX_SCALE'] === '0' ? 'off' : env['CIFAR_WEBGPU_MATRIX_SCALE'] === 'registers' ? 'registers' : 'shared',
    matmulScope: env['CIFAR_WEBGPU_MATMUL_SCOPE'] === 'forward' ? 'forward' : 'all',
  };
}

const current = settingsFromEnv(process.env);

/** The settings in force (read on every program built and every convolution dispatched). */
export function webGpuKernelSettings(): Readonly<WebGpuKernelSettings> {
  return current;
}

/**
 * The variant in words, for start lines and reports.
 * @example describeWebGpuKernels(settingsFromEnv({})) // 'tiles up to 128, prefetch, vec4, 16 deep, vec4 loads'
 */
export function describeWebGpuKernels(s: KernelVariant): string {
  const on: Array<[boolean, string]> = [
    [s.prefetch, 'prefetch'],
    [s.vec4, 'vec4'],
    [s.deepK, '16 deep'],
    [s.inputGradForward, 'dx as forward'],
    [s.splitForward, 'split forward'],
    [s.wideLoads, 'vec4 loads'],
    [s.matmul === 'tensor-cores', 'float16 tensor cores'],
    [s.matmul === 'emulated', 'float16 subgroup matrices emulated'],
    [s.matmul !== 'f32' && s.matmulScope === 'forward', 'for the forward convolutions only'],
    [s.matmul !== 'f32' && s.matrixDepth === 32, 'float16 tiles 32 deep'],
    [s.matmul !== 'f32' && s.matrixScale === 'off', 'dy unscaled'],
    [s.matmul !== 'f32' && s.matrixScale === 'registers', "dy's scale reduced in registers"],
  ];
  return [`tiles up to ${s.maxTileSide}`, ...on.filter(([set]) => set).map(([, name]) => name)].join(', ');
}

/** Changes some settings; returns the previous ones, for putting them back. */
export function configureWebGpuKernels(change: Partial<WebGpuKernelSettings>): WebGpuKernelSettings {
  const before = { ...current };
  Object.assign(current, change);
  return before;
}

/**
 * Runs `run` with `change` over the settings, then puts back what it changed (when its promise
 * settles, for an async `run`), e.g. the float32 reference of a float16 check.
 */
export function withWebGpuKernels<T>(change: Partial<WebGpuKernelSettings>, run: () => T): T {
  const before = configureWebGpuKernels(change);
  const restore = (): void => {
    configureWebGpuKernels(Object.fromEntries(Object.keys(change).map((k) => [k, before[k as keyof WebGpuKernelSettings]])));
  };
  let result: T;
  try {
    result = run();
  } catch (err) {
    restore();
    throw err;
  }
  if (result instanceof Promise) return result.finally(restore) as T;
  restore();
  return result;
}
