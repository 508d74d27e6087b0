import { describe, expect, it } from 'vitest';
import { parseTrainConfig } from '../../src/train/config.js';
import { parseDuration, planSteps, projectSeconds, revise, testSecondsAt, typicalStepSeconds, type PlanInput } from '../../src/train/plan.js';

// An H100-like run early in its first epoch: 196 steps of 28 ms, a test pass of 0.5 s every 5th epoch.
const h100: PlanInput = { limitSeconds: 600, elapsedSeconds: 20, maxEpochs: 200, epoch: 0, step: 21, steps: 196, stepSeconds: 0.028, testEvery: 5, testSeconds: 0.5, epochOverheadSeconds: 0.2, finalSeconds: 2 };

const epochs = (n: number) => n * h100.steps;

describe('planning a run to a time limit', () => {
  it('plans a test pass at the steps\' pace now: twice as long once steps take twice as long as when it was timed, as long when they do not', () => {
    // The 3-minute run on a machine made busy after its plan: steps went from 0.35 s to 0.67 s.
    const timed = { seconds: 8, stepSeconds: 0.35 };
    expect(testSecondsAt(timed, 0.7)).toBeCloseTo(16, 10);
    expect(testSecondsAt(timed, 0.35)).toBe(8);
    expect(testSecondsAt(timed, 0.175)).toBeCloseTo(4, 10);
    // Without a pace to scale by (none measured), the time as measured.
    expect(testSecondsAt({ seconds: 8, stepSeconds: 0 }, 0.7)).toBe(8);
  });

  it('projects the remaining steps, the test passes still to come (every Nth and the last), the epochs\' overhead and the end', () => {
    // 99 epochs: 99·196 − 21 steps, tests after epochs 5…95 and 99 (20), 99 checkpoints, the end.
    expect(projectSeconds(h100, epochs(99))).toBeCloseTo(20 + (99 * 196 - 21) * 0.028 + 20 * 0.5 + 99 * 0.2 + 2, 9);
    // 100 is a multiple of 5: its last test pass is one of the every-5th ones.
    expect(projectSeconds(h100, epochs(100))).toBeCloseTo(20 + (100 * 196 - 21) * 0.028 + 20 * 0.5 + 100 * 0.2 + 2, 9);
    // A partial last epoch counts as an epoch: tested (it is the last) and checkpointed.
    expect(projectSeconds(h100, epochs(99) + 50)).toBeCloseTo(20 + (99 * 196 + 50 - 21) * 0.028 + 20 * 0.5 + 100 * 0.2 + 2, 9);
    // After epoch 10, at its end: tests after 15…95 and 99, nine epochs fewer of everything.
    expect(projectSeconds({ ...h100, epoch: 10, step: 0 }, epochs(99))).toBeCloseTo(20 + 89 * 196 * 0.028 + 18 * 0.5 + 89 * 0.2 + 2, 9);
  });

  it('takes the most steps whose projection stays within the limit, the last epoch partial', () => {
    const plan = planSteps(h100);
    // 99 whole epochs end at 594.5 s, 100 at 600.2 s: the 100th is cut at step 188 of 196.
    expect(plan).toEqual({ steps: 19592, epochs: 100, seconds: projectSeconds(h100, 19592), fits: true });
    expect(plan.seconds).toBeLessThanOrEqual(600);
    expect(projectSeconds(h100, 19593)).toBeGreaterThan(600);
    // A limit of exactly a projection keeps that many steps.
    expect(planSteps({ ...h100, limitSeconds: projectSeconds(h100, epochs(40)) }).steps).toBe(epochs(40));
  });

  it('keeps at most --epochs, and at least the steps already trained, saying when even stopping now is past the limit', () => {
    expect(planSteps({ ...h100, maxEpochs: 50 })).toMatchObject({ steps: epochs(50), epochs: 50, fits: true });
    const late = planSteps({ ...h100, epoch: 3, step: 5, limitSeconds: 21 });
    expect(late).toMatchObject({ steps: epochs(3) + 5, epochs: 4, fits: false });
    expect(late.seconds).toBeGreaterThan(21);
    // Short of the epoch's end: the epoch in progress is cut where the limit falls.
    const cut = planSteps({ ...h100, epoch: 3, step: 5, limitSeconds: 25 });
    expect(cut).toMatchObject({ epochs: 4, fits: true });
    expect(cut.steps).toBeGreaterThan(epochs(3) + 5);
    expect(cut.steps).toBeLessThan(epochs(4));
  });
});

