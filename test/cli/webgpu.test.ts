/**
 * The WebGPU path of train, eval and predict end to end, on whatever adapter Dawn offers: a GPU,
 * or Mesa's lavapipe (a software Vulkan driver that .ci/run installs) on machines without one.
 * `auto` never picks a software adapter, so these runs ask for `--backend webgpu` explicitly.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeWebGpu } from '../../src/backend/webgpu.js';
import { runCli } from '../helpers/cli.js';
import { solidPng, tempDir, writeLearnableDataset } from '../helpers/fixtures.js';
import { startServe } from '../helpers/serve.js';
import { LAVAPIPE_TIMEOUT_MS } from '../helpers/lavapipe.js';

const adapter = (await probeWebGpu()).ok;
const env = { XDG_RUNTIME_DIR: process.env['XDG_RUNTIME_DIR'] ?? '/tmp' };

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  ({ dir, cleanup } = await tempDir());
  await writeLearnableDataset(join(dir, 'data', 'cifar-10-batches-bin'), 16);
});
afterAll(() => cleanup?.());

describe.skipIf(!adapter)('the webgpu backend end to end (any WebGPU adapter)', () => {
  it('trains a model that is saved as trained (two epochs), evaluates the same on webgpu and wasm, predicts and serves', async () => {
    const out = join(dir, 'gpu-model');
    const data = join(dir, 'data');
    const train = await runCli(['train', '--model', 'resnet10-w8', '--epochs', '2', '--batch-size', '16', '--limit', '48', '--test-limit', '32',
      '--backend', 'webgpu', '--data', data, '--out', out, '--seed', '3'], { env });
    expect(train.stderr).toMatch(/^backend: webgpu \(Dawn, /m);
    expect(train.code, train.stderr).toBe(0);
    const records = (await import('node:fs')).readFileSync(join(out, 'history.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(records).toHaveLength(2);
    const last = records[1]!;
    expect(Number.isFinite(last.trainLoss)).toBe(true);

    const evalOn = async (backend: string): Promise<{ loss: number; accuracy: number; backend: string }> => {
      const res = await runCli(['eval', '--model', out, '--data', data, '--limit', '32', '--backend', backend, '--json'], { env });
      expect(res.code, res.stderr).toBe(0);
      return JSON.parse(res.stdout);
    };
    const gpu = await evalOn('webgpu');
    const cpu = await evalOn('wasm');
    // The saved weights are the ones the last epoch was tested with (reads between epochs, for
    // the checkpoint, once left the in-place optimizer's tensors stale on the CPU side).
    expect(Math.abs(gpu.loss - last.testLoss!)).toBeLessThan(1e-4 * Math.max(1, Math.abs(last.testLoss!)));
    expect(gpu.backend).toBe('webgpu');
    expect(gpu.accuracy).toBe(cpu.accuracy);
    expect(Math.abs(gpu.loss - cpu.loss)).toBeLessThan(1e-4 * Math.max(1, Math.abs(cpu.loss)));

    const image = join(dir, 'img.png');
    (await import('node:fs')).writeFileSync(image, await solidPng(3, 0));
    const pred = await runCli(['predict', image, '--model', out, '--backend', 'webgpu', '--json'], { env });
    expect(pred.code, pred.stderr).toBe(0);
    const body = JSON.parse(pred.stdout);
    const first = Array.isArray(body) ? body[0] : body;
    expect(first.probabilities).toHaveLength(10);
    expect(first.probabilities.reduce((a: number, b: number) => a + b, 0)).toBeCloseTo(1, 4);

    // cifar serve on webgpu answers what cifar predict computed.
    const server = await startServe(['--model', out, '--backend', 'webgpu', '--workers', '1'], { env, readyMs: LAVAPIPE_TIMEOUT_MS });
    try {
      const health = (await (await fetch(`${server.url}/health`)).json()) as { model_loaded: boolean };
      expect(health.model_loaded).toBe(true);
      const form = new FormData();
      form.append('file', new Blob([(await import('node:fs')).readFileSync(image)], { type: 'image/png' }), 'img.png');
      const res = await fetch(`${server.url}/predict`, { method: 'POST', body: form });
      expect(res.status).toBe(200);
      const served = (await res.json()) as { prediction: number; probabilities: number[] };
      expect(served.prediction).toBe(first.prediction);
      served.probabilities.forEach((p: number, i: number) => expect(p).toBeCloseTo(first.probabilities[i], 4));
      expect(server.log()).toMatch(/webgpu/);
    } finally {
      await server.stop();
    }
  });
});
