/**
 * Starting tfjs-backend-webgpu in Node through Dawn (the `webgpu` package), or saying in one
 * line why it cannot start. See /work/shared/gpu/README.md for the runtime this expects.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { CifarError } from '../errors.js';
import { withEnables } from './webgpu-kernels/matrix.js';
import { matmulFromEnv } from './webgpu-kernels/settings.js';

const require = createRequire(import.meta.url);
/** The Dawn toggles that CIFAR_WEBGPU_MATMUL=tensor-cores and auto (the default) add. */
export const TENSOR_CORE_TOGGLES = ['allow_unsafe_apis', 'vulkan_enable_f16_on_nvidia'];
/** Features asked of every device when the adapter offers them, for the float16 programs (matrix.ts). */
const OPTIONAL_FEATURES = ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'];
/**
 * Storage buffers per shader stage asked of every device, up to what the adapter offers (WebGPU's
 * default is 8, which tfjs keeps): the in-place SGD binds three a tensor, so 24 lets it update 8
 * tensors a dispatch instead of 2 (sgd.ts' `sgdGroupSize`).
 */
export const STORAGE_BUFFERS_WANTED = 24;
const ADAPTER_TIMEOUT_MS = 10_000;

/** What an adapter reports about itself (GPUAdapterInfo, plus the older adapter-level flag). */
export interface AdapterInfoLike {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
  /** Dawn, with `chromium-experimental-subgroup-matrix`: the cooperative-matrix (tensor core) shapes and types offered. */
  subgroupMatrixConfigs?: Iterable<object>;
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
}

/** What an adapter offers beyond its name: features, the limits our kernels size themselves by, and its tensor-core configurations. */
export interface AdapterCapabilities {
  features: string[];
  /** maxComputeWorkgroupStorageSize, maxComputeInvocationsPerWorkgroup and maxStorageBuffersPerShaderStage, when reported. */
  limits: Record<string, number>;
  /** Each of `info.subgroupMatrixConfigs` as a plain object (empty without the feature). */
  subgroupMatrixConfigs: Array<Record<string, unknown>>;
  /** The range of subgroup sizes the adapter may use, when it says. */
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
}

const REPORTED_LIMITS = ['maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup', 'maxStorageBuffersPerShaderStage'] as const;

/**
 * The capabilities of an adapter as plain data, for benchmark reports.
 * @example adapterCapabilities({ features: ['shader-f16'], limits: { maxComputeWorkgroupStorageSize: 49152 } })
 * // { features: ['shader-f16'], limits: { maxComputeWorkgroupStorageSize: 49152 }, subgroupMatrixConfigs: [] }
 */
export function adapterCapabilities(adapter: { features?: Iterable<string>; limits?: Record<string, unknown>; info?: AdapterInfoLike }): AdapterCapabilities {
  const limits: Record<string, number> = {};
  for (const name of REPORTED_LIMITS) {
    const value = adapter.limits?.[name];
    if (typeof value === 'number') limits[name] = value;
  }
  // Dawn's config objects keep their fields on the prototype (getters): copy them by name.
  const configs = [...(adapter.info?.subgroupMatrixConfigs ?? [])].map((c) => {
    const plain: Record<string, unknown> = {};
    const fields = c as Record<string, unknown>;
    for (const key of ['componentType', 'resultComponentType', 'M', 'N', 'K']) if (fields[key] !== undefined) plain[key] = fields[key];
    return plain;
  });
  const sizes = { subgroupMinSize: adapter.info?.subgroupMinSize, subgroupMaxSize: adapter.info?.subgroupMaxSize };
  return {
    features: [...(adapter.features ?? [])].sort(),
    limits,
    subgroupMatrixConfigs: configs,
    ...(Object.fromEntries(Object.entries(sizes).filter(([, v]) => typeof v === 'number')) as Pick<AdapterCapabilities, 'subgroupMinSize' | 'subgroupMaxSize'>),
  };
}

/** An adapter's display name and whether it is a CPU implementation rather than a GPU. */
export interface AdapterClass {
  /** e.g. "NVIDIA H100 80GB HBM3" or "llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)". */
  name: string;
  /** Short name for one-line reasons, e.g. "llvmpipe". */
  shortName: string;
  /** A software rasteriser (lavapipe/llvmpipe, SwiftShader, WARP): correct but slower than wasm. */
  software: boolean;
  /**
   * Dawn's null backend (`CIFAR_WEBGPU_DAWN_BACKEND=null`): it validates and records every
   * command but runs no shader, so only the CPU side of the work is real.
   */
  runsNothing: boolean;
}

