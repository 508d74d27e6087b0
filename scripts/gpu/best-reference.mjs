#!/usr/bin/env node
// The best of the PyTorch recipe runs that train-run.sh kept (reference-train.py's JSON files in
// a folder), as `cifar train` flags over configs/resnet18.json, so that the next call of a GPU
// session trains ours with it without anyone reading the results first (TRAIN_FLAGS=best-reference):
//   node best-reference.mjs /tmp/reference-runs        # flags on stdout, the choice on stderr
// Only runs that finished all their epochs compete (a run cut at its deadline is not comparable);
// the best final test accuracy wins, the earlier file name on a tie. With none, it prints nothing
// and says why on stderr (exit 0: the caller trains the config as it is).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** reference-train.py's flag → cifar train's, for the recipe keys both have (vars(args) names). */
const FLAGS = [
  ['epochs', '--epochs'],
  ['batch', '--batch-size'],
  ['lr', '--lr'],
  ['warmup', '--warmup'],
  ['wd', '--weight-decay'],
  ['smoothing', '--label-smoothing'],
  ['cutout', '--cutout'],
  ['mixup', '--mixup'],
  ['cutmix', '--cutmix'],
  ['mix_until', '--mix-until'],
  ['ema', '--ema'],
];

/** A reference recipe (its JSON's `recipe`) as cifar train flags, every one written out. */
export function referenceFlags(recipe) {
  if (recipe.pad !== undefined && recipe.pad !== 4) throw new Error(`padding ${recipe.pad}: cifar train takes it only in a config file (cropPadding)`);
  return FLAGS.filter(([key]) => recipe[key] !== undefined).flatMap(([key, flag]) => [flag, String(recipe[key])]);
}

/** The finished run with the best final test accuracy among `runs` ({ name, result }), or undefined. */
export function bestReference(runs) {
  const finished = runs.filter(({ result }) => Array.isArray(result.history) && result.history.length > 0 && result.history.length === result.recipe.epochs);
  let best;
  for (const run of finished) {
    const accuracy = run.result.history.at(-1).testAccuracy;
    if (best === undefined || accuracy > best.accuracy) best = { ...run, accuracy };
  }
  return best;
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: best-reference.mjs FOLDER\n');
    process.exit(2);
  }
  let names = [];
  try {
    names = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  } catch {
    // No folder: no runs.
  }
  const runs = names.map((name) => ({ name, result: JSON.parse(readFileSync(join(dir, name), 'utf8')) }));
  const best = bestReference(runs);
  if (best === undefined) {
    process.stderr.write(`best reference: none of ${runs.length} run(s) in ${dir} finished its epochs\n`);
  } else {
    const flags = referenceFlags(best.result.recipe);
    process.stderr.write(`best reference: ${best.name}, ${(100 * best.accuracy).toFixed(2)}% after ${best.result.history.length} epochs (of ${runs.length} run(s)): ${flags.join(' ')}\n`);
    process.stdout.write(`${flags.join(' ')}\n`);
  }
}
