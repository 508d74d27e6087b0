import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { type GpuBenchResult, convFlops, convKernelTimes, formatGpuBench, parseTorchReference, rate as measureRate, ratiosToReference } from '../../src/bench/gpu.js';
import { TENSOR_CORE_TOGGLES, probeWebGpu } from '../../src/backend/webgpu.js';
import { averageGroupSize } from '../../src/backend/webgpu-kernels/sgd.js';
import { LAVAPIPE_TIMEOUT_MS } from '../helpers/lavapipe.js';

const TORCH_OUTPUT = `torch fp32 batch=256: train 18261 img/s (epoch of 50k ~ 2.7 s), infer 61234 img/s, loss 2.301
torch bf16-cl batch=256: train 27544 img/s (epoch of 50k ~ 1.8 s), infer 90000 img/s, loss 2.299
2.11.0 NVIDIA H100 80GB HBM3
`;

const rate = (ips: number, batch: number) => ({ msPerBatch: (batch * 1000) / ips, imagesPerSecond: ips });
const RESULT: GpuBenchResult = {
  startedAt: '2026-01-01T00:00:00Z',
  node: 'v20',
  backend: { name: 'webgpu', reason: 'webgpu (Dawn, NVIDIA H100): requested' },
  adapter: 'NVIDIA H100 80GB HBM3',
  software: false,
  runsNothing: false,
  adapterFeatures: ['subgroups', 'timestamp-query'],
  adapterLimits: { maxComputeWorkgroupStorageSize: 49152 },
  subgroupMatrixConfigs: [],
  dawnToggles: [],
  kernels: 'cifar',
  submitBatch: 15,
  maxTileSide: 64,
  prefetch: false,
  vec4: false,
  deepK: false,
  inputGradForward: false,
  splitForward: false,
  wideLoads: false,
  matmul: 'f32',
  matmulAuto: false,
  matrixDepth: 16,
  matrixScale: 'shared',
  matmulScope: 'all',
  forwardKernel: 'cifar',
  model: 'resnet18',
  parameters: 11_173_962,
  cutout: 0,
  iterations: 10,
  rounds: 3,
  rows: [{ batch: 256, predict: rate(6000, 256), forward: rate(4000, 256), step: rate(5000, 256), stepKernelMs: 40, stepWallMs: 51.2, gpuBytesAllocated: 3 * 2 ** 30, tensorBytes: 2 ** 28, stepCounts: { dispatches: 412, uploads: 2, uploadBytes: 196_608 + 1024, buffersCreated: 2, submits: 28 } }],
  topKernels: [{ kernel: 'Conv2DBackpropFilter', calls: 20, ms: 12.5 }],
  convKernels: [{ kernel: 'Conv2DBackpropFilter', shapes: '256x32x32x64, 256x32x32x64 -> 3x3x64x64', calls: 4, ms: 4.83, tflops: 10 }],
  kernelCheck: [{ conv: '3x3 s1 32x32x64 -> 64', filterError: 2e-7, inputError: 3e-7, forwardError: 1e-7 }],
  gpuErrors: [],
};

