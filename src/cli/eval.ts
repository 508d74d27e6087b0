import { availableParallelism } from 'node:os';
import { Command, Option } from 'commander';
import sharp from 'sharp';
import { BACKEND_NAMES, initBackend, type BackendRequest } from '../backend/index.js';
import { datasetPath, loadSplit } from '../data/cifar-binary.js';
import { compileEvaluation } from '../eval/evaluate.js';
import { confusionMatrix, metricsFromConfusion } from '../eval/metrics.js';
import { CifarError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { MODEL_PRESETS } from '../model/resnet.js';
import { loadModel } from '../model/store.js';
import { createParallelEvaluator, evaluationThreads } from '../train/parallel.js';
import { confusionSvg, formatEval } from '../report/eval.js';
import { DEFAULT_MODEL_DIR } from './defaults.js';
import { action, positiveInt, workersArg } from './run.js';

export function evalCommand(): Command {
  return new Command('eval')
    .description('test accuracy, per-class precision/recall/F1 and the confusion matrix of a model')
    .option('--model <dir>', 'model folder', DEFAULT_MODEL_DIR)
    .option('--data <dir>', 'data directory', 'data')
    .option('--limit <n>', 'evaluate the first N test images only', positiveInt('--limit'))
    .addOption(new Option('--backend <name>', 'tfjs backend').choices(BACKEND_NAMES as unknown as string[]).default('auto'))
    .option('--workers <n>', 'evaluation threads on the CPU backends (wasm, cpu), each with a copy of the model and a share of the images, at least 250 a thread (auto: one per core there, 1 on a GPU)', workersArg, 'auto')
    .option('--tta', 'test-time augmentation: average the predictions on each image and its mirror image (twice the time)')
    .option('--json', 'print one JSON object with all the numbers')
    .option('--plot <file>', 'write the confusion matrix as a picture (.png or .svg)')
    .option('--min-accuracy <x>', 'exit 1 when accuracy is below X (0–1 or a percentage like 85%)', parseAccuracy)
    .action(
      action(async (_ctx, opts: { model: string; data: string; limit?: number; backend: BackendRequest; workers: number | 'auto'; tta?: boolean; json?: boolean; plot?: string; minAccuracy?: number }) => {
        if (opts.plot && !/\.(png|svg)$/i.test(opts.plot)) throw new CifarError('USAGE', `--plot ${opts.plot}: use a .png or .svg file name`);
        const folder = datasetPath(opts.data);
        const test = await loadSplit(folder, 'test', { limit: opts.limit });
        const backend = await initBackend(opts.backend);
        const { model, metadata } = await loadModel(opts.model);
        // On wasm and cpu, a thread a core, each evaluating a share of the images (a model of a
        // known preset: the threads build their copies from it).
        const threads = MODEL_PRESETS.has(metadata.architecture) ? evaluationThreads(opts.workers, backend.name, test.count, availableParallelism()) : 1;
        if (!opts.json) process.stderr.write(`backend: ${backend.reason}${threads > 1 ? `; ${threads} evaluation threads` : ''}\n`);
        const evalOptions = { batchSize: 250, tta: opts.tta === true };
        // On webgpu, all of its programs compile at once instead of one by one as they first run
        // (and the rate below leaves compilation out).
        await compileEvaluation(model, metadata.normalization, test.count, evalOptions);
        // One thread: no workers, evaluateModel on the whole test set.
        const evaluator = createParallelEvaluator(model, { ranks: threads, backend: backend.name as 'wasm' | 'cpu', model: metadata.architecture });
        const started = performance.now();
        let ev;
        try {
          ev = await evaluator.evaluate(test, metadata.normalization, evalOptions);
        } finally {
          evaluator.dispose();
        }
        const imagesPerSecond = test.count / ((performance.now() - started) / 1000);
        model.dispose();
        const metrics = metricsFromConfusion(confusionMatrix(test.labels, ev.predictions, metadata.classes.length), metadata.classes);
        if (opts.plot) {
          const svg = confusionSvg(metrics, `${metadata.name} (${metadata.version})`);
          await writeFileAtomic(opts.plot, /\.svg$/i.test(opts.plot) ? svg : await sharp(Buffer.from(svg)).png().toBuffer(), `--plot ${opts.plot}`);
        }
        const tta = ev.tta ? 'flip' : 'none';
        const result = { model: opts.model, modelVersion: metadata.version, backend: backend.name, tta, loss: ev.loss, imagesPerSecond, ...metrics };
        process.stdout.write(opts.json ? JSON.stringify(result) + '\n' : formatEval(metrics, { model: `${metadata.name} ${metadata.version}`, imagesPerSecond, backend: backend.name, tta }, process.stdout.isTTY === true));
        if (opts.minAccuracy !== undefined && metrics.accuracy < opts.minAccuracy) {
          process.stderr.write(`accuracy ${(metrics.accuracy * 100).toFixed(2)}% is below --min-accuracy ${(opts.minAccuracy * 100).toFixed(2)}%\n`);
          process.exitCode = 1;
        }
      }),
    );
}

function parseAccuracy(v: string): number {
  const pct = v.endsWith('%');
  const n = Number(pct ? v.slice(0, -1) : v);
  const x = pct || n > 1 ? n / 100 : n;
  if (!Number.isFinite(n) || x < 0 || x > 1) throw new CifarError('USAGE', `--min-accuracy ${v}: expected a fraction (0.85) or a percentage (85%)`);
  return x;
}
