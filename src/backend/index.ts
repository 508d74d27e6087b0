/**
 * Choosing and starting a tfjs backend: `tensorflow` (tfjs-node, if the user installed it),
 * `webgpu` (Dawn), `wasm` (XNNPACK, SIMD, one thread) or `cpu` (plain JS).
 */
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { CifarError } from '../errors.js';
import { registerFastGradients } from './gradients.js';
import { registerWasmKernels } from './wasm-kernels.js';
import { registerWebGpuKernels } from './webgpu-kernels/register.js';
import { matrixCheckVerdict, resetMatrixCheck, runMatrixCheck } from './webgpu-kernels/matrix-check.js';
import { autoMatmul, matrixSupport, pickMatrixSyntax, setMatmulFallback, setMatmulTried, setMatrixHardwareSide, setMatrixSubgroupSize, setMatrixSyntax } from './webgpu-kernels/matrix.js';
import { configureWebGpuKernels, describeWebGpuKernels, webGpuKernelSettings } from './webgpu-kernels/settings.js';
import { installStepReuse } from './webgpu-bind-groups.js';
import { type AdapterCapabilities, type AdapterClass, type WebGpuProbe, installWebGpu, nullBackendIsAllowed, probeWebGpu, watchWebGpuErrors } from './webgpu.js';

export const BACKEND_NAMES = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const;
export type BackendRequest = (typeof BACKEND_NAMES)[number];
export type BackendName = Exclude<BackendRequest, 'auto'>;

/** The backend in use and a one-line reason, e.g. "wasm (SIMD): no WebGPU adapter found". */
export interface BackendInfo {
  name: BackendName;
  reason: string;
}

type Attempt = { ok: true; detail: string } | { ok: false; reason: string };
/** `auto` picks only what is worth using; `requested` starts whatever works. */
export type StartMode = 'auto' | 'requested';

const require = createRequire(import.meta.url);

async function startTensorflow(): Promise<Attempt> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      // Never a dependency: a variable specifier keeps bundlers and tsc from resolving it.
      const specifier: string = pkg;
      await import(specifier);
    } catch {
      continue;
    }
    // tfjs-node registers into its own copy of tfjs-core when versions differ from ours.
    if (tf.findBackendFactory('tensorflow') === null) {
      return { ok: false, reason: `${pkg} is installed but uses a different @tensorflow/tfjs-core` };
    }
    if (await tf.setBackend('tensorflow')) return { ok: true, detail: pkg };
    return { ok: false, reason: `${pkg} failed to initialise` };
  }
  return { ok: false, reason: 'tfjs-node not installed' };
}

// One probe per process: asking Dawn again gives the same adapter, and `auto` must not install
// the WebGPU backend just to learn that its adapter is software.
let webGpuProbe: Promise<WebGpuProbe> | undefined;

/**
 * The decision `auto` makes about a probed adapter, as a pure function: a software rasteriser
 * (lavapipe, SwiftShader) runs shaders on the CPU, far slower than wasm, so only an explicit
 * `--backend webgpu` may use it.
 * @example webGpuVerdict({ name: 'llvmpipe: Mesa 25.0.7', shortName: 'llvmpipe', software: true }, 'auto')
 * // { use: false, reason: 'WebGPU adapter is a software rasteriser (llvmpipe), not a GPU' }
 */
export function webGpuVerdict(adapter: AdapterClass, mode: StartMode, nullAllowed = nullBackendIsAllowed()): { use: true; detail: string } | { use: false; reason: string } {
  if (adapter.runsNothing && !nullAllowed) {
    return { use: false, reason: "Dawn's null backend (CIFAR_WEBGPU_DAWN_BACKEND=null) runs no shader; only bench:gpu measures with it" };
  }
  if (adapter.software && mode === 'auto') {
    return { use: false, reason: `WebGPU adapter is a software rasteriser (${adapter.shortName}), not a GPU` };
  }
  return { use: true, detail: `Dawn, ${adapter.name}${adapter.software ? ', software adapter' : ''}${adapter.runsNothing ? ': runs no shader, the CPU side only' : ''}` };
}

/**
 * On Linux a hardware GPU shows up as a DRM render node (AMD, Intel, Nouveau), an NVIDIA device
 * or WSL's /dev/dxg. Without one, Dawn can only find a software adapter, and asking it prints
 * native warnings on stderr that `auto` has no reason to show.
 * @example hasGpuDeviceNode(['null', 'nvidia0', 'nvidiactl']) // true
 */
