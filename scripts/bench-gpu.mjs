#!/usr/bin/env node
// GPU training benchmark (webgpu): `npm run bench:gpu`, or on a GPU host from the packed bundle
//   bash .gpu/run-gpu.sh .gpu node .gpu/bench-gpu.cjs
// Options: [--model resnet18] [--batches 128,256,512] [--iterations 10] [--rounds 3] [--out bench-gpu.json]
//   (each rate: 2 warm-up runs, then --rounds rounds of --iterations runs; the median round)
//   [--stock] (tfjs' own conv-gradient kernels) [--no-reference] [--reference PATH]
//   [--check-batch 8] (first compare our conv-gradient kernels with tfjs' on the device; 0 skips)
//   [--submit-batch N] (tfjs' WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE, dispatches per queue submission)
//   [--stock-forward] (tfjs' forward convolution, with our gradient kernels)
//   [--tile 64|128] (largest GEMM tile side of our convolution kernels; default 128)
//   [--prefetch | --no-prefetch] (our GEMM kernels load the next K tile into registers during the
//     current one; default on)
//   [--vec4 | --no-vec4] (our GEMM kernels read their tiles from workgroup memory as vec4s; default on)
//   [--deep-k | --no-deep-k] (128 x 128 tiles 16 deep instead of 8 where the device's workgroup
//     memory allows; default on)
//   [--dx-forward] (stride-1 input gradients as our forward convolution with the flipped filter)
//   [--split-forward] (split K of bias-free linear forward convolutions that have few tiles)
//   [--vec4-loads | --no-vec4-loads] (our GEMM kernels load their operands from memory as vec4s
//     where channels allow; default on)
//   The defaults are those of CIFAR_WEBGPU_* in the environment (src/backend/webgpu-kernels/settings.ts).
//   [--matmul auto|f32|tensor-cores|emulated] (as CIFAR_WEBGPU_MATMUL: the convolutions' GEMMs in float32,
//     or float16 on subgroup matrices (tensor cores; also asks Dawn for allow_unsafe_apis and
//     vulkan_enable_f16_on_nvidia), or those emulated in plain WGSL (a correctness check); the
//     start line says when the device cannot and float32 runs instead; auto, the default: the
//     tensor cores on a hardware adapter that offers them, float32 elsewhere)
//   [--matrix-tk 16|32] (K depth of those float16 tiles, as CIFAR_WEBGPU_MATRIX_TK; default 16)
//   [--matrix-scale shared|registers|off] (how float16 gradients find dy's power-of-two scale, as
//   CIFAR_WEBGPU_MATRIX_SCALE=registers|0; default shared: a diagnosis)
//   [--dawn-toggles a,b] (Dawn toggles to enable, as CIFAR_WEBGPU_DAWN_TOGGLES: disable_robustness,
//     vulkan_enable_f16_on_nvidia, ...; the adapter's features are in the JSON)
//   [--cutout N] (the training step cuts a square of side N from each image, as cifar train
//     --cutout does; default 0)
//   [--ema DECAY] (the training step keeps a weight average, as cifar train --ema does; default 0)
//   [--mix] (every training step's batch mixed in pairs, as cifar train --cutmix does)
//   [--allow-software] (run on lavapipe with tiny defaults: a smoke test, not a measurement)
//   [--fresh-bind-groups] (as CIFAR_WEBGPU_BIND_GROUPS=fresh: a new bind group for every dispatch,
//     as tfjs does, instead of reusing the one made before for the same buffers)
//   [--dawn-backend null|vulkan|...] (as CIFAR_WEBGPU_DAWN_BACKEND: `null` is Dawn's null backend,
//     which runs no shader: the step figures are then the CPU side of a step alone, measurable
//     on any machine; no kernel check, profile or PyTorch reference)
// Runs reference-pytorch.py (next to this script, scripts/gpu/, or --reference) when present, and
// reports the training step's ratio to PyTorch's.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/** --name: true, --no-name: false, neither: undefined (the environment's setting); both: an error. */
function onOff(values, name) {
  if (values[name] && values[`no-${name}`]) throw new Error(`--${name} and --no-${name} exclude each other`);
  return values[name] ? true : values[`no-${name}`] ? false : undefined;
}

