import { describe, expect, it } from 'vitest';
import { createDeadline } from '../../src/serve/cache/redis.js';

const hold = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};

describe('the Redis command deadline (createDeadline)', () => {
  it('passes an answer or an error through, and fails an unanswered command after the deadline', async () => {
    const deadline = createDeadline(50);
    await expect(deadline(Promise.resolve(7))).resolves.toBe(7);
    await expect(deadline(Promise.reject(new Error('READONLY')))).rejects.toThrow('READONLY');
    const started = performance.now();
    await expect(deadline(new Promise(() => {}))).rejects.toThrow('Command timed out');
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(45);
    expect(took).toBeLessThan(1000);
  });

  it('does not count a hold of the loop: an answer that comes once it is free again, even after a hold of 4 deadlines, is taken', async () => {
    const deadline = createDeadline(50);
    for (const holdMs of [200, 30, 45]) {
      let answer!: (v: string) => void;
      const command = deadline(new Promise<string>((r) => (answer = r)));
      // The answer comes just after the hold, as a reply read by the next poll of the socket.
      setImmediate(() => {
        hold(holdMs);
        setImmediate(() => answer(`after ${holdMs} ms`));
      });
      await expect(command).resolves.toBe(`after ${holdMs} ms`);
    }
  });

  it('still ends a command that never answers while the loop is held again and again, within 10 deadlines', async () => {
    const deadline = createDeadline(20);
    const started = performance.now();
    const command = deadline(new Promise(() => {}));
    const busy = setInterval(() => hold(40), 0);
    try {
      await expect(command).rejects.toThrow('Command timed out');
    } finally {
      clearInterval(busy);
    }
    expect(performance.now() - started).toBeLessThan(20 * 10 + 200);
  });
});
