import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { BATCH_FILES } from '../../src/data/cifar-binary.js';
import { makeRecords, tempDir, writeLearnableDataset } from '../helpers/fixtures.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  ({ dir, cleanup } = await tempDir());
  await writeLearnableDataset(join(dir, 'data', 'cifar-10-batches-bin'), 32);
});
afterAll(() => cleanup());

describe('cifar train (CLI)', () => {
  it.each([
    ['Ctrl-C', 'SIGINT', 130],
    ['SIGTERM (timeout, a job scheduler)', 'SIGTERM', 143],
  ] as const)('on %s (%s) saves a checkpoint, exits %i and prints the command that resumes', async (_, signal, code) => {
    const out = join(dir, `m-${signal}`);
    let stderr = '';
    let sent = false;
    const res = await runCli(['train', '--model', 'resnet10-w8', '--epochs', '200', '--batch-size', '16', '--backend', 'wasm', '--data', join(dir, 'data'), '--out', out], {
      onStart: (child) => {
        child.stderr!.on('data', (d) => {
          stderr += d;
          // The first epoch row means training is under way.
          if (!sent && /^\s*1\/200 /m.test(stderr)) {
            sent = true;
            child.kill(signal);
          }
        });
      },
    });
    expect(res.code).toBe(code);
    expect(res.stderr).toMatch(/checkpoint saved in .*checkpoint — resume with: cifar train --resume --out /);
    expect(res.stderr).not.toMatch(/^\s+at /m);
    const state = JSON.parse(await readFile(join(out, 'checkpoint', 'state.json'), 'utf8'));
    // Stopped within the epoch after the signal: a step boundary, not the end of the run.
    expect(state.epoch).toBeGreaterThanOrEqual(1);
    expect(state.epoch).toBeLessThanOrEqual(2);
    expect(existsSync(join(out, 'history.jsonl'))).toBe(true);
  });

  it('refuses to change the recipe of a resumed run', async () => {
    const res = await runCli(['train', '--resume', '--out', join(dir, 'm-SIGINT'), '--lr', '0.5', '--time-limit', '10m']);
    expect(res.code).toBe(2);
    // The flags as the user typed them.
    expect(res.stderr).toMatch(/--resume continues the saved run as it was; .* \(got --lr, --time-limit\)/);
  });

  it('names the checkpointed run\'s model and epochs when it resumes, not the defaults', async () => {
    let stderr = '';
    let sent = false;
    const res = await runCli(['train', '--resume', '--out', join(dir, 'm-SIGTERM'), '--backend', 'wasm'], {
      onStart: (child) => {
        child.stderr!.on('data', (d) => {
          stderr += d;
          if (!sent && /resuming at epoch/.test(stderr)) {
            sent = true;
            child.kill('SIGINT');
          }
        });
      },
    });
    expect(res.code).toBe(130);
    expect(res.stderr).toMatch(/^model resnet10-w8 \(.*, resuming at epoch \d+ step \d+$/m);
  });

  it('passes --cutout to the run: the saved model\'s config records it; a bad side is a usage error', async () => {
    const out = join(dir, 'm-cutout');
    const res = await runCli(['train', '--model', 'resnet10-w8', '--epochs', '1', '--batch-size', '16', '--backend', 'wasm', '--data', join(dir, 'data'), '--out', out, '--cutout', '8', '--quiet']);
    expect(res.code, res.stderr).toBe(0);
    const meta = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8'));
    expect(meta.config).toMatchObject({ cutout: 8, cropPadding: 4, flip: true });
    for (const bad of ['-1', '2.5', '33']) {
      const r = await runCli(['train', '--cutout', bad, '--data', join(dir, 'none')]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`--cutout ${bad.replace('.', '\\.')}: expected a whole number of pixels from 0 \\(off\\) to 32`));
    }
  });

  it('passes the recipe flags (--ema, --label-smoothing, --weight-decay, --warmup, --momentum, --mixup, --cutmix, --mix-until) to the run; out-of-range values are usage errors', async () => {
    const out = join(dir, 'm-recipe');
    const res = await runCli(['train', '--model', 'resnet10-w8', '--epochs', '1', '--batch-size', '16', '--backend', 'wasm', '--data', join(dir, 'data'), '--out', out, '--ema', '0.9', '--label-smoothing', '0.2', '--weight-decay', '0', '--warmup', '0.3', '--momentum', '0.8', '--mixup', '0.2', '--cutmix', '1', '--mix-until', '0.8']);
    expect(res.code, res.stderr).toBe(0);
    const meta = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8'));
    expect(meta.config).toMatchObject({ ema: 0.9, labelSmoothing: 0.2, weightDecay: 0, warmup: 0.3, momentum: 0.8, mixup: 0.2, cutmix: 1, mixUntil: 0.8 });
    // With an average, the epoch row adds the live weights' test accuracy; mixing until 80% of the steps, how much was mixed.
    expect(res.stderr).toMatch(/^ +1\/1 .*\(live weights \d+\.\d\d%\) {2}\(mixed 80%\)$/m);
    // The recipe line before the epochs says what the flags set.
    expect(res.stderr).toMatch(/^recipe: 1 epoch of batch 16, .*SGD Nesterov 0\.8, weight decay 0, label smoothing 0\.2, weight average 0\.9; .*mixup 0\.2 or cutmix 1 \(first 80% of the steps\); seed 0$/m);
    const cases: [string, string, string][] = [
      ['--ema', '1', 'a decay from 0 \\(off\\) to below 1'],
      ['--ema', '-0.1', 'a decay from 0 \\(off\\) to below 1'],
      ['--label-smoothing', '0.6', 'a number from 0 to 0\\.5'],
      ['--weight-decay', '-1', 'a number ≥ 0'],
      ['--warmup', '2', 'a fraction from 0 to 1'],
      ['--momentum', 'x', 'a number from 0 to 1'],
      ['--mixup', '-1', 'an alpha from 0 \\(off\\) to 100'],
      ['--cutmix', 'x', 'an alpha from 0 \\(off\\) to 100'],
      ['--mix-until', '0', 'a fraction above 0, up to 1'],
    ];
    for (const [flag, bad, expected] of cases) {
      const r = await runCli(['train', flag, bad, '--data', join(dir, 'none')]);
      expect(r.code, `${flag} ${bad}`).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`${flag} ${bad.replace('.', '\\.')}: expected ${expected}`));
    }
  });

  it('passes --test-every: epochs without a test pass print dashes and the config records it; 0 is a usage error', async () => {
    const out = join(dir, 'm-every');
    const res = await runCli(['train', '--model', 'resnet10-w8', '--epochs', '2', '--batch-size', '16', '--backend', 'wasm', '--data', join(dir, 'data'), '--out', out, '--test-every', '2']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/^ {2}1\/2 .*—.*—/m);
    expect(res.stderr).toMatch(/^ {2}2\/2 .*%.*%/m);
    const meta = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8'));
    expect(meta.config).toMatchObject({ testEvery: 2 });
    const bad = await runCli(['train', '--test-every', '0', '--data', join(dir, 'none')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--test-every 0');
  });

  it('passes --time-limit as seconds: the plan is printed and the config records the limit; what is not a duration is a usage error', async () => {
    const out = join(dir, 'm-limit');
    const res = await runCli(['train', '--model', 'resnet10-w8', '--epochs', '2', '--batch-size', '16', '--backend', 'wasm', '--data', join(dir, 'data'), '--out', out, '--time-limit', '1h']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/^recipe: the epochs that fit in 60m 00s \(at most 2\) of batch 16/m);
    expect(res.stderr).toMatch(/^time limit 60m 00s: all 2 epochs fit \([\d,]+ steps of [\d.]+ ms; the run ends at about .+\), planned at epoch 1 step \d+$/m);
    expect(res.stderr).toMatch(/^ {2}2\/2 /m);
    expect(res.stdout).toMatch(/^saved .* after 2 epochs in .* of training \(.* in all, within the time limit of 60m 00s\) on wasm$/m);
    const meta = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8'));
    expect(meta.config).toMatchObject({ timeLimit: 3600, epochs: 2 });
    const bad = await runCli(['train', '--time-limit', 'soon', '--data', join(dir, 'none')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toMatch(/--time-limit soon: expected a duration such as 600, 600s, 10m or 1h30m/);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('trains in the threads --workers asks for, says so, and records it; a bad count is a usage error', async () => {
    const out = join(dir, 'm-workers');
    const res = await runCli(['train', '--model', 'resnet10-w8', '--epochs', '1', '--batch-size', '32', '--backend', 'wasm', '--workers', '2', '--data', join(dir, 'data'), '--out', out]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/^backend: wasm \(.+\): requested; 2 training threads$/m);
    const meta = JSON.parse(await readFile(join(out, 'metadata.json'), 'utf8'));
    expect(meta.config).toMatchObject({ workers: 2 });
    for (const v of ['0', 'two', '1.5']) {
      const bad = await runCli(['train', '--workers', v, '--data', join(dir, 'none')]);
      expect(bad.code).toBe(2);
      expect(bad.stderr.trim()).toBe(`error: --workers ${v}: expected auto or a whole number ≥ 1`);
    }
  });

  it('cifar eval --workers shares the test set between threads with the answers of one thread, and prints them', async () => {
    // The model trained above; 600 test images: 2 threads (at least 250 images a thread).
    const data = join(dir, 'data-600');
    await mkdir(join(data, 'cifar-10-batches-bin'), { recursive: true });
    for (const [i, f] of BATCH_FILES.entries()) await writeFile(join(data, 'cifar-10-batches-bin', f), makeRecords(600, i));
    const args = ['eval', '--model', join(dir, 'm-workers'), '--data', data, '--backend', 'wasm'];
    const [one, two, shown] = [await runCli([...args, '--workers', '1', '--json']), await runCli([...args, '--workers', '2', '--json']), await runCli([...args, '--workers', '2'])];
    expect(two.code, two.stderr).toBe(0);
    const [a, b] = [JSON.parse(one.stdout), JSON.parse(two.stdout)];
    expect(b.accuracy).toBe(a.accuracy);
    expect(b.confusion).toEqual(a.confusion);
    expect(b.loss).toBeCloseTo(a.loss, 5);
    expect(shown.stderr).toMatch(/^backend: wasm \(.+\): requested; 2 evaluation threads$/m);
    expect(shown.stdout).toMatch(/^accuracy [\d.]+% on 600 test images/m);
    const bad = await runCli([...args, '--workers', 'none']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('error: --workers none: expected auto or a whole number ≥ 1');
  });

  it('starts from a saved model with --init, and names one of another architecture or a folder without one in one line', async () => {
    const common = ['train', '--batch-size', '16', '--epochs', '1', '--backend', 'wasm', '--data', join(dir, 'data')];
    const ok = await runCli([...common, '--model', 'resnet18-w4', '--init', 'models/default', '--limit', '16', '--test-limit', '16', '--out', join(dir, 'm-init')]);
    expect(ok.code).toBe(0);
    expect(ok.stderr).toMatch(/; seed 0; initial weights from models\/default\n/);
    const saved = JSON.parse(await readFile(join(dir, 'm-init', 'metadata.json'), 'utf8'));
    const bundled = JSON.parse(await readFile('models/default/metadata.json', 'utf8'));
    expect(saved).toMatchObject({ initVersion: bundled.version, normalization: bundled.normalization, config: { init: 'models/default' } });
    const other = await runCli([...common, '--model', 'resnet10-w8', '--init', 'models/default', '--out', join(dir, 'm-init-bad')]);
    expect(other.code).toBe(2);
    expect(other.stderr.trim()).toBe('error: --init models/default: a resnet18-w4 model cannot start a resnet10-w8 run — pass --model resnet18-w4, or another model folder');
    const none = await runCli([...common, '--init', join(dir, 'none'), '--out', join(dir, 'm-init-bad')]);
    expect(none.code).toBe(1);
    expect(none.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^error: --init: no model at .*none \(model.json and metadata.json are needed\) — pass --init a folder/)]);
  });

  it('names an unknown model, a bad config key and a missing dataset in one line', async () => {
    const bad = await runCli(['train', '--model', 'vgg16']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--model vgg16: unknown model; valid choices: resnet18, resnet18-w4, resnet10-w8/);
    const cfg = join(dir, 'bad.json');
    await (await import('node:fs/promises')).writeFile(cfg, JSON.stringify({ epochs: 2, learningRate: 0.1 }));
    const badKey = await runCli(['train', '--config', cfg]);
    expect(badKey.code).toBe(2);
    expect(badKey.stderr).toMatch(/unknown key "learningRate"/);
    const noData = await runCli(['train', '--data', join(dir, 'none'), '--backend', 'cpu']);
    expect(noData.code).toBe(1);
    expect(noData.stderr.trim()).toMatch(/^error: no CIFAR-10 dataset at .*run `cifar download`/);
  });
});
