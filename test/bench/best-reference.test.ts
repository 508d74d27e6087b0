import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/fixtures.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterAll(() => cleanup());

/** reference-train.py's JSON: its recipe (vars(args)) and a history of `epochs` rows ending at `accuracy`. */
function result(recipe: Record<string, unknown>, epochs: number, accuracy: number) {
  const full = { epochs: 50, batch: 256, lr: 0.2, warmup: 0.1, wd: 5e-4, smoothing: 0.1, pad: 4, cutout: 16, precision: 'bf16', ema: 0, mixup: 0, cutmix: 0, mix_until: 1, ...recipe };
  return { recipe: full, history: Array.from({ length: epochs }, (_, i) => ({ epoch: i + 1, testAccuracy: i + 1 === epochs ? accuracy : 0.5 })) };
}

const run = (folder: string) => promisify(execFile)(process.execPath, ['scripts/gpu/best-reference.mjs', folder]);

describe('best-reference.mjs (TRAIN_FLAGS=best-reference in train-run.sh)', () => {
  it('prints the cifar train flags of the finished run with the best final test accuracy; a run cut short does not compete', async () => {
    const folder = join(dir, 'runs');
    await mkdir(folder);
    await writeFile(join(folder, 'reference-train-cutout16.json'), JSON.stringify(result({}, 50, 0.9202)));
    await writeFile(join(folder, 'reference-train-cutmix.json'), JSON.stringify(result({ batch: 128, lr: 0.1, cutmix: 1, mix_until: 0.8, ema: 0.999 }, 50, 0.9311)));
    // Cut at its deadline after 31 epochs: its accuracy is not a 50-epoch figure.
    await writeFile(join(folder, 'reference-train-cut.json'), JSON.stringify(result({ smoothing: 0.2 }, 31, 0.95)));
    const { stdout, stderr } = await run(folder);
    expect(stdout.trim()).toBe('--epochs 50 --batch-size 128 --lr 0.1 --warmup 0.1 --weight-decay 0.0005 --label-smoothing 0.1 --cutout 16 --mixup 0 --cutmix 1 --mix-until 0.8 --ema 0.999');
    expect(stderr).toBe(`best reference: reference-train-cutmix.json, 93.11% after 50 epochs (of 3 run(s)): ${stdout.trim()}\n`);
  });

  it('a longer schedule that wins passes on its epochs (train-run.sh trains that many)', async () => {
    const folder = join(dir, 'longer');
    await mkdir(folder);
    await writeFile(join(folder, 'reference-train-cutout16.json'), JSON.stringify(result({}, 50, 0.9202)));
    await writeFile(join(folder, 'reference-train-epochs-100.json'), JSON.stringify(result({ epochs: 100 }, 100, 0.9305)));
    const { stdout } = await run(folder);
    expect(stdout.trim()).toMatch(/^--epochs 100 --batch-size 256 /);
  });

  it('prints nothing (the config trains as it is) and says why when no run finished, or there is no folder', async () => {
    const folder = join(dir, 'unfinished');
    await mkdir(folder);
    await writeFile(join(folder, 'reference-train-a.json'), JSON.stringify(result({}, 12, 0.8)));
    const unfinished = await run(folder);
    expect(unfinished.stdout).toBe('');
    expect(unfinished.stderr).toBe(`best reference: none of 1 run(s) in ${folder} finished its epochs\n`);
    const missing = await run(join(dir, 'nothing'));
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toContain('none of 0 run(s)');
  });
});
