import cliProgress from 'cli-progress';
import { Command, Option } from 'commander';
import { BACKEND_NAMES } from '../backend/index.js';
import { CifarError } from '../errors.js';
import { modelPresetNames } from '../model/resnet.js';
import { formatSeconds } from '../report/format.js';
import { epochHeader, formatEpoch, formatPlan, formatRecipe } from '../report/train.js';
import { resolveTrainConfig, TrainConfigSchema } from '../train/config.js';
import { trainModel } from '../train/train.js';
import { PACKAGE_VERSION } from './defaults.js';
import { action, durationArg, flagName, positiveInt, workersArg } from './run.js';

function positiveNumber(flag: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new CifarError('USAGE', `${flag} ${v}: expected a positive number`);
    return n;
  };
}

/** A number checked by the config schema's own rule for `key`, so the flag and a config file agree. */
function schemaNumber(flag: string, key: 'cutout' | 'mixup' | 'cutmix' | 'mixUntil' | 'ema' | 'labelSmoothing' | 'weightDecay' | 'warmup' | 'momentum', expected: string): (v: string) => number {
  return (v) => {
    const n = v.trim() === '' ? NaN : Number(v);
    if (!TrainConfigSchema.shape[key].safeParse(n).success) throw new CifarError('USAGE', `${flag} ${v}: expected ${expected}`);
    return n;
  };
}