describe('bench:gpu convolution rates (pure)', () => {
  // ResNet-18's first stage at batch 256: 256*32*32 pixels x 64 channels, 3x3 taps over 64 inputs.
  const FLOPS = 2 * 256 * 32 * 32 * 64 * 3 * 3 * 64;

  it('counts the same work for the forward pass and both gradients of a convolution', () => {
    expect(convFlops('Conv2D', [[256, 32, 32, 64], [3, 3, 64, 64]], [[256, 32, 32, 64]])).toBe(FLOPS);
    expect(convFlops('FusedConv2D', [[256, 32, 32, 64], [3, 3, 64, 64], [64]], [[256, 32, 32, 64]])).toBe(FLOPS);
    expect(convFlops('Conv2DBackpropInput', [[256, 32, 32, 64], [3, 3, 64, 64]], [[256, 32, 32, 64]])).toBe(FLOPS);
    expect(convFlops('Conv2DBackpropFilter', [[256, 32, 32, 64], [256, 32, 32, 64]], [[3, 3, 64, 64]])).toBe(FLOPS);
    // A strided 1x1 projection: 256*8*8 output pixels, 128 -> 256 channels.
    expect(convFlops('Conv2DBackpropFilter', [[256, 16, 16, 128], [256, 8, 8, 256]], [[1, 1, 128, 256]])).toBe(2 * 256 * 8 * 8 * 256 * 128);
    expect(convFlops('Conv2DBackpropInput', [[256, 8, 8, 256], [1, 1, 128, 256]], [[256, 16, 16, 128]])).toBe(2 * 256 * 8 * 8 * 256 * 128);
    expect(convFlops('Relu', [[4]], [[4]])).toBeNull();
  });

  it('groups tf.profile records by kernel and shapes, slowest first, with the rate reached', () => {
    const fwd = { name: 'FusedConv2D', inputShapes: [[256, 32, 32, 64], [3, 3, 64, 64], [64]], outputShapes: [[256, 32, 32, 64]] };
    const times = convKernelTimes([
      { ...fwd, kernelTimeMs: 2 },
      { ...fwd, kernelTimeMs: 3 },
      { name: 'Conv2DBackpropFilter', inputShapes: [[256, 32, 32, 64], [256, 32, 32, 64]], outputShapes: [[3, 3, 64, 64]], kernelTimeMs: 9.664 },
      { name: 'Relu', inputShapes: [[256, 32, 32, 64]], outputShapes: [[256, 32, 32, 64]], kernelTimeMs: 50 },
      { name: 'Conv2D', inputShapes: [[1, 4, 4, 3], [3, 3, 3, 8]], outputShapes: [[1, 4, 4, 8]], kernelTimeMs: { error: 'no timer' } },
    ]);
    expect(times.map((t) => [t.kernel, t.calls])).toEqual([['Conv2DBackpropFilter', 1], ['FusedConv2D', 2], ['Conv2D', 1]]);
    expect(times[0]!.shapes).toBe('256x32x32x64, 256x32x32x64 -> 3x3x64x64');
    expect(times[0]!.tflops).toBeCloseTo(FLOPS / 9.664e-3 / 1e12, 6);
    expect(times[1]).toMatchObject({ ms: 5, tflops: (2 * FLOPS) / 5e-3 / 1e12 });
    expect(times[2]!.tflops).toBeNull(); // no time recorded
  });
});

describe('bench:gpu rates', () => {
  it('times rounds of runs after a warm-up and reports the median round', async () => {
    await tf.setBackend('cpu');
    let runs = 0;
    const r = await measureRate(4, 3, () => {
      runs++;
      return tf.scalar(runs);
    }, 5);
    expect(runs).toBe(2 + 5 * 3);
    expect(r.roundsMs).toHaveLength(5);
    const sorted = [...r.roundsMs!].sort((a, b) => a - b);
    expect(r.msPerBatch).toBe(sorted[2]);
    expect(r.imagesPerSecond).toBeCloseTo(4000 / r.msPerBatch, 6);
  });
});

