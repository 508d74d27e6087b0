import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { initBackend, webGpuVerdict } from '../../src/backend/index.js';
import { adapterCapabilities, askForOptionalFeatures, classifyAdapter, dawnBackend, dawnToggles, probeWebGpu } from '../../src/backend/webgpu.js';

const LAVAPIPE = { vendor: 'mesa', architecture: 'software', device: 'llvmpipe-llvm-15-0-6-256-bits-', description: 'llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6) 0.0.1', isFallbackAdapter: true };
const H100 = { vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H100 80GB HBM3', isFallbackAdapter: false };

describe('classifyAdapter', () => {
  it('recognises lavapipe by its fallback flag, architecture or name', () => {
    expect(classifyAdapter(LAVAPIPE)).toEqual({ name: LAVAPIPE.description, shortName: 'llvmpipe', software: true, runsNothing: false });
    expect(classifyAdapter({ isFallbackAdapter: true, description: 'Some Adapter' }).software).toBe(true);
    expect(classifyAdapter({ architecture: 'software', description: 'x' }).software).toBe(true);
    expect(classifyAdapter({ description: 'llvmpipe (LLVM 15.0.6, 256 bits)' }).software).toBe(true);
    expect(classifyAdapter({ description: 'SwiftShader Device (Subzero)' })).toMatchObject({ shortName: 'swiftshader', software: true });
    expect(classifyAdapter({ description: 'x' }, true).software).toBe(true);
  });

  it('treats a named hardware adapter as a GPU and keeps its name', () => {
    expect(classifyAdapter(H100)).toEqual({ name: 'NVIDIA H100 80GB HBM3', shortName: 'NVIDIA H100 80GB HBM3', software: false, runsNothing: false });
    expect(classifyAdapter({}).name).toBe('unknown adapter');
  });
});

describe('dawnToggles', () => {
  it('reads the comma-separated toggles of CIFAR_WEBGPU_DAWN_TOGGLES and refuses what is not a toggle name', () => {
    expect(dawnToggles({})).toEqual([]);
    expect(dawnToggles({ CIFAR_WEBGPU_DAWN_TOGGLES: ' disable_robustness, vulkan_enable_f16_on_nvidia ,' })).toEqual(['disable_robustness', 'vulkan_enable_f16_on_nvidia']);
    expect(() => dawnToggles({ CIFAR_WEBGPU_DAWN_TOGGLES: 'disable_robustness,--evil=1' })).toThrow(
      expect.objectContaining({ code: 'USAGE', message: 'CIFAR_WEBGPU_DAWN_TOGGLES: "--evil=1" is not a Dawn toggle name (lower case, digits, underscores)' }),
    );
  });
});

describe('dawnBackend', () => {
  it('reads CIFAR_WEBGPU_DAWN_BACKEND, absent or empty meaning Dawn\'s choice, and refuses another value in one line', () => {
    expect(dawnBackend({})).toBeUndefined();
    expect(dawnBackend({ CIFAR_WEBGPU_DAWN_BACKEND: '' })).toBeUndefined();
    expect(dawnBackend({ CIFAR_WEBGPU_DAWN_BACKEND: 'null' })).toBe('null');
    expect(dawnBackend({ CIFAR_WEBGPU_DAWN_BACKEND: 'vulkan' })).toBe('vulkan');
    expect(() => dawnBackend({ CIFAR_WEBGPU_DAWN_BACKEND: 'cuda' })).toThrow(
      expect.objectContaining({ code: 'USAGE', message: 'CIFAR_WEBGPU_DAWN_BACKEND: "cuda" is not one of vulkan, metal, d3d12, d3d11, opengl, opengles, null' }),
    );
  });
});

describe('adapterCapabilities', () => {
  it('reports sorted features, the workgroup and storage-buffer limits and the subgroup-matrix configurations as plain data', () => {
    // Dawn's objects keep their fields as getters on the prototype, which JSON.stringify skips.
    class Config {
      get componentType() { return 'f16'; }
      get resultComponentType() { return 'f32'; }
      get M() { return 16; }
      get N() { return 16; }
      get K() { return 16; }
    }
    const caps = adapterCapabilities({
      features: ['subgroups', 'chromium-experimental-subgroup-matrix'],
      limits: { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024, maxStorageBuffersPerShaderStage: 16, maxBufferSize: 2 ** 31 },
      info: { description: 'NVIDIA H100', subgroupMatrixConfigs: [new Config()] },
    });
    expect(JSON.parse(JSON.stringify(caps))).toEqual({
      features: ['chromium-experimental-subgroup-matrix', 'subgroups'],
      limits: { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024, maxStorageBuffersPerShaderStage: 16 },
      subgroupMatrixConfigs: [{ componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 }],
    });
    expect(adapterCapabilities({})).toEqual({ features: [], limits: {}, subgroupMatrixConfigs: [] });
  });
});

describe('the device cifar asks for (askForOptionalFeatures)', () => {
  /** A gpu whose adapter offers shader-f16 and `storage` buffers a stage, and refuses devices asking for any raised limit when `strict`. */
  function fakeGpu(storage: number, strict: boolean) {
    const asked: Array<{ requiredFeatures?: Iterable<unknown>; requiredLimits?: Record<string, number> }> = [];
    const adapter = {
      features: ['shader-f16', 'timestamp-query'],
      limits: { maxStorageBuffersPerShaderStage: storage },
      requestDevice: async (d: (typeof asked)[number] = {}) => {
        asked.push(d);
        if (strict && d.requiredLimits?.['maxStorageBuffersPerShaderStage'] !== undefined) throw new Error('limit refused');
        return { createShaderModule: (m: { code: string }) => m };
      },
    };
    const gpu = { requestAdapter: async () => adapter };
    askForOptionalFeatures(gpu);
    return { gpu, asked };
  }

  it('asks for the offered optional features and up to 24 storage buffers a stage, keeping what tfjs asked for', async () => {
    const { gpu, asked } = fakeGpu(32, false);
    const adapter = (await gpu.requestAdapter()) as unknown as { requestDevice(d: object): Promise<unknown> };
    await adapter.requestDevice({ requiredFeatures: ['timestamp-query'], requiredLimits: { maxBufferSize: 1024 } });
    expect(asked).toEqual([{ requiredFeatures: ['timestamp-query', 'shader-f16'], requiredLimits: { maxBufferSize: 1024, maxStorageBuffersPerShaderStage: 24 } }]);
  });

  it('asks again without the raised limit when the device is refused, and not at all at WebGPU\'s default of 8', async () => {
    const strict = fakeGpu(16, true);
    const adapter = (await strict.gpu.requestAdapter()) as unknown as { requestDevice(d: object): Promise<{ createShaderModule(m: { code: string }): { code: string } }> };
    const device = await adapter.requestDevice({});
    expect(strict.asked.map((d) => d.requiredLimits?.['maxStorageBuffersPerShaderStage'])).toEqual([16, undefined]);
    // Its shader modules still get the enable directives a marker asks for.
    expect(device.createShaderModule({ code: '// cifar-enable: f16\nfn f() {}' }).code).toMatch(/^enable f16;/);
    const plain = fakeGpu(8, true);
    await ((await plain.gpu.requestAdapter()) as unknown as { requestDevice(d: object): Promise<unknown> }).requestDevice({});
    expect(plain.asked).toHaveLength(1);
    expect(plain.asked[0]!.requiredLimits).toBeUndefined();
  });
});

describe('webGpuVerdict', () => {
  it('auto refuses a software rasteriser with a one-line reason', () => {
    expect(webGpuVerdict(classifyAdapter(LAVAPIPE), 'auto')).toEqual({ use: false, reason: 'WebGPU adapter is a software rasteriser (llvmpipe), not a GPU' });
  });

  it('an explicit request uses a software adapter and says so', () => {
    expect(webGpuVerdict(classifyAdapter(LAVAPIPE), 'requested')).toEqual({ use: true, detail: `Dawn, ${LAVAPIPE.description}, software adapter` });
  });

  it('Dawn\'s null backend runs no shader: refused unless the benchmark allowed it, and named so when used', () => {
    const none = classifyAdapter({ vendor: '', architecture: '', device: 'null-backend', description: '' });
    expect(none.runsNothing).toBe(true);
    for (const mode of ['auto', 'requested'] as const) {
      expect(webGpuVerdict(none, mode, false)).toEqual({ use: false, reason: "Dawn's null backend (CIFAR_WEBGPU_DAWN_BACKEND=null) runs no shader; only bench:gpu measures with it" });
    }
    expect(webGpuVerdict(none, 'requested', true)).toEqual({ use: true, detail: 'Dawn, null-backend: runs no shader, the CPU side only' });
  });

  it('a hardware GPU is used either way, named in the detail', () => {
    expect(webGpuVerdict(classifyAdapter(H100), 'auto')).toEqual({ use: true, detail: 'Dawn, NVIDIA H100 80GB HBM3' });
    expect(webGpuVerdict(classifyAdapter(H100), 'requested')).toEqual({ use: true, detail: 'Dawn, NVIDIA H100 80GB HBM3' });
  });
});

const probe = await probeWebGpu();
const software = probe.ok && probe.adapter.software;

describe.skipIf(!software)('on a software adapter (lavapipe)', () => {
  it('auto picks wasm, saying why in one line', async () => {
    const info = await initBackend('auto');
    expect(info.name).toBe('wasm');
    // "WebGPU adapter is a software rasteriser (llvmpipe), not a GPU" once probed; auto may
    // also decide before probing that there is no GPU device at all.
    expect(info.reason).toMatch(/^wasm \(SIMD\): .*(software rasteriser \(\w+\), not a GPU|no GPU)/);
    expect(info.reason).not.toContain('\n');
  });

  it('--backend webgpu still starts on it and says "software adapter"', async () => {
    const info = await initBackend('webgpu');
    expect(info.name).toBe('webgpu');
    expect(tf.getBackend()).toBe('webgpu');
    // With the kernel variant in force (the defaults here).
    expect(info.reason).toMatch(/^webgpu \(Dawn, .+, software adapter; kernels: tiles up to 128, prefetch, vec4, 16 deep, vec4 loads\): requested$/);
  });
});

describe.skipIf(!probe.ok)('CIFAR_WEBGPU_DAWN_BACKEND=null outside the benchmark', () => {
  it('cifar\'s commands refuse it in one line: their numbers would be made of nothing', async () => {
    const script = "import('./dist/backend/index.js').then((m) => m.initBackend('webgpu')).then(() => console.log('started'), (e) => { console.log(e.message); process.exit(1); })";
    const run = promisify(execFile)(process.execPath, ['-e', script], { env: { ...process.env, CIFAR_WEBGPU_DAWN_BACKEND: 'null' }, timeout: 60_000 });
    await expect(run).rejects.toMatchObject({ code: 1, stdout: "backend webgpu unavailable: Dawn's null backend (CIFAR_WEBGPU_DAWN_BACKEND=null) runs no shader; only bench:gpu measures with it\n" });
  });
});