export function trainCommand(): Command {
  return new Command('train')
    .description('train a model on data/cifar-10-batches-bin and save it to models/NAME')
    .option('--config <file>', 'JSON config (configs/NAME.json); flags override it')
    .option('--model <name>', `architecture: ${modelPresetNames().join(', ')} (default resnet18-w4)`)
    .option('--init <dir>', 'start from the weights of this saved model (fine-tuning, or more epochs for a finished one) instead of random ones; same --model')
    .option('--epochs <n>', 'passes over the training set (default 30)', positiveInt('--epochs'))
    .option('--time-limit <duration>', 'as many epochs as fit in this wall time (e.g. 600, 10m, 1h30m), at most --epochs, the learning-rate schedule fitted to them', (v) => durationArg('--time-limit', v, '600, 600s, 10m or 1h30m'))
    .option('--batch-size <n>', 'images per step (default 128)', positiveInt('--batch-size'))
    .option('--lr <x>', 'peak learning rate of the one-cycle schedule (default 0.1)', positiveNumber('--lr'))
    .addOption(new Option('--backend <name>', 'tfjs backend (default auto)').choices(BACKEND_NAMES as unknown as string[]))
    .option('--workers <n>', 'training threads on the CPU backends (wasm, cpu), each with a copy of the model and a share of every batch, at least 16 images a share (default auto: one per core there, 1 on a GPU)', workersArg)
    .option('--data <dir>', 'data directory (default data)')
    .option('--out <dir>', 'output folder (default models/default)')
    .option('--resume', 'continue the run checkpointed in --out')
    .option('--limit <n>', 'train on the first N images only', positiveInt('--limit'))
    .option('--test-limit <n>', 'evaluate on the first N test images only', positiveInt('--test-limit'))
    .option('--test-every <n>', 'test pass after every Nth epoch and the last (default 1: every epoch)', positiveInt('--test-every'))
    .addOption(new Option('--weights <dtype>', 'precision of the saved weights (default float32)').choices(['float32', 'float16']))
    .option('--cutout <px>', 'cutout augmentation: blank one square of this side per image (paper: 16; default 0, off)', schemaNumber('--cutout', 'cutout', 'a whole number of pixels from 0 (off) to 32'))
    .option('--mixup <alpha>', 'MixUp: mix each batch\'s images in pairs, weight ~ Beta(alpha, alpha) a batch (common: 0.2; default 0, off)', schemaNumber('--mixup', 'mixup', 'an alpha from 0 (off) to 100'))
    .option('--cutmix <alpha>', 'CutMix: paste a box of each image\'s pair into it, area ~ Beta(alpha, alpha) a batch (paper: 1; default 0, off)', schemaNumber('--cutmix', 'cutmix', 'an alpha from 0 (off) to 100'))
    .option('--mix-until <fraction>', 'mix (--mixup, --cutmix) only in this first fraction of the steps (default 1: throughout)', schemaNumber('--mix-until', 'mixUntil', 'a fraction above 0, up to 1'))
    .option('--warmup <fraction>', 'fraction of the steps warming the learning rate up (default 0.15)', schemaNumber('--warmup', 'warmup', 'a fraction from 0 to 1'))
    .option('--momentum <x>', 'Nesterov momentum (default 0.9)', schemaNumber('--momentum', 'momentum', 'a number from 0 to 1'))
    .option('--weight-decay <x>', 'L2 weight decay of conv and dense kernels (default 5e-4)', schemaNumber('--weight-decay', 'weightDecay', 'a number ≥ 0'))
    .option('--label-smoothing <x>', 'label smoothing of the targets (default 0.1)', schemaNumber('--label-smoothing', 'labelSmoothing', 'a number from 0 to 0.5'))
    .option('--ema <decay>', 'test and save an exponential moving average of the weights with this decay a step, e.g. 0.999 (default 0, off)', schemaNumber('--ema', 'ema', 'a decay from 0 (off) to below 1'))
    .option('--seed <n>', 'seed of the initial weights, data order and augmentation (default 0)', (v) => Number(v))
    .option('--quiet', 'no progress, only the final summary')
    .action(
      action(async ({ signal }, opts: Record<string, unknown>) => {
        const { config: file, resume, quiet, ...flags } = opts as { config?: string; resume?: boolean; quiet?: boolean } & Record<string, unknown>;
        if (resume) {
          const changed = Object.keys(flags).filter((k) => !['out', 'backend', 'workers'].includes(k));
          if (file || changed.length > 0) {
            throw new CifarError('USAGE', `--resume continues the saved run as it was; it takes only --out, --backend and --workers (got ${[file ? 'config' : '', ...changed].filter(Boolean).map(flagName).join(', ')})`);
          }
        }
        if (flags.model !== undefined && !modelPresetNames().includes(String(flags.model))) {
          throw new CifarError('USAGE', `--model ${flags.model}: unknown model; valid choices: ${modelPresetNames().join(', ')}`);
        }
        const config = await resolveTrainConfig(file, flags);
        const tty = process.stderr.isTTY && !quiet;
        const bar = tty ? new cliProgress.SingleBar({ stream: process.stderr, format: 'epoch {epoch} [{bar}] {percentage}% | loss {loss} acc {acc} | {ips} img/s | ETA {eta_formatted}', hideCursor: true, etaBuffer: 30 }, cliProgress.Presets.shades_classic) : undefined;
        let epochs = config.epochs;
        const log = (line: string) => {
          if (quiet) return;
          if (bar) bar.stop();
          process.stderr.write(line + '\n');
        };
        // The column header comes right before the first row (after the compile line, if any).
        let headed = false;
        const header = () => {
          if (!headed) log(epochHeader());
          headed = true;
        };
        try {
          const result = await trainModel(config, {
            signal,
            resume: resume === true,
            packageVersion: PACKAGE_VERSION,
            onStart: (info) => {
              log(`backend: ${info.backend.reason}`);
              epochs = info.epochs;
              log(`model ${info.model} (${info.parameters.toLocaleString('en-US')} parameters), ${info.trainImages.toLocaleString('en-US')} train / ${info.testImages.toLocaleString('en-US')} test images, ${info.steps} steps per epoch${info.resumedAt ? `, resuming at epoch ${info.resumedAt.epoch + 1} step ${info.resumedAt.step}` : ''}`);
              log(formatRecipe(info.config));
            },
            // Only for the bar: each report is a read from the device (not awaited, but not free).
            onStep: bar && ((p) => {
              epochs = p.epochs;
              header();
              const payload = { epoch: `${p.epoch}/${p.epochs}`, loss: p.loss.toFixed(3), acc: `${(p.accuracy * 100).toFixed(1)}%`, ips: p.imagesPerSecond.toFixed(0) };
              // An update right after start has no elapsed time and shows the ETA as "NFs".
              if (p.step <= 10 || !bar.isActive) bar.start(p.steps, p.step, payload);
              else bar.update(p.step, payload);
            }),
            onPlan: (p) => {
              epochs = p.epochs;
              log(formatPlan(p));
            },
            onCompile: (c) => log(`compiled ${c.programs} GPU programs in parallel in ${c.seconds.toFixed(1)} s`),
            onEpoch: (r) => {
              header();
              log(formatEpoch(r, epochs));
            },
          });
          bar?.stop();
          const m = result.metadata;
          const limit = typeof m.config?.['timeLimit'] === 'number' ? m.config['timeLimit'] : undefined;
          const within = limit === undefined || m.wallSeconds === undefined ? '' : `, ${m.wallSeconds <= limit ? 'within' : 'past'} the time limit of ${formatSeconds(limit)}`;
          // A run planned to a time limit may end within its last epoch.
          const last = result.history.at(-1);
          const trained = last?.fraction === undefined ? `${m.epochs} epoch${m.epochs === 1 ? '' : 's'}` : `${(result.history.length - 1 + last.fraction).toFixed(2)} epochs`;
          process.stdout.write(
            `saved ${result.out} (version ${m.version}): test accuracy ${((m.testAccuracy ?? 0) * 100).toFixed(2)}% after ${trained} in ${formatSeconds(m.trainingSeconds)} of training${m.wallSeconds === undefined ? '' : ` (${formatSeconds(m.wallSeconds)} in all${within})`} on ${m.backend}\n`,
          );
        } finally {
          bar?.stop();
        }
      }),
    );
}