// Matched against the description and device strings: drivers that run shaders on the CPU.
const SOFTWARE_NAMES = /llvmpipe|lavapipe|swiftshader|softpipe|microsoft basic render/i;

/**
 * Names an adapter and says whether it is software. Dawn marks lavapipe with
 * `isFallbackAdapter` and architecture 'software'; older builds only name it in the description.
 * @example classifyAdapter({ vendor: 'mesa', architecture: 'software', description: 'llvmpipe: Mesa 25.0.7' })
 * // { name: 'llvmpipe: Mesa 25.0.7', shortName: 'llvmpipe', software: true }
 */
export function classifyAdapter(info: AdapterInfoLike, adapterIsFallback = false): AdapterClass {
  const text = [info.description, info.device].filter(Boolean).join(' ');
  const software =
    adapterIsFallback || info.isFallbackAdapter === true || info.architecture?.toLowerCase() === 'software' || SOFTWARE_NAMES.test(text);
  const name = (info.description || info.device || info.vendor || 'unknown adapter').replace(/\s+/g, ' ').trim();
  const named = SOFTWARE_NAMES.exec(text)?.[0].toLowerCase();
  const shortName = named ?? name.split(/[:(,]/)[0]!.trim();
  return { name, shortName: shortName || name, software, runsNothing: /^null-backend$/i.test(info.device ?? '') };
}

/** The Dawn backends `CIFAR_WEBGPU_DAWN_BACKEND` may name (Dawn's `backend=` flag). */
export const DAWN_BACKENDS = ['vulkan', 'metal', 'd3d12', 'd3d11', 'opengl', 'opengles', 'null'] as const;

/**
 * The Dawn backend asked for in `CIFAR_WEBGPU_DAWN_BACKEND`, or undefined for Dawn's choice.
 * `null` is Dawn's null backend, which runs no shader: `bench:gpu --dawn-backend null` uses it
 * to measure the CPU side of a step alone.
 * @throws CifarError('USAGE') for another value.
 * @example dawnBackend({ CIFAR_WEBGPU_DAWN_BACKEND: 'null' }) // 'null'
 */
export function dawnBackend(env: NodeJS.ProcessEnv): (typeof DAWN_BACKENDS)[number] | undefined {
  const value = env['CIFAR_WEBGPU_DAWN_BACKEND'];
  if (value === undefined || value === '') return undefined;
  const known = DAWN_BACKENDS.find((b) => b === value);
  if (known === undefined) throw new CifarError('USAGE', `CIFAR_WEBGPU_DAWN_BACKEND: "${value}" is not one of ${DAWN_BACKENDS.join(', ')}`);
  return known;
}

let nullBackendAllowed = false;

/** Lets the webgpu backend start on Dawn's null backend in this process (the benchmark's CPU-side measurement). */
export function allowNullBackend(): void {
  nullBackendAllowed = true;
}

/** Whether `allowNullBackend` was called. */
export function nullBackendIsAllowed(): boolean {
  return nullBackendAllowed;
}

/** Result of probing for a WebGPU adapter: the `gpu` object to install, or why there is none. */
export type WebGpuProbe =
  | ({ ok: true; gpu: unknown; adapter: AdapterClass; dawnToggles: string[] } & AdapterCapabilities)
  | { ok: false; reason: string };

/**
 * The Dawn toggles to enable, from `CIFAR_WEBGPU_DAWN_TOGGLES` (comma-separated Dawn toggle
 * names), e.g. `disable_robustness` (no bounds clamping in shaders: faster, and safe only for
 * kernels that never index out of bounds, as ours are tested not to) or
 * `vulkan_enable_f16_on_nvidia` (lets an NVIDIA adapter offer `shader-f16`). Dawn ignores names
 * it does not know, silently.
 * @throws CifarError('USAGE') for a name that is not a toggle name.
 * @example dawnToggles({ CIFAR_WEBGPU_DAWN_TOGGLES: 'disable_robustness' }) // ['disable_robustness']
 */
export function dawnToggles(env: NodeJS.ProcessEnv): string[] {
  const names = (env['CIFAR_WEBGPU_DAWN_TOGGLES'] ?? '').split(',').map((t) => t.trim()).filter(Boolean);
  const bad = names.find((t) => !/^[a-z0-9_]+$/.test(t));
  if (bad !== undefined) throw new CifarError('USAGE', `CIFAR_WEBGPU_DAWN_TOGGLES: "${bad}" is not a Dawn toggle name (lower case, digits, underscores)`);
  return names;
}

/**
 * Dawn needs the Vulkan loader on Linux; without it, it writes a native warning to stderr and
 * finds no adapter. Checking first keeps our output clean and the reason precise.
 */
function vulkanLoaderPresent(): boolean {
  if (process.platform !== 'linux') return true;
  const dirs = [
    ...(process.env['LD_LIBRARY_PATH'] ?? '').split(':').filter(Boolean),
    '/usr/lib/x86_64-linux-gnu', '/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu',
    '/lib/aarch64-linux-gnu', '/usr/lib64', '/lib64', '/usr/lib', '/lib', '/usr/local/lib',
  ];
  return dirs.some((d) => existsSync(path.join(d, 'libvulkan.so.1')));
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

interface DawnModule {
  create: (flags: string[]) => {
    requestAdapter: () => Promise<{ info?: AdapterInfoLike; isFallbackAdapter?: boolean; features?: Iterable<string>; limits?: Record<string, unknown> } | null>;
  };
  globals: Record<string, unknown>;
}

/** Loads Dawn (from `DAWN_NODE` when set, else the `webgpu` package) and asks for an adapter. */
export async function probeWebGpu(): Promise<WebGpuProbe> {
  if (!vulkanLoaderPresent()) return { ok: false, reason: 'no WebGPU adapter (Vulkan loader libvulkan.so.1 not found)' };
  const toggles = dawnToggles(process.env);
  const backend = dawnBackend(process.env);
  // Subgroup matrices are an experimental (unsafe) feature, and NVIDIA adapters offer shader-f16
  // only when asked. `auto` asks too: which adapter comes is known only after.
  const matmul = matmulFromEnv(process.env);
  if (matmul === 'tensor-cores' || matmul === 'auto') {
    for (const t of TENSOR_CORE_TOGGLES) if (!toggles.includes(t)) toggles.push(t);
  }
  let dawn: DawnModule;
  try {
    const from = process.env['DAWN_NODE'];
    dawn = (from ? require(from) : await import('webgpu')) as DawnModule;
  } catch (err) {
    return { ok: false, reason: `WebGPU bindings failed to load (${(err as Error).message.split('\n')[0]})` };
  }
  try {
    Object.assign(globalThis, dawn.globals);
    const gpu = dawn.create([...(toggles.length > 0 ? [`enable-dawn-features=${toggles.join(',')}`] : []), ...(backend ? [`backend=${backend}`] : [])]);
    const adapter = await withTimeout(gpu.requestAdapter(), ADAPTER_TIMEOUT_MS);
    if (adapter === 'timeout') return { ok: false, reason: 'no WebGPU adapter (request timed out)' };
    if (adapter === null) return { ok: false, reason: 'no WebGPU adapter found' };
    return { ok: true, gpu, adapter: classifyAdapter(adapter.info ?? {}, adapter.isFallbackAdapter === true), ...adapterCapabilities(adapter), dawnToggles: toggles };
  } catch (err) {
    return { ok: false, reason: `WebGPU adapter request failed (${(err as Error).message.split('\n')[0]})` };
  }
}

/**
 * tfjs-backend-webgpu registers itself only if `navigator.gpu` exists when it is imported, so
 * the navigator must be installed before the dynamic import.
 */
export async function installWebGpu(gpu: unknown): Promise<void> {
  askForOptionalFeatures(gpu);
  const nav = (globalThis as { navigator?: Record<string, unknown> }).navigator;
  if (nav !== undefined && nav['gpu'] === undefined) {
    Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
  } else if (nav === undefined) {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu, userAgent: 'node' }, configurable: true, writable: true });
  }
  await import('@tensorflow/tfjs-backend-webgpu');
}

