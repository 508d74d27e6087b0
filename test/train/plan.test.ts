import { describe, expect, it } from 'vitest';
import { parseTrainConfig } from '../../src/train/config.js';
import { parseDuration, planEpochs, projectSeconds, typicalStepSeconds, type PlanInput } from '../../src/train/plan.js';

// An H100-like run early in its first epoch: 196 steps of 28 ms, a test pass of 0.5 s every 5th epoch.
const h100: PlanInput = { limitSeconds: 600, elapsedSeconds: 20, maxEpochs: 200, epoch: 0, step: 21, steps: 196, stepSeconds: 0.028, testEvery: 5, testSeconds: 0.5, epochOverheadSeconds: 0.2, finalSeconds: 2 };

describe('planning a run to a time limit', () => {
  it('projects the remaining steps, the test passes still to come (every Nth and the last), the epochs\' overhead and the end', () => {
    // 99 epochs: 99·196 − 21 steps, tests after epochs 5…95 and 99 (20), 99 checkpoints, the end.
    expect(projectSeconds(h100, 99)).toBeCloseTo(20 + (99 * 196 - 21) * 0.028 + 20 * 0.5 + 99 * 0.2 + 2, 9);
    // 100 is a multiple of 5: its last test pass is one of the every-5th ones.
    expect(projectSeconds(h100, 100)).toBeCloseTo(20 + (100 * 196 - 21) * 0.028 + 20 * 0.5 + 100 * 0.2 + 2, 9);
    // After epoch 10, at its end: tests after 15…95 and 99, nine epochs fewer of everything.
    expect(projectSeconds({ ...h100, epoch: 10, step: 0 }, 99)).toBeCloseTo(20 + 89 * 196 * 0.028 + 18 * 0.5 + 89 * 0.2 + 2, 9);
  });

  it('takes the most epochs whose projection stays within the limit', () => {
    const plan = planEpochs(h100);
    expect(plan).toEqual({ epochs: 99, seconds: projectSeconds(h100, 99), fits: true });
    expect(projectSeconds(h100, 100)).toBeGreaterThan(600);
    // A limit of exactly a projection keeps that many epochs.
    expect(planEpochs({ ...h100, limitSeconds: projectSeconds(h100, 40) }).epochs).toBe(40);
  });

  it('keeps at most --epochs, and at least the epoch in progress, saying when even that is past the limit', () => {
    expect(planEpochs({ ...h100, maxEpochs: 50 })).toMatchObject({ epochs: 50, fits: true });
    const late = planEpochs({ ...h100, epoch: 3, step: 5, limitSeconds: 25 });
    expect(late).toMatchObject({ epochs: 4, fits: false });
    expect(late.seconds).toBeGreaterThan(25);
    // At an epoch's end the run may stop right there: the epochs done are enough.
    expect(planEpochs({ ...h100, epoch: 3, step: 0, limitSeconds: 25 })).toMatchObject({ epochs: 3, fits: true });
    // Never fewer than one.
    expect(planEpochs({ ...h100, step: 0, limitSeconds: 1 })).toMatchObject({ epochs: 1, fits: false });
  });
});

describe('the step time a plan uses', () => {
  it('is the mean over the epochs, the first (compilation, caches filling) left out once there are others', () => {
    expect(typicalStepSeconds([0.5])).toBe(0.5);
    expect(typicalStepSeconds([0.5, 0.03])).toBe(0.03);
    // One slow epoch among four moves it by a quarter of its excess, not all of it.
    expect(typicalStepSeconds([0.5, 0.03, 0.03, 0.03, 0.07])).toBeCloseTo(0.04, 12);
  });
});

describe('--time-limit durations', () => {
  it('reads seconds, with or without a unit, minutes, hours and their sums', () => {
    expect(parseDuration('600')).toBe(600);
    expect(parseDuration('600s')).toBe(600);
    expect(parseDuration('9.5m')).toBe(570);
    expect(parseDuration('1h30m')).toBe(5400);
    expect(parseDuration(' 2M ')).toBe(120);
    expect(parseDuration('1h2m3s')).toBe(3723);
  });

  it('a config file may give the limit in seconds or as the flag takes it; anything else names the key', () => {
    expect(parseTrainConfig({ timeLimit: 540 }).timeLimit).toBe(540);
    expect(parseTrainConfig({ timeLimit: '9m' }).timeLimit).toBe(540);
    expect(parseTrainConfig({}).timeLimit).toBeUndefined();
    expect(() => parseTrainConfig({ timeLimit: 'soon' }, 'configs/x.json')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringMatching(/^configs\/x\.json: "timeLimit" /) }));
    expect(() => parseTrainConfig({ timeLimit: 0 })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });

  it('refuses what is not a positive duration', () => {
    for (const bad of ['', '0', '0s', '-5', 'ten', '10 m', '5m1h', 'm', '1e3', 'Infinity']) expect(parseDuration(bad), bad).toBeUndefined();
  });
});
