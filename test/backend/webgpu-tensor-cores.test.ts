/**
 * The float16 tensor-core kernels on real subgroup matrices: Dawn's
 * `chromium-experimental-subgroup-matrix` over Vulkan cooperative matrices. lavapipe has them
 * since Mesa 25.1 (8 x 8 x 8, subgroups of 8), which Debian ships in sid, not in bookworm:
 * scripts/lavapipe-subgroup-matrix.sh unpacks it with sid's C library and prints a `node` wrapper,
 * which CI passes as CIFAR_SUBGROUP_MATRIX_NODE. The kernels then run in a process of that node
 * (test/helpers/tensor-cores-child.mjs, on dist/): 12 convolution runs, a small ResNet's loss
 * and gradients, and bench:gpu's load probe. The cpu backend's reference runs here.
 * Without it, this file skips (webgpu-matrix.test.ts tests the same programs with the three
 * operations emulated).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModel } from '../../src/model/resnet.js';
import { FLOAT16_RUNS, float16Inputs, float16Reference, float16RunName } from '../helpers/float16.js';
import { cosine, expectClose, randomArray, read, resnetLossAndGrads } from './helpers.js';
import { LAVAPIPE_TIMEOUT_MS } from '../helpers/lavapipe.js';

const node = process.env['CIFAR_SUBGROUP_MATRIX_NODE'];

interface ChildReport {
  name: string;
  detail: string;
  matmul: string;
  matmulScope: string;
  fallback: string | null;
  side: number;
  subgroupSize: number;
  results: number[][][];
  /** The small ResNet's [loss, ...gradients]. */
  resnet: number[][];
  /** bench:gpu's load probe (matrix-probe.ts): its cases and the failed ones. */
  probe: { cases: number; failed: string[] };
}

describe.skipIf(!node)('float16 tensor cores on real subgroup matrices (CIFAR_SUBGROUP_MATRIX_NODE: lavapipe from Debian sid)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cifar-tensor-cores-'));
  const inputs = FLOAT16_RUNS.map(float16Inputs);
  const RESNET_LABELS = [1, 7, 3];
  const resnetImages = randomArray(RESNET_LABELS.length * 32 * 32 * 3, 21);
  let cpuResnet: Float32Array[];
  let report: ChildReport;

  beforeAll(async () => {
    await tf.setBackend('cpu');
    const cases = FLOAT16_RUNS.map((r, i) => {
      const v = inputs[i]!;
      return {
        xShape: r.x, dyShape: v.dyShape, wShape: v.filter, stride: r.s, pad: r.pad,
        x: [...v.x], dy: [...v.dy], w: [...v.w], b: [...v.b],
        settings: { maxTileSide: r.tile, wideLoads: r.wide, prefetch: r.prefetch, matrixDepth: r.depth },
      };
    });
    // A small ResNet's initial weights and images: its loss and gradients on the cpu backend here.
    const model = buildModel({ baseWidth: 8, blocks: [1, 1, 1, 1] });
    const weights = await Promise.all(model.getWeights().map(async (w) => ({ shape: w.shape, values: [...((await w.data()) as Float32Array)] })));
    cpuResnet = await read(() => resnetLossAndGrads(model, resnetImages, RESNET_LABELS));
    model.dispose();
    const resnet = { baseWidth: 8, labels: RESNET_LABELS, xs: [...resnetImages], weights };
    writeFileSync(path.join(dir, 'in.json'), JSON.stringify({ cases, resnet }));
    await promisify(execFile)(node!, ['test/helpers/tensor-cores-child.mjs', path.join(dir, 'in.json'), path.join(dir, 'out.json')], {
      env: { ...process.env, CIFAR_WEBGPU_MATMUL: 'tensor-cores' },
      timeout: LAVAPIPE_TIMEOUT_MS,
    });
    report = JSON.parse(readFileSync(path.join(dir, 'out.json'), 'utf8')) as ChildReport;
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('starts with float16 tensor cores for every kernel: the start-up check found all ResNet-18 convolutions, gradients included, within 2e-3 of float32', () => {
    expect(report.name).toBe('webgpu');
    expect(report.fallback).toBeNull();
    expect(report.detail).toContain('float16 tensor cores');
    expect(report.detail).not.toContain('forward convolutions only');
    expect(report).toMatchObject({ matmul: 'tensor-cores', matmulScope: 'all' });
    // The device's matrices and subgroups the programs were written for (lavapipe: 8 and 8).
    expect([8, 16]).toContain(report.side);
    expect(256 % report.subgroupSize).toBe(0);
  });

  it('a whole ResNet (batch norm, residual adds, the dense layer) on them: the cpu backend\'s float32 loss within 1e-3, and its gradients\' directions', () => {
    // As the emulated suite's test of the same name: float16 operands leave the loss within 3e-4 and
    // cosines of 0.98 and up; a wrong offset or scale gives cosines near 0.
    const gpu = report.resnet.map((g) => Float32Array.from(g));
    expect(gpu.length).toBe(cpuResnet.length);
    expectClose(gpu[0]!, cpuResnet[0]!, 1e-3, 'loss');
    cpuResnet.slice(1).forEach((expected, i) => expect(cosine(gpu[i + 1]!, expected), `gradient ${i}`).toBeGreaterThan(expected.length > 100 ? 0.99 : 0.95));
  });

  it('bench:gpu\'s load probe, with the real operations: all 128 cases read as the specification says (the harness agrees with a real driver)', () => {
    expect(report.probe).toEqual({ cases: 128, failed: [] });
  });

  it('auto (CIFAR_WEBGPU_MATMUL unset, the default) leaves them off on this software adapter: float32, no start-up check, nothing said', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env['CIFAR_WEBGPU_MATMUL'];
    const { stdout } = await promisify(execFile)(
      node!,
      [
        '--input-type=module',
        '-e',
        "import { initBackend } from './dist/backend/index.js'; import { matmulTried } from './dist/backend/webgpu-kernels/matrix.js'; import { matrixCheck } from './dist/backend/webgpu-kernels/matrix-check.js'; const r = await initBackend('webgpu'); console.log(JSON.stringify({ reason: r.reason, tried: matmulTried(), check: matrixCheck() ?? null })); process.exit(0);",
      ],
      { env, timeout: LAVAPIPE_TIMEOUT_MS },
    );
    const started = JSON.parse(stdout.trim().split('\n').at(-1)!) as { reason: string; tried: string; check: unknown };
    expect(started.reason).toContain('software adapter');
    expect(started.reason).not.toContain('float16');
    expect(started).toMatchObject({ tried: 'f32', check: null });
  });

  FLOAT16_RUNS.forEach((run, i) => {
    it(`${float16RunName(run)}: dW, dx, conv2d and fused conv2d within 2e-5 of the cpu backend on float16-rounded inputs`, async () => {
      const cpu = await float16Reference(run, inputs[i]!);
      const gpu = report.results[i]!;
      ['dW', 'dx', 'conv2d', 'fused'].forEach((label, k) => expectClose(Float32Array.from(gpu[k]!), cpu[k]!, 2e-5, label));
    });
  });
});