describe('bench:gpu formatting (pure)', () => {
  it('parses reference-pytorch.py lines', () => {
    expect(parseTorchReference(TORCH_OUTPUT)).toEqual([
      { label: 'PyTorch fp32', batch: 256, trainImagesPerSecond: 18261, inferImagesPerSecond: 61234 },
      { label: 'PyTorch bf16-cl', batch: 256, trainImagesPerSecond: 27544, inferImagesPerSecond: 90000 },
    ]);
  });

  it('reports the training step ratio to PyTorch at the same batch', () => {
    const [fp32] = ratiosToReference(RESULT, parseTorchReference(TORCH_OUTPUT));
    expect(fp32!.ratio).toBeCloseTo(5000 / 18261, 6);
    expect(ratiosToReference(RESULT, [{ label: 'x', batch: 128, trainImagesPerSecond: 1, inferImagesPerSecond: null }])[0]!.ratio).toBeNull();
  });

  it('prints one row per batch, the ratio and the top kernels', () => {
    const lines = formatGpuBench(RESULT, parseTorchReference(TORCH_OUTPUT)).split('\n');
    expect(lines[0]).toContain('resnet18 (11,173,962 params) on NVIDIA H100 80GB HBM3');
    expect(lines[2]).toMatch(/^\s+256\s+6,000\s+4,000\s+5,000\s+51\.2\s+40\.0\s+51\.2\s+3,072\s+412\s+2\s+193\s+28$/);
    expect(lines[0]).toContain('cifar conv-gradient kernels (tiles up to 64), cifar forward conv; the median of 3 rounds of 10 timed runs each; a queue submission every 15 dispatches');
    expect(lines.some((l) => l.includes('PyTorch fp32 batch 256: 18,261 img/s training; ours/PyTorch = 0.274'))).toBe(true);
    expect(lines.some((l) => /Conv2DBackpropFilter\s+20 calls\s+12\.50 ms/.test(l))).toBe(true);
    expect(lines.some((l) => /^ {2}Conv2DBackpropFilter\s+256x32x32x64, 256x32x32x64 -> 3x3x64x64\s+4\.83 ms\s+10\.0 TFLOP\/s$/.test(l))).toBe(true);
    expect(lines).toContain("conv kernels (forward, both gradients) vs tfjs' on this device: worst relative error 3.0e-7 over 1 convolutions");
    expect(lines.some((l) => l.includes('ERROR'))).toBe(false);
    expect(formatGpuBench({ ...RESULT, cutout: 16 })).toContain('on NVIDIA H100 80GB HBM3; cutout 16; cifar conv-gradient kernels');
    expect(formatGpuBench({ ...RESULT, dawnToggles: ['disable_robustness'] })).toContain('cifar forward conv; Dawn toggles disable_robustness; the median of 3 rounds of 10 timed runs each');
    // float16 operands round the check's inputs: 3e-4 is a mismatch for float32 kernels only.
    const rounded = [{ conv: '3x3 s1 32x32x64 -> 64', filterError: 3e-4, inputError: 3e-4, forwardError: 3e-4 }];
    expect(formatGpuBench({ ...RESULT, kernelCheck: rounded })).toContain('worst relative error 3.0e-4 over 1 convolutions — MISMATCH (over 1e-4)');
    expect(formatGpuBench({ ...RESULT, kernelCheck: rounded, matmul: 'tensor-cores' })).not.toContain('MISMATCH');
    // Asked for and not run: the table says so, beside the float32 kernels it measured.
    const fellBack = formatGpuBench({ ...RESULT, matmulFallback: 'float16 tensor-cores not available: the device has no shader-f16' });
    expect(fellBack).toContain('cifar forward conv (float16 tensor-cores not available: the device has no shader-f16); the median');
    // The float16 start-up check's figures, and the subgroup-matrix load probe's answer.
    const check = { forward: 3.6e-4, 'filter gradient': 1.42, 'input gradient': 1.53 };
    expect(formatGpuBench({ ...RESULT, matrixCheck: check, matmul: 'f32' })).toContain("float16 GEMMs' start-up check against float32: forward 3.6e-4, filter gradient 1.4e+0, input gradient 1.5e+0 — refused, float32 ran");
    expect(formatGpuBench({ ...RESULT, matrixCheck: check, matmul: 'tensor-cores', matmulScope: 'forward' })).toContain('input gradient 1.5e+0 — the forward convolutions only');
    expect(formatGpuBench({ ...RESULT, matrixProbe: { cases: 100, failed: [] } })).toContain('subgroup-matrix loads vs the specification: all 100 cases right');
    expect(formatGpuBench({ ...RESULT, matrixProbe: { cases: 100, failed: ['left col_major stride 128 offset 112: 256 of 256 wrong'] } })).toContain(
      'subgroup-matrix loads vs the specification: 1 of 100 cases wrong, e.g. left col_major stride 128 offset 112: 256 of 256 wrong',
    );
    expect(formatGpuBench({ ...RESULT, matrixProbe: { error: 'no such extension' } })).toContain('subgroup-matrix load probe did not run: no such extension');
    const failed = formatGpuBench({ ...RESULT, gpuErrors: ['Error while parsing WGSL: :1:10 error\nmore'] });
    expect(failed).toContain('THE GPU REPORTED 1 ERROR(S) — these figures are not valid; first: Error while parsing WGSL: :1:10 error\n');
  });
});

const probe = await probeWebGpu();