export function hasGpuDeviceNode(devEntries: readonly string[], driEntries: readonly string[] = []): boolean {
  return devEntries.some((e) => /^nvidia\d+$/.test(e) || e === 'dxg') || driEntries.some((e) => e.startsWith('renderD'));
}

function linuxGpuDevicePresent(): boolean {
  const list = (dir: string): string[] => {
    try {
      return readdirSync(dir);
    } catch {
      return [];
    }
  };
  return hasGpuDeviceNode(list('/dev'), list('/dev/dri'));
}

async function startWebGpu(mode: StartMode): Promise<Attempt> {
  if (mode === 'auto' && process.platform === 'linux' && webGpuProbe === undefined && !linuxGpuDevicePresent()) {
    return { ok: false, reason: 'no GPU for WebGPU (no /dev/dri/renderD* or /dev/nvidia* device)' };
  }
  webGpuProbe ??= probeWebGpu();
  const probe = await webGpuProbe;
  if (!probe.ok) return probe;
  const verdict = webGpuVerdict(probe.adapter, mode);
  if (!verdict.use) return { ok: false, reason: verdict.reason };
  if (tf.findBackendFactory('webgpu') === null) {
    await installWebGpu(probe.gpu);
    if (tf.findBackendFactory('webgpu') === null) return { ok: false, reason: 'tfjs-backend-webgpu did not register' };
  }
  registerWebGpuKernels();
  try {
    if (await tf.setBackend('webgpu')) {
      const device = (tf.backend() as unknown as { device?: { features?: Iterable<string>; limits?: Record<string, number> } }).device;
      watchWebGpuErrors(device);
      // CIFAR_WEBGPU_BIND_GROUPS=fresh: a new bind group for every dispatch, as tfjs does (for A/B runs).
      if (process.env['CIFAR_WEBGPU_BIND_GROUPS'] !== 'fresh') installStepReuse();
      const fallback = await settleMatmul(probe, device);
      // Which of our kernel variants runs (CIFAR_WEBGPU_*), so that a log says what it measured.
      const kernels = webGpuKernelSettings();
      return { ok: true, detail: `${verdict.detail}; kernels: ${describeWebGpuKernels(kernels)}${kernels.ourForward ? '' : ", tfjs' forward conv"}${fallback}` };
    }
  } catch (err) {
    return { ok: false, reason: `WebGPU backend failed to start (${(err as Error).message.split('\n')[0]})` };
  }
  return { ok: false, reason: 'WebGPU backend failed to start' };
}

/**
 * Float16 GEMMs (CIFAR_WEBGPU_MATMUL) need what `matrixSupport` lists of the device, and for the
 * tensor cores a WGSL compiler that takes one of the subgroup-matrix syntaxes (`pickMatrixSyntax`:
 * Dawn changed how the layout is written), and float16 convolutions that agree with the float32
 * ones on the device (`runMatrixCheck`: on the H100 of the sixth session the tensor cores'
 * gradients did not): without them the float32 kernels run, and the start line says why. `auto`
 * (the default) tries the tensor cores where a hardware adapter offers them (`autoMatmul`), and
 * says nothing where it does not.
 * @returns '' or the reason, as a suffix of the start line.
 */
async function settleMatmul(probe: AdapterCapabilities & { adapter: AdapterClass }, device: { features?: Iterable<string>; limits?: Record<string, number> } | undefined): Promise<string> {
  setMatmulFallback(undefined);
  resetMatrixCheck();
  const capabilities = { ...probe, features: device?.features ?? [], limits: { maxComputeWorkgroupStorageSize: device?.limits?.['maxComputeWorkgroupStorageSize'] } };
  const tensorCores = matrixSupport('tensor-cores', capabilities);
  if (webGpuKernelSettings().matmulAuto) configureWebGpuKernels({ matmul: autoMatmul(probe.adapter, tensorCores) });
  const mode = webGpuKernelSettings().matmul;
  setMatmulTried(mode);
  if (mode === 'f32') return '';
  const support = mode === 'tensor-cores' ? tensorCores : matrixSupport(mode, capabilities);
  let reason = support.reason;
  if (support.ok && mode === 'tensor-cores') {
    setMatrixHardwareSide(support.side ?? 16);
    const picked = await pickMatrixSyntax(device as unknown as Parameters<typeof pickMatrixSyntax>[0]);
    if ('syntax' in picked) setMatrixSyntax(picked.syntax);
    else reason = `the WGSL compiler takes neither subgroup-matrix syntax (${picked.error})`;
  }
  if (reason === undefined) {
    setMatrixSubgroupSize(support.subgroupSize!);
    try {
      const verdict = matrixCheckVerdict(await runMatrixCheck());
      if (verdict.scope === 'all') return '';
      if (verdict.scope === 'forward') {
        configureWebGpuKernels({ matmulScope: 'forward' });
        const note = `float16 ${mode} ${verdict.note}`;
        setMatmulFallback(note);
        return ` (${note})`;
      }
      reason = verdict.reason;
    } catch (err) {
      reason = `its check against the float32 kernels failed (${(err as Error).message.split('\n')[0]})`;
    }
  }
  configureWebGpuKernels({ matmul: 'f32' });
  const why = `float16 ${mode} not available: ${reason}`;
  setMatmulFallback(why);
  return ` (${why}; float32 kernels)`;
}

