#!/usr/bin/env node
// Model throughput benchmark: `npm run build` first, then
//   node scripts/bench-model.mjs [--backends tensorflow,webgpu,wasm,cpu] [--models resnet18,resnet18-w4] [--seconds 3] [--out bench-model.json]
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { benchmarkModels, formatModelBench } from '../dist/model/bench.js';
import { modelPresetNames } from '../dist/model/resnet.js';

const { values } = parseArgs({
  options: {
    backends: { type: 'string', default: 'tensorflow,webgpu,wasm,cpu' },
    models: { type: 'string', default: modelPresetNames().join(',') },
    seconds: { type: 'string', default: '3' },
    'train-batch': { type: 'string', default: '128' },
    out: { type: 'string', default: 'bench-model.json' },
  },
});
const result = await benchmarkModels({
  backends: values.backends.split(','),
  presets: values.models.split(','),
  minSeconds: Number(values.seconds),
  trainBatch: Number(values['train-batch']),
  onProgress: (m) => process.stderr.write(`${m}\n`),
});
await writeFile(values.out, JSON.stringify(result, null, 2) + '\n');
process.stdout.write(formatModelBench(result));
process.stderr.write(`wrote ${values.out}\n`);
