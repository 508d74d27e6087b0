import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { probeWebGpu } from '../../src/backend/webgpu.js';
import { fusedSmoothedCrossEntropy } from '../../src/backend/webgpu-kernels/loss.js';
import { canUpdateInPlace } from '../../src/backend/webgpu-kernels/in-place.js';
import { countBackendCalls } from '../../src/bench/gpu-counts.js';
import { smoothedCrossEntropy, stepLoss } from '../../src/train/step.js';
import { expectClose, randomArray, useWebGpuInSuite } from './helpers.js';

const probe = await probeWebGpu();

/** Loss, sum, right answers and the gradient of the loss in the logits, on the active backend. */
async function lossOf(logits: Float32Array, labels: Int32Array, k: number, smoothing: number, fused: boolean, lambda = 1): Promise<{ loss: number; sum: number; correct: number; grad: Float32Array }> {
  const n = labels.length;
  const x = tf.variable(tf.tensor2d(logits, [n, k]));
  const y = tf.tensor1d(labels, 'int32');
  let sum: tf.Scalar | undefined;
  let correct: tf.Scalar | undefined;
  const { value, grads } = tf.variableGrads(() => {
    if (fused) {
      const out = fusedSmoothedCrossEntropy(x as unknown as tf.Tensor2D, y, smoothing, lambda);
      [sum, correct] = [out.lossSum, out.correct];
      return out.loss;
    }
    if (lambda !== 1) {
      // A mixed batch: the ops path of the training step (on a backend without in-place dispatches).
      const out = stepLoss(x as unknown as tf.Tensor2D, y, k, smoothing, lambda);
      [sum, correct] = [out.lossSum, out.correct];
      return out.loss;
    }
    const loss = smoothedCrossEntropy(x as unknown as tf.Tensor2D, y, k, smoothing);
    sum = tf.keep(tf.mul(loss, n)) as tf.Scalar;
    correct = tf.keep(tf.sum(tf.equal(tf.argMax(x, 1), y))) as tf.Scalar;
    return loss;
  }, [x]);
  const read = async (t: tf.Tensor): Promise<number> => (await t.data())[0]!;
  const result = { loss: await read(value), sum: await read(sum!), correct: await read(correct!), grad: (await grads[x.name]!.data()) as Float32Array };
  tf.dispose([sum!, correct!]);
  tf.dispose([x, y, value, grads[x.name]!]);
  return result;
}

describe.skipIf(!probe.ok)('the loss in two dispatches on webgpu (CifarLoss)', () => {
  useWebGpuInSuite();

  // 300 rows: more than the forward's 256 threads, so that some walk two rows.
  for (const [n, smoothing, lambda] of [[7, 0.1, 1], [300, 0.1, 1], [5, 0, 1], [7, 0.1, 0.3], [300, 0, 0.8]] as const) {
    const mixed = lambda === 1 ? '' : `, a batch mixed at λ ${lambda}: targets and count`;
    it(`matches the ops on the cpu backend: loss, sum, right answers and gradient (${n} rows, smoothing ${smoothing}${mixed})`, async () => {
      const k = 10;
      const logits = randomArray(n * k, 40 + n).map((v) => 6 * v);
      const labels = Int32Array.from({ length: n }, (_, i) => (i * 7) % k);
      // Make some rows right: their label's logit the largest.
      for (let i = 0; i < n; i += 3) logits[i * k + labels[i]!] = 50;
      expect(canUpdateInPlace()).toBe(true);
      const gpu = await lossOf(logits, labels, k, smoothing, true, lambda);
      await tf.setBackend('cpu');
      const cpu = await lossOf(logits, labels, k, smoothing, false, lambda);
      await tf.setBackend('webgpu');
      expect(gpu.loss).toBeCloseTo(cpu.loss, 5);
      expect(gpu.sum).toBeCloseTo(cpu.sum, 3);
      expect(gpu.correct).toBeCloseTo(cpu.correct, 3);
      expect(cpu.correct).toBeGreaterThanOrEqual(lambda * Math.ceil(n / 3));
      expectClose(gpu.grad, cpu.grad, 1e-5, 'd loss / d logits');
    });
  }

  it('takes one dispatch forward and one backward', async () => {
    const logits = randomArray(40, 3);
    const labels = Int32Array.from({ length: 4 }, (_, i) => i);
    await lossOf(logits, labels, 10, 0.1, true); // compiles
    const x = tf.variable(tf.tensor2d(logits, [4, 10]));
    const y = tf.tensor1d(labels, 'int32');
    const counts = await countBackendCalls(async () => {
      const { value, grads } = tf.variableGrads(() => {
        const out = fusedSmoothedCrossEntropy(x as unknown as tf.Tensor2D, y, 0.1);
        tf.dispose([out.lossSum, out.correct]);
        return out.loss;
      }, [x]);
      await grads[x.name]!.data();
      tf.dispose([value, grads[x.name]!]);
    });
    tf.dispose([x, y]);
    // The ops took 28 (the loss, its gradient, arg max, equal, sum, and the sum as mean x n).
    expect(counts!.dispatches).toBe(2);
  });
});