interface FeatureAdapter {
  features?: Iterable<string>;
  limits?: { maxStorageBuffersPerShaderStage?: number };
  requestDevice(descriptor?: { requiredFeatures?: Iterable<unknown>; requiredLimits?: Record<string, number> }): Promise<ShaderDevice>;
}
interface ShaderDevice {
  createShaderModule(descriptor: { code: string }): unknown;
}

/**
 * tfjs asks its device for timestamp queries only. Every adapter `gpu` hands out (tfjs asks for
 * one itself) gets a `requestDevice` that also asks for the OPTIONAL_FEATURES it offers and for
 * up to STORAGE_BUFFERS_WANTED storage buffers a stage (asking again without them if that is
 * refused), and its devices a `createShaderModule` that puts the `enable` directives a program's marker line names
 * (matrix.ts' `withEnables`) before tfjs' declarations.
 */
export function askForOptionalFeatures(gpu: unknown): void {
  const target = gpu as { requestAdapter?: (options?: unknown) => Promise<FeatureAdapter | null> };
  if (typeof target.requestAdapter !== 'function') return;
  const requestAdapter = target.requestAdapter.bind(gpu);
  target.requestAdapter = async (options?: unknown) => {
    const adapter = await requestAdapter(options);
    if (adapter === null) return adapter;
    const offered = new Set(adapter.features ?? []);
    const requestDevice = adapter.requestDevice.bind(adapter);
    adapter.requestDevice = async (descriptor = {}) => {
      const extra = OPTIONAL_FEATURES.filter((f) => offered.has(f));
      const storage = Math.min(adapter.limits?.maxStorageBuffersPerShaderStage ?? 0, STORAGE_BUFFERS_WANTED);
      const withFeatures = { ...descriptor, requiredFeatures: [...(descriptor.requiredFeatures ?? []), ...extra] };
      let device: ShaderDevice;
      if (storage > 8) {
        // A device refused for the raised limit is asked for again without it (SGD then groups 2).
        device = await requestDevice({ ...withFeatures, requiredLimits: { ...descriptor.requiredLimits, maxStorageBuffersPerShaderStage: storage } }).catch(() => requestDevice(withFeatures));
      } else {
        device = await requestDevice(withFeatures);
      }
      const createShaderModule = device.createShaderModule.bind(device);
      device.createShaderModule = (d) => createShaderModule({ ...d, code: withEnables(d.code) });
      return device;
    };
    return adapter;
  };
}

