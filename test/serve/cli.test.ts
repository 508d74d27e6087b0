import { describe, expect, it } from 'vitest';
import { parseServeOptions, serveCommand } from '../../src/cli/serve.js';
import { SERVE_DEFAULTS } from '../../src/serve/config.js';

describe('cifar serve flags', () => {
  it('defaults everything, reading REDIS_URL and CIFAR_API_KEY from the environment', () => {
    const config = parseServeOptions({}, { REDIS_URL: 'redis://127.0.0.1:6379', CIFAR_API_KEY: 'k' });
    expect(config).toEqual({ ...SERVE_DEFAULTS, redisUrl: 'redis://127.0.0.1:6379', apiKey: 'k' });
  });

  it('turns flag strings into numbers and lets flags win over the environment', () => {
    const config = parseServeOptions({ port: '9000', workers: '2', maxBatch: '16', batchWaitMs: '0.5', redisUrl: 'redis://r:1', cacheTtl: '60' }, { REDIS_URL: 'redis://env:2' });
    expect(config).toMatchObject({ port: 9000, workers: 2, maxBatch: 16, batchWaitMs: 0.5, redisUrl: 'redis://r:1', cacheTtlSeconds: 60 });
  });

  it.each([
    [{ port: 'eighty' }, /^--port eighty: /],
    [{ port: '70000' }, /^--port 70000: /],
    [{ workers: '0' }, /^--workers 0: /],
    [{ maxBatch: '1.5' }, /^--max-batch 1\.5: expected an integer/],
    [{ redisUrl: 'http://x' }, /^--redis-url http:\/\/x: expected a redis/],
    [{ logLevel: 'loud' }, /^--log-level loud: /],
    [{ backend: 'gpu' }, /^--backend gpu: /],
  ])('refuses %o with a USAGE error naming the flag', (raw, message) => {
    expect(() => parseServeOptions(raw, {})).toThrow(expect.objectContaining({ code: 'USAGE', message: expect.stringMatching(message) }));
  });

  it('is a commander command named serve with every flag of the issue', () => {
    const cmd = serveCommand(() => Promise.reject(new Error('unused')));
    expect(cmd.name()).toBe('serve');
    const flags = cmd.options.map((o) => o.long);
    for (const f of ['--port', '--host', '--model', '--backend', '--workers', '--redis-url', '--cache-ttl', '--cache-size', '--max-batch', '--batch-wait-ms', '--max-queue', '--max-upload-bytes', '--api-key', '--log-level']) {
      expect(flags).toContain(f);
    }
  });
});

describe('default worker count', () => {
  it('is capped by a cgroup CPU quota and ignores an unlimited one', async () => {
    const { usableCores } = await import('../../src/serve/config.js');
    const { availableParallelism } = await import('node:os');
    expect(usableCores('max 100000\n')).toBe(availableParallelism());
    expect(usableCores('100000 100000\n')).toBe(1);
    expect(usableCores('50000 100000\n')).toBe(1);
    expect(usableCores(undefined)).toBe(availableParallelism());
  });
});
