#!/usr/bin/env node
// Training-step benchmark of cifar train's trainer in one and several threads: `npm run build` first, then
//   node scripts/bench-train.mjs [--backend wasm|cpu] [--models resnet18-w4,resnet10-w8] [--batch 128] [--threads 2,4] [--seconds 10] [--out bench-train.json]
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { benchmarkTraining, formatTrainBench } from '../dist/train/bench.js';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'wasm' },
    models: { type: 'string', default: 'resnet18-w4,resnet10-w8' },
    batch: { type: 'string', default: '128' },
    threads: { type: 'string' },
    seconds: { type: 'string', default: '10' },
    out: { type: 'string', default: 'bench-train.json' },
  },
});
const result = await benchmarkTraining({
  backend: values.backend,
  presets: values.models.split(','),
  batch: Number(values.batch),
  ...(values.threads ? { threads: values.threads.split(',').map(Number) } : {}),
  minSeconds: Number(values.seconds),
  onProgress: (m) => process.stderr.write(`${m}\n`),
});
await writeFile(values.out, JSON.stringify(result, null, 2) + '\n');
process.stdout.write(formatTrainBench(result));
process.stderr.write(`wrote ${values.out}\n`);
// The training threads end with the trainers; nothing else keeps the process up.