interface ErrorReportingDevice {
  addEventListener(type: 'uncapturederror', listener: (event: { error?: { message?: string } }) => void): void;
}

const watched = new WeakSet<object>();
const reported: string[] = [];
const MAX_KEPT = 20;

/**
 * Records the errors a WebGPU device reports outside any error scope. tfjs-backend-webgpu opens
 * none, so a shader that fails to compile or a dispatch that fails validation otherwise just
 * leaves its output zeros. Idempotent per device.
 */
export function watchWebGpuErrors(device: unknown): void {
  if (device === null || typeof device !== 'object' || watched.has(device)) return;
  const target = device as Partial<ErrorReportingDevice>;
  if (typeof target.addEventListener !== 'function') return;
  watched.add(device);
  target.addEventListener('uncapturederror', (event) => {
    if (reported.length < MAX_KEPT) reported.push(String(event.error?.message ?? 'unknown WebGPU error').trim());
  });
}

/** The WebGPU errors reported since the last call (first lines kept whole), and forgets them. */
export function takeWebGpuErrors(): string[] {
  return reported.splice(0);
}

/**
 * Throws CifarError('BACKEND_FAILED') when the device reported errors since the last check, so
 * that numbers computed meanwhile (zeros from a failed shader) go no further.
 * @example assertNoWebGpuErrors(`in epoch ${n}`, 'the last checkpoint is from before this epoch');
 */
export function assertNoWebGpuErrors(during: string, hint: string): void {
  const errors = takeWebGpuErrors();
  if (errors.length === 0) return;
  const what = errors.length === 1 ? 'an error' : `${errors.length} errors`;
  throw new CifarError('BACKEND_FAILED', `the GPU reported ${what} ${during}: ${errors[0]!.split('\n')[0]}`, { hint: `${hint}; --backend wasm avoids the GPU` });
}
