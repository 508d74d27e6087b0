import { describe, expect, it } from 'vitest';
import { createBatcher } from '../../src/serve/batcher.js';
import { IMAGE_BYTES } from '../../src/image/preprocess.js';

/** A stand-in forward pass: image i's "probabilities" are [first pixel, count]. */
function recorder(delayMs = 0) {
  const sizes: number[] = [];
  const run = async (pixels: Uint8Array, count: number) => {
    sizes.push(count);
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    const out = new Float32Array(count * 2);
    for (let i = 0; i < count; i++) out.set([pixels[i * IMAGE_BYTES]!, count], i * 2);
    return out;
  };
  return { sizes, run };
}
const image = (v: number) => new Uint8Array(IMAGE_BYTES).fill(v);
const later = () => Date.now() + 10_000;

describe('createBatcher', () => {
  it('gathers concurrent images into one forward pass and hands each its own row', async () => {
    const { sizes, run } = recorder();
    const b = createBatcher({ run, classes: 2, maxBatch: 8, waitMs: 5, maxQueue: 100 });
    const out = await Promise.all([1, 2, 3].map((v) => b.submit(image(v), later())));
    expect(sizes).toEqual([3]);
    expect(out.map((p) => [...p])).toEqual([[1, 3], [2, 3], [3, 3]]);
  });

  it('does not make a lone client wait: after a pass of one image, the next runs at the end of its turn', async () => {
    const { sizes, run } = recorder();
    const b = createBatcher({ run, classes: 2, maxBatch: 8, waitMs: 60_000, maxQueue: 100 });
    // With a minute's wait these would time the test out; images of one turn still go together.
    await b.submit(image(1), later());
    await b.submit(image(2), later());
    await Promise.all([b.submit(image(3), later()), b.submit(image(4), later())]);
    expect(sizes).toEqual([1, 1, 2]);
  });

  it('after a pass with companions, waits up to waitMs to gather the next batch', async () => {
    const { sizes, run } = recorder();
    const b = createBatcher({ run, classes: 2, maxBatch: 8, waitMs: 300, maxQueue: 100 });
    await Promise.all([b.submit(image(1), later()), b.submit(image(2), later())]);
    const first = b.submit(image(3), later());
    await new Promise((r) => setTimeout(r, 50));
    await Promise.all([first, b.submit(image(4), later())]);
    expect(sizes).toEqual([2, 2]);
  });

  it('never exceeds maxBatch, and runs what arrived during a pass right after it', async () => {
    const { sizes, run } = recorder(20);
    const b = createBatcher({ run, classes: 2, maxBatch: 4, waitMs: 1, maxQueue: 100 });
    await Promise.all(Array.from({ length: 10 }, (_, i) => b.submit(image(i), later())));
    expect(Math.max(...sizes)).toBeLessThanOrEqual(4);
    expect(sizes.reduce((a, c) => a + c, 0)).toBe(10);
  });

  it('refuses at once with OVERLOADED when the queue is full', async () => {
    const { run } = recorder(50);
    const b = createBatcher({ run, classes: 2, maxBatch: 1, waitMs: 0, maxQueue: 2 });
    const first = b.submit(image(1), later()); // running
    const queued = [b.submit(image(2), later()), b.submit(image(3), later())];
    await expect(b.submit(image(4), later())).rejects.toMatchObject({ code: 'OVERLOADED' });
    await Promise.all([first, ...queued]);
  });

  it('drops images whose deadline passed while they waited', async () => {
    const { sizes, run } = recorder(30);
    const b = createBatcher({ run, classes: 2, maxBatch: 1, waitMs: 0, maxQueue: 10 });
    const first = b.submit(image(1), later());
    const stale = b.submit(image(2), Date.now() + 5);
    await expect(stale).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    await first;
    expect(sizes).toEqual([1]);
  });

  it('a failed pass fails its images only, and drain waits for the queue', async () => {
    let calls = 0;
    const b = createBatcher({
      run: async (_p, n) => {
        if (calls++ === 0) throw new Error('boom');
        return new Float32Array(n * 2);
      },
      classes: 2,
      maxBatch: 2,
      waitMs: 1,
      maxQueue: 10,
    });
    await expect(b.submit(image(1), later())).rejects.toThrow('boom');
    const ok = b.submit(image(2), later());
    await b.drain();
    await expect(ok).resolves.toHaveLength(2);
    expect(b.depth).toBe(0);
  });
});