let wasmConfigured = false;

async function startWasm(): Promise<Attempt> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  if (!wasmConfigured) {
    // Load the .wasm binaries from the installed package, not from a CDN; one thread, since
    // the threaded build needs workers and cross-origin isolation that Node does not give it.
    const dist = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    wasm.setWasmPaths(dist + path.sep);
    wasmConfigured = true;
  }
  registerWasmKernels();
  try {
    if (!(await tf.setBackend('wasm'))) return { ok: false, reason: 'wasm backend failed to start' };
  } catch (err) {
    return { ok: false, reason: `wasm backend failed to start (${(err as Error).message.split('\n')[0]})` };
  }
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  return { ok: true, detail: simd ? 'SIMD' : 'no SIMD' };
}

async function startCpu(): Promise<Attempt> {
  return (await tf.setBackend('cpu')) ? { ok: true, detail: 'plain JS' } : { ok: false, reason: 'cpu backend failed' };
}

const STARTERS: Record<BackendName, (mode: StartMode) => Promise<Attempt>> = {
  tensorflow: startTensorflow,
  webgpu: startWebGpu,
  wasm: startWasm,
  cpu: startCpu,
};
const AUTO_ORDER: BackendName[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

/**
 * Starts a backend and returns its name with a one-line reason for the choice.
 * `auto` tries tensorflow, webgpu (a hardware adapter only), wasm, then cpu; a named backend
 * that cannot start throws `CifarError('BACKEND_UNAVAILABLE')`. An explicit `webgpu` accepts a
 * software adapter (lavapipe) and says so in the reason.
 * @example
 * const { name, reason } = await initBackend('auto'); // { name: 'wasm', reason: 'wasm (SIMD): no WebGPU adapter found' }
 */
export async function initBackend(request: BackendRequest): Promise<BackendInfo> {
  if (!(BACKEND_NAMES as readonly string[]).includes(request)) {
    throw new CifarError('USAGE', `unknown backend '${request}'`, { hint: `valid choices: ${BACKEND_NAMES.join(', ')}` });
  }
  registerFastGradients();
  // Production mode skips per-op debug checks and silences tfjs' console banners (the
  // "install tfjs-node" notice): the library must not print.
  tf.enableProdMode();
  if (request !== 'auto') {
    const attempt = await STARTERS[request]('requested');
    if (!attempt.ok) {
      throw new CifarError('BACKEND_UNAVAILABLE', `backend ${request} unavailable: ${attempt.reason}`, {
        hint: 'use --backend auto to pick the best available one',
      });
    }
    return { name: request, reason: `${request} (${attempt.detail}): requested` };
  }
  const skipped: string[] = [];
  for (const name of AUTO_ORDER) {
    const attempt = await STARTERS[name]('auto');
    if (attempt.ok) {
      // tfjs-node being absent is the normal case; mention only what is worth knowing.
      const why = skipped.filter((r) => r !== 'tfjs-node not installed');
      const reason = why.length > 0 ? why.join('; ') : name === 'tensorflow' ? 'fastest available' : 'tfjs-node not installed';
      return { name, reason: `${name} (${attempt.detail}): ${reason}` };
    }
    skipped.push(attempt.reason);
  }
  throw new CifarError('BACKEND_UNAVAILABLE', `no tfjs backend could start: ${skipped.join('; ')}`);
}

export { registerWasmKernels } from './wasm-kernels.js';
export { registerFastGradients } from './gradients.js';
