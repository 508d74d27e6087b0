import { describe, expect, it } from 'vitest';
import { withDeadline } from '../../src/serve/cache/redis.js';

const hold = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};

describe('the Redis command deadline (withDeadline)', () => {
  it('passes an answer or an error through, and fails an unanswered command after the deadline', async () => {
    await expect(withDeadline(Promise.resolve(7), 50)).resolves.toBe(7);
    await expect(withDeadline(Promise.reject(new Error('READONLY')), 50)).rejects.toThrow('READONLY');
    const started = performance.now();
    await expect(withDeadline(new Promise(() => {}), 50)).rejects.toThrow('Command timed out');
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(49);
    expect(took).toBeLessThan(1000);
  });

  it('an answer that comes once the loop is free again, after a hold past the deadline, is not a timeout', async () => {
    let answer!: (v: string) => void;
    const command = withDeadline(new Promise<string>((r) => (answer = r)), 50);
    // The answer is ready just after the hold, as a reply read by the next poll of the socket.
    setImmediate(() => {
      hold(200);
      setImmediate(() => answer('late but ours'));
    });
    await expect(command).resolves.toBe('late but ours');
  });

  it('still ends a command that never answers while the loop is held again and again', async () => {
    const started = performance.now();
    const command = withDeadline(new Promise(() => {}), 20);
    const busy = setInterval(() => hold(40), 0);
    try {
      await expect(command).rejects.toThrow('Command timed out');
    } finally {
      clearInterval(busy);
    }
    // At most the first deadline and four restarts, each stretched by a hold.
    expect(performance.now() - started).toBeLessThan(2000);
  });
});
