import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../../src/backend/index.js';
import { isCifarError } from '../../src/errors.js';

// Any adapter, lavapipe included: an explicit `--backend webgpu` starts on it.
const hasAdapter = async (): Promise<boolean> => {
  const { probeWebGpu } = await import('../../src/backend/webgpu.js');
  return (await probeWebGpu()).ok;
};
// A hardware GPU: the only adapter `auto` picks.
const hasGpu = async (): Promise<boolean> => {
  const { probeWebGpu } = await import('../../src/backend/webgpu.js');
  const probe = await probeWebGpu();
  return probe.ok && !probe.adapter.software;
};

describe('initBackend', () => {
  it('starts wasm with SIMD and says so in one line', async () => {
    const info = await initBackend('wasm');
    expect(info.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(info.reason).toMatch(/^wasm \(SIMD\): /);
    expect(info.reason).not.toContain('\n');
  });

  it('auto falls back past missing tfjs-node and WebGPU to wasm, quickly', async () => {
    if (await hasGpu()) return; // this assertion is about a machine without a GPU
    const start = Date.now();
    const info = await initBackend('auto');
    expect(info.name).toBe('wasm');
    expect(info.reason).toMatch(/^wasm \(SIMD\): .*WebGPU/);
    expect(Date.now() - start).toBeLessThan(5000);
  });

  it('an explicitly requested unavailable backend is BACKEND_UNAVAILABLE with a one-line reason', async () => {
    const failing: string[] = ['tensorflow'];
    if (!(await hasAdapter())) failing.push('webgpu');
    for (const name of failing) {
      const err = await initBackend(name as 'webgpu').catch((e: unknown) => e);
      expect(isCifarError(err) && err.code, name).toBe('BACKEND_UNAVAILABLE');
      expect((err as Error).message).not.toContain('\n');
    }
  });

  it('rejects an unknown backend name as USAGE', async () => {
    const err = await initBackend('webgl' as 'cpu').catch((e: unknown) => e);
    expect(isCifarError(err) && err.code).toBe('USAGE');
  });

  it('cpu is always available', async () => {
    expect((await initBackend('cpu')).name).toBe('cpu');
  });
});

describe('hasGpuDeviceNode', () => {
  it('sees NVIDIA, DRM render nodes and WSL, and nothing else', async () => {
    const { hasGpuDeviceNode } = await import('../../src/backend/index.js');
    expect(hasGpuDeviceNode(['null', 'nvidiactl', 'nvidia0'])).toBe(true);
    expect(hasGpuDeviceNode(['null', 'dri'], ['card0', 'renderD128'])).toBe(true);
    expect(hasGpuDeviceNode(['dxg'])).toBe(true);
    expect(hasGpuDeviceNode(['null', 'nvidiactl', 'tty0'], ['card0'])).toBe(false);
  });
});