async function main() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      batches: { type: 'string' },
      iterations: { type: 'string' },
      rounds: { type: 'string' },
      out: { type: 'string', default: 'bench-gpu.json' },
      stock: { type: 'boolean', default: false },
      'allow-software': { type: 'boolean', default: false },
      'no-reference': { type: 'boolean', default: false },
      'no-profile': { type: 'boolean', default: false },
      reference: { type: 'string' },
      'check-batch': { type: 'string' },
      'submit-batch': { type: 'string' },
      tile: { type: 'string' },
      'stock-forward': { type: 'boolean' },
      prefetch: { type: 'boolean' },
      'no-prefetch': { type: 'boolean' },
      vec4: { type: 'boolean' },
      'no-vec4': { type: 'boolean' },
      'deep-k': { type: 'boolean' },
      'no-deep-k': { type: 'boolean' },
      'dx-forward': { type: 'boolean' },
      'split-forward': { type: 'boolean' },
      'vec4-loads': { type: 'boolean' },
      'no-vec4-loads': { type: 'boolean' },
      'dawn-toggles': { type: 'string' },
      'dawn-backend': { type: 'string' },
      'fresh-bind-groups': { type: 'boolean', default: false },
      matmul: { type: 'string' },
      'matrix-tk': { type: 'string' },
      'matrix-scale': { type: 'string' },
      cutout: { type: 'string' },
      ema: { type: 'string' },
      mix: { type: 'boolean', default: false },
    },
  });
  // Read when Dawn is created, inside benchmarkGpu.
  if (values['dawn-toggles'] !== undefined) process.env.CIFAR_WEBGPU_DAWN_TOGGLES = values['dawn-toggles'];
  if (values['dawn-backend'] !== undefined) process.env.CIFAR_WEBGPU_DAWN_BACKEND = values['dawn-backend'];
  if (values['fresh-bind-groups']) process.env.CIFAR_WEBGPU_BIND_GROUPS = 'fresh';
  // Read when the kernel settings load (below) and when Dawn is created.
  if (values.matmul !== undefined) process.env.CIFAR_WEBGPU_MATMUL = values.matmul;
  // The same rule as cifar train --cutout and config files: the config schema's.
  const { TrainConfigSchema } = await import('../dist/train/config.js');
  const cutout = values.cutout === undefined ? 0 : Number(values.cutout);
  if (!TrainConfigSchema.shape.cutout.safeParse(cutout).success) throw new Error(`--cutout: "${values.cutout}" is not a whole number of pixels from 0 to 32`);
  const ema = values.ema === undefined ? 0 : Number(values.ema);
  if (!TrainConfigSchema.shape.ema.safeParse(ema).success) throw new Error(`--ema: "${values.ema}" is not a decay from 0 (off) to below 1`);
  const { benchmarkGpu, formatGpuBench, parseTorchReference, ratiosToReference } = await import('../dist/bench/gpu.js');
  const soft = values['allow-software'];
  const result = await benchmarkGpu({
    model: values.model ?? (soft ? 'resnet10-w8' : 'resnet18'),
    batches: (values.batches ?? (soft ? '4,8' : '128,256,512')).split(',').map(Number),
    iterations: Number(values.iterations ?? (soft ? 2 : 10)),
    rounds: Number(values.rounds ?? (soft ? 1 : 3)),
    allowSoftware: soft,
    stockKernels: values.stock,
    profile: !values['no-profile'],
    checkBatch: Number(values['check-batch'] ?? (soft ? 2 : 8)),
    submitBatch: values['submit-batch'] === undefined ? undefined : Number(values['submit-batch']),
    stockForward: values['stock-forward'],
    cutout,
    ema,
    mix: values.mix,
    kernels: {
      maxTileSide: values.tile === undefined ? undefined : values.tile === '64' ? 64 : 128,
      prefetch: onOff(values, 'prefetch'),
      vec4: onOff(values, 'vec4'),
      deepK: onOff(values, 'deep-k'),
      inputGradForward: values['dx-forward'],
      splitForward: values['split-forward'],
      wideLoads: onOff(values, 'vec4-loads'),
      matrixDepth: values['matrix-tk'] === undefined ? undefined : values['matrix-tk'] === '32' ? 32 : 16,
      matrixScale: values['matrix-scale'] === undefined ? undefined : values['matrix-scale'] === 'registers' ? 'registers' : values['matrix-scale'] === 'off' ? 'off' : 'shared',
    },
    onProgress: (m) => process.stderr.write(`${m}\n`),
  });

  let references = [];
  const here = dirname(fileURLToPath(import.meta.url));
  // Next to the bundle in .gpu/, in scripts/gpu/ in the repository.
  const script = values.reference ?? [join(here, 'reference-pytorch.py'), join(here, 'gpu', 'reference-pytorch.py')].find((p) => existsSync(p));
  if (!values['no-reference'] && !result.software && !result.runsNothing && script && existsSync(script)) {
    process.stderr.write(`running python3 ${script}\n`);
    const run = spawnSync('python3', [script], { encoding: 'utf8', timeout: 300_000 });
    references = parseTorchReference(run.stdout ?? '');
    if (references.length === 0) process.stderr.write(`reference gave no figures (exit ${run.status}): ${(run.stderr ?? '').trim().split('\n').pop()}\n`);
  }
  const out = { ...result, reference: references, ratioToReference: ratiosToReference(result, references) };
  await writeFile(values.out, JSON.stringify(out, null, 2) + '\n');
  process.stdout.write(formatGpuBench(result, references));
  process.stderr.write(`wrote ${values.out}\n`);
}

main().then(
  () => process.exit(0), // Dawn keeps the event loop alive
  (err) => {
    process.stderr.write(`bench-gpu: ${err?.message ?? err}${err?.hint ? `\n  ${err.hint}` : ''}\n`);
    process.exit(1);
  },
);