describe('a plan with a margin', () => {
  it('keeps that share of the time left in hand, and still fits when only stopping now does', () => {
    // 2% of the 580 s left: the plan ends by 588.4 s, within epoch 98 (98 whole epochs end at 588.8 s).
    const kept = planSteps({ ...h100, margin: 0.02 });
    expect(kept.seconds).toBeLessThanOrEqual(600 - 0.02 * 580);
    expect(projectSeconds(h100, kept.steps + 1)).toBeGreaterThan(600 - 0.02 * 580);
    expect(kept).toMatchObject({ epochs: 98, fits: true });
    expect(kept.steps).toBeGreaterThan(epochs(97));
    // Stopping now ends within the limit but not within the margin: stop, and it fits.
    const now = projectSeconds({ ...h100, epoch: 3, step: 5 }, epochs(3) + 5);
    expect(planSteps({ ...h100, epoch: 3, step: 5, limitSeconds: now + 0.01, margin: 0.5 })).toMatchObject({ steps: epochs(3) + 5, fits: true });
  });
});

describe('a check of a planned run (revise)', () => {
  // A CPU-like run halfway through a 20-minute budget: epochs of 390 steps of about 1.4 s.
  const cpu: PlanInput = { limitSeconds: 1200, elapsedSeconds: 600, maxEpochs: 12, epoch: 1, step: 100, steps: 390, stepSeconds: 1.4, testEvery: 1, testSeconds: 30, epochOverheadSeconds: 1, finalSeconds: 32, margin: 0.05 };
  const at = (stepSeconds: number) => ({ ...cpu, stepSeconds });
  const planned = planSteps(cpu).steps;

  it('shortens a run that falls behind at the recent pace, to the plan at that pace, whatever the steady pace says', () => {
    expect(projectSeconds(at(1.55), planned)).toBeGreaterThan(1200);
    const r = revise(planned, at(1.55), at(1.4), 0.01);
    expect(r?.stepSeconds).toBe(1.55);
    expect(r?.plan.steps).toBe(planSteps(at(1.55)).steps);
    expect(r!.plan.steps).toBeLessThan(planned);
  });

  it('leaves the plan alone when a slower stretch stays within the margin, or a faster one is not borne out by the steady pace', () => {
    expect(projectSeconds(at(1.43), planned)).toBeLessThanOrEqual(1200);
    expect(revise(planned, at(1.43), at(1.4), 0.01)).toBeUndefined();
    expect(planSteps(at(1.25)).steps).toBeGreaterThan(planned * 1.01);
    expect(revise(planned, at(1.25), at(1.4), 0.01)).toBeUndefined();
  });

  it('lengthens a run ahead at both paces to the more careful plan, and only by at least the share given', () => {
    const r = revise(planned, at(1.25), at(1.3), 0.01);
    expect(r).toEqual({ plan: planSteps(at(1.3)), stepSeconds: 1.3 });
    expect(revise(planned, at(1.3), at(1.25), 0.01)).toEqual({ plan: planSteps(at(1.3)), stepSeconds: 1.3 });
    const near = planSteps(at(1.3)).steps - 3;
    expect(revise(near, at(1.3), at(1.3), 0.01)).toBeUndefined();
    expect(revise(near, at(1.3), at(1.3), 0.001)?.plan.steps).toBe(near + 3);
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