describe.skipIf(!probe.ok)('npm run bench:gpu on the available adapter (smoke test)', () => {
  const SMOKE_ARGS = ['--allow-software', '--model', 'resnet10-w8', '--batches', '2', '--iterations', '1', '--check-batch', '2', '--no-profile', '--no-reference', '--dawn-toggles', 'disable_robustness', '--vec4', '--deep-k', '--no-prefetch', '--dx-forward', '--split-forward', '--vec4-loads', '--cutout', '8', '--ema', '0.99', '--mix'];
  /** The smoke test's JSON, for the null backend's comparison below. */
  let smoke: GpuBenchResult | undefined;

  it('runs with --allow-software and tiny sizes, writing the JSON and printing the table (with a Dawn toggle and kernel variants)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-gpu-'));
    try {
      const out = join(dir, 'bench-gpu.json');
      const args = ['scripts/bench-gpu.mjs', ...SMOKE_ARGS, '--out', out];
      const { stdout } = await promisify(execFile)(process.execPath, args, { env: { ...process.env, XDG_RUNTIME_DIR: process.env['XDG_RUNTIME_DIR'] ?? tmpdir() }, timeout: LAVAPIPE_TIMEOUT_MS });
      const json = JSON.parse(await readFile(out, 'utf8')) as GpuBenchResult;
      smoke = json;
      expect(json.rows.map((r) => r.batch)).toEqual([2]);
      expect(json.rows[0]!.step.imagesPerSecond).toBeGreaterThan(0);
      // The counters saw the step: one bind group per dispatch, the batch's images and labels uploaded.
      expect(json.rows[0]!.stepCounts!.dispatches).toBeGreaterThan(100);
      expect(json.rows[0]!.stepCounts!.uploads).toBeGreaterThanOrEqual(2);
      // The step with cutout 8: the images go up as bytes (3,072 an image, not 4 times that as
      // int32), the boxes as 16 bytes an image.
      expect(json.cutout).toBe(8);
      expect(json.ema).toBe(0.99);
      expect(json.mix).toBe(true);
      expect(stdout).toContain('cutout 8; weight average 0.99; mixed batches (cutmix); ');
      expect(json.rows[0]!.stepCounts!.uploadBytes).toBeGreaterThanOrEqual(2 * 3072 + 2 * 16);
      expect(json.rows[0]!.stepCounts!.uploadBytes).toBeLessThan(2 * 3072 * 2);
      expect(json.backend.name).toBe('webgpu');
      expect(json.gpuErrors).toEqual([]);
      // The toggle reached Dawn's instance and is reported (Dawn ignores names it does not know,
      // so the report is what was asked), with the tensor cores' two that the default matmul mode
      // (auto) asks for; our kernels still match tfjs' with them. auto left lavapipe on float32.
      expect(json.dawnToggles).toEqual(['disable_robustness', ...TENSOR_CORE_TOGGLES]);
      expect(json).toMatchObject({ matmul: 'f32', matmulAuto: true });
      expect([json.vec4, json.deepK, json.prefetch, json.inputGradForward, json.splitForward, json.wideLoads]).toEqual([true, true, false, true, true, true]);
      expect(json.adapterFeatures.length).toBeGreaterThan(0);
      // lavapipe: 32 KiB of workgroup memory, no tensor-core configurations.
      expect(json.adapterLimits.maxComputeWorkgroupStorageSize).toBeGreaterThanOrEqual(16384);
      expect(json.subgroupMatrixConfigs).toEqual([]);
      expect(json.kernelCheck.length).toBeGreaterThan(3);
      for (const c of json.kernelCheck) expect(Math.max(c.filterError, c.inputError, c.forwardError), c.conv).toBeLessThan(1e-4);
      expect(stdout).toMatch(/^resnet10-w8 .* on /);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('--dawn-backend null measures the CPU side alone: the dispatches and uploads of the smoke run above, no check or profile, and says so', async () => {
    expect(smoke, 'the smoke test above ran').toBeDefined();
    const dir = await mkdtemp(join(tmpdir(), 'bench-gpu-'));
    try {
      const out = join(dir, 'null.json');
      const args = ['scripts/bench-gpu.mjs', ...SMOKE_ARGS, '--dawn-backend', 'null', '--out', out];
      const { stdout } = await promisify(execFile)(process.execPath, args, { env: { ...process.env, XDG_RUNTIME_DIR: process.env['XDG_RUNTIME_DIR'] ?? tmpdir() }, timeout: LAVAPIPE_TIMEOUT_MS });
      const json = JSON.parse(await readFile(out, 'utf8')) as GpuBenchResult;
      expect([json.runsNothing, smoke!.runsNothing]).toEqual([true, false]);
      expect(json.adapter).toBe('null-backend');
      expect(json.backend.reason).toContain('runs no shader');
      // The work recorded is the real step's, so its CPU side is that of a real run; only the SGD
      // and the weight average (--ema) group by the device's storage-buffer limit (null: 8, 2 and
      // 4 tensors a dispatch; lavapipe: 16, 5 and 8).
      const inPlaceDispatches = (r: GpuBenchResult, limit: number): number => Math.ceil(r.parameterTensors! / r.sgdGroup!) + Math.ceil(r.weightTensors! / averageGroupSize(limit));
      expect([json.sgdGroup, smoke!.sgdGroup]).toEqual([2, 5]);
      expect(json.parameterTensors).toBe(smoke!.parameterTensors);
      expect(json.weightTensors).toBeGreaterThan(json.parameterTensors!);
      const [nul, real] = [json.rows[0]!.stepCounts!, smoke!.rows[0]!.stepCounts!];
      expect(nul.dispatches - inPlaceDispatches(json, 8)).toBe(real.dispatches - inPlaceDispatches(smoke!, 16));
      expect([nul.uploads, nul.uploadBytes, nul.buffersCreated]).toEqual([real.uploads, real.uploadBytes, real.buffersCreated]);
      expect(json.rows[0]!.step.imagesPerSecond).toBeGreaterThan(0);
      // Asked for a kernel check (--check-batch 2), it runs none: without shaders there is nothing to compare.
      expect(json.kernelCheck).toEqual([]);
      expect(stdout).toContain("DAWN'S NULL BACKEND: no shader ran");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses an --ema that is not a decay below 1 with one line', async () => {
    const run = promisify(execFile)(process.execPath, ['scripts/bench-gpu.mjs', '--allow-software', '--ema', '1']);
    await expect(run).rejects.toMatchObject({ code: 1, stderr: 'bench-gpu: --ema: "1" is not a decay from 0 (off) to below 1\n' });
  });

  it('refuses a --cutout that is not a side in pixels with one line', async () => {
    const run = promisify(execFile)(process.execPath, ['scripts/bench-gpu.mjs', '--allow-software', '--cutout', 'big']);
    await expect(run).rejects.toMatchObject({ code: 1, stderr: 'bench-gpu: --cutout: "big" is not a whole number of pixels from 0 to 32\n' });
  });

  it('--matmul emulated trains with float16 GEMMs (subgroup matrices written out), checked against tfjs\' float32 kernels within float16\'s rounding', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bench-gpu-'));
    try {
      const out = join(dir, 'bench-gpu.json');
      const args = ['scripts/bench-gpu.mjs', '--allow-software', '--model', 'resnet10-w8', '--batches', '2', '--iterations', '1', '--check-batch', '2', '--no-profile', '--no-reference', '--matmul', 'emulated', '--out', out];
      const { stdout } = await promisify(execFile)(process.execPath, args, { env: { ...process.env, XDG_RUNTIME_DIR: process.env['XDG_RUNTIME_DIR'] ?? tmpdir() }, timeout: LAVAPIPE_TIMEOUT_MS });
      const json = JSON.parse(await readFile(out, 'utf8')) as GpuBenchResult;
      expect(json.matmul).toBe('emulated');
      expect(json.gpuErrors).toEqual([]);
      expect(json.rows[0]!.step.imagesPerSecond).toBeGreaterThan(0);
      const worst = Math.max(...json.kernelCheck.flatMap((c) => [c.filterError, c.inputError, c.forwardError]));
      // Float16's rounding shows (float32 kernels agree within 1e-5), and stays within it.
      expect(worst).toBeGreaterThan(1e-5);
      expect(worst).toBeLessThan(2e-3);
      expect(stdout).toContain('float16 subgroup matrices emulated');
      expect(stdout).not.toContain('MISMATCH');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
