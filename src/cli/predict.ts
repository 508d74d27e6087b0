import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { Command, Option } from 'commander';
import { BACKEND_NAMES, type BackendRequest } from '../backend/index.js';
import { CifarError, isCifarError } from '../errors.js';
import { IMAGE_BYTES, prepareImage } from '../image/preprocess.js';
import { loadPredictor } from '../model/load.js';
import { formatPredictions, type PredictionLine } from '../report/predict.js';
import { DEFAULT_MODEL_DIR } from './defaults.js';
import { action, positiveInt } from './run.js';

const IMAGE_EXT = new Set(['.png', '.jpg', '.jpeg', '.webp', '.gif', '.tif', '.tiff', '.avif', '.bmp']);

/** Files named on the command line, with folders expanded to the images inside them (recursively). */
async function expand(paths: string[]): Promise<string[]> {
  const files: string[] = [];
  for (const p of paths) {
    const info = await stat(p).catch(() => undefined);
    if (info?.isDirectory()) {
      const entries = await readdir(p, { recursive: true, withFileTypes: true });
      const found = entries
        .filter((e) => e.isFile() && IMAGE_EXT.has(extname(e.name).toLowerCase()))
        .map((e) => join(e.parentPath ?? p, e.name))
        .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
      if (found.length === 0) throw new CifarError('USAGE', `${p}: no images in this folder`);
      files.push(...found);
    } else {
      files.push(p); // a missing file is reported with the others, not as a usage error
    }
  }
  return files;
}

export function predictCommand(): Command {
  return new Command('predict')
    .description('classify images offline (PNG, JPEG, WebP, GIF, TIFF, AVIF; any size)')
    .argument('<images...>', 'image files or folders of images')
    .option('--model <dir>', 'model folder', DEFAULT_MODEL_DIR)
    .option('--top <k>', 'show the K most likely classes', positiveInt('--top'), 1)
    .option('--json', 'one JSON object per image, with the API fields (prediction, class_name, confidence, probabilities)')
    .option('--tta', 'flip test-time augmentation: the mean of each image\'s and its mirror image\'s probabilities (twice the compute)')
    .addOption(new Option('--backend <name>', 'tfjs backend').choices(BACKEND_NAMES as unknown as string[]).default('auto'))
    .action(
      action(async (_ctx, paths: string[], opts: { model: string; top: number; json?: boolean; tta?: boolean; backend: BackendRequest }) => {
        const files = await expand(paths);
        const { predictor, backend } = await loadPredictor(opts.model, opts.backend, { tta: opts.tta === true });
        if (!opts.json) process.stderr.write(`backend: ${backend.reason}${opts.tta ? '; flip TTA' : ''}\n`);
        const lines: PredictionLine[] = [];
        const good: { index: number; pixels: Uint8Array }[] = [];
        for (const [index, file] of files.entries()) {
          try {
            const data = await readFile(file).catch((err: NodeJS.ErrnoException) => {
              throw new CifarError('INVALID_IMAGE', `${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
            });
            good.push({ index, pixels: (await prepareImage(data, file)).pixels });
            lines.push({ file });
          } catch (err) {
            if (!isCifarError(err)) throw err;
            lines.push({ file, error: err.message });
          }
        }
        const batch = new Uint8Array(good.length * IMAGE_BYTES);
        good.forEach((g, i) => batch.set(g.pixels, i * IMAGE_BYTES));
        const k = predictor.info.classes.length;
        const probs = good.length > 0 ? await predictor.predict(batch, good.length) : new Float32Array(0);
        good.forEach((g, i) => {
          lines[g.index]!.probabilities = Array.from(probs.subarray(i * k, (i + 1) * k));
        });
        process.stdout.write(formatPredictions(lines, predictor.info, { top: opts.top, json: opts.json === true }));
        predictor.dispose();
        const failed = lines.filter((l) => l.error).length;
        if (failed > 0) {
          process.stderr.write(`${failed} of ${lines.length} image${lines.length === 1 ? '' : 's'} could not be read\n`);
          process.exitCode = 1;
        }
      }),
    );
}
