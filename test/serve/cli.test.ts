import { describe, expect, it } from 'vitest';
import { parseServeOptions, serveCommand } from '../../src/cli/serve.js';
import { SERVE_DEFAULTS } from '../../src/serve/config.js';
import { runCli } from '../helpers/cli.js';

describe('cifar serve flags', () => {
  it('defaults everything, reading REDIS_URL and CIFAR_API_KEY from the environment', () => {
    const config = parseServeOptions({}, { REDIS_URL: 'redis://127.0.0.1:6379', CIFAR_API_KEY: 'k' });
    expect(config).toEqual({ ...SERVE_DEFAULTS, redisUrl: 'redis://127.0.0.1:6379', apiKey: 'k' });
  });

  it('turns flag strings into numbers and lets flags win over the environment', () => {
    const config = parseServeOptions({ port: '9000', workers: '2', maxBatch: '16', batchWaitMs: '0.5', redisUrl: 'redis://r:1', cacheTtl: '60', tta: true }, { REDIS_URL: 'redis://env:2' });
    expect(config).toMatchObject({ port: 9000, workers: 2, maxBatch: 16, batchWaitMs: 0.5, redisUrl: 'redis://r:1', cacheTtlSeconds: 60, tta: true });
    expect(parseServeOptions({}, {}).tta).toBe(false);
  });

  it.each([
    [{ port: 'eighty' }, /^--port eighty: /],
    [{ port: '70000' }, /^--port 70000: /],
    [{ workers: '0' }, /^--workers 0: /],
    [{ maxBatch: '1.5' }, /^--max-batch 1\.5: expected an integer/],
    [{ redisUrl: 'http://x' }, /^--redis-url http:\/\/x: expected a redis/],
    [{ logLevel: 'loud' }, /^--log-level loud: /],
    [{ backend: 'gpu' }, /^--backend gpu: /],
    [{ maxFiles: '0' }, /^--max-files 0: /],
    [{ maxFiles: 'many' }, /^--max-files many: /],
    [{ maxPixels: '-5' }, /^--max-pixels -5: /],
    [{ requestTimeout: '2.5' }, /^--request-timeout 2\.5: expected an integer/],
    [{ requestTimeout: '0' }, /^--request-timeout 0: /],
    [{ drainTimeout: '-1' }, /^--drain-timeout -1: /],
    [{ drainTimeout: 'soon' }, /^--drain-timeout soon: /],
    [{ redisTimeout: '0' }, /^--redis-timeout 0: /],
  ])('refuses %o with a USAGE error naming the flag', (raw, message) => {
    expect(() => parseServeOptions(raw, {})).toThrow(expect.objectContaining({ code: 'USAGE', message: expect.stringMatching(message) }));
  });

  it('turns the limit flags into the config: drain seconds become milliseconds', () => {
    const config = parseServeOptions({ maxFiles: '8', maxPixels: '1000000', requestTimeout: '1500', drainTimeout: '2.5' }, {});
    expect(config).toMatchObject({ maxFiles: 8, maxImagePixels: 1_000_000, requestTimeoutMs: 1500, drainMs: 2500 });
    expect(parseServeOptions({ drainTimeout: '0' }, {}).drainMs).toBe(0);
  });

  it('reads the timeouts from CIFAR_DRAIN_TIMEOUT, CIFAR_REQUEST_TIMEOUT and CIFAR_REDIS_TIMEOUT, flags winning', () => {
    const env = { CIFAR_DRAIN_TIMEOUT: '20', CIFAR_REQUEST_TIMEOUT: '5000', CIFAR_REDIS_TIMEOUT: '40' };
    expect(parseServeOptions({}, env)).toMatchObject({ drainMs: 20_000, requestTimeoutMs: 5000, redisTimeoutMs: 40 });
    expect(parseServeOptions({ drainTimeout: '3', requestTimeout: '700' }, env)).toMatchObject({ drainMs: 3000, requestTimeoutMs: 700 });
  });

  it('names the environment variable when its value is bad', () => {
    expect(() => parseServeOptions({}, { CIFAR_DRAIN_TIMEOUT: 'never' })).toThrow(expect.objectContaining({ code: 'USAGE', message: expect.stringMatching(/^CIFAR_DRAIN_TIMEOUT=never: /) }));
  });

  it('shows every limit flag in --help', () => {
    const help = serveCommand(() => Promise.reject(new Error('unused'))).helpInformation();
    for (const f of ['--max-files <n>', '--max-pixels <n>', '--request-timeout <ms>', '--drain-timeout <s>', '--redis-timeout <ms>']) expect(help).toContain(f);
  });

  it('a bad limit is one line on stderr and exit status 2, before any model loads', async () => {
    const res = await runCli(['serve', '--max-files', '0', '--port', '0']);
    expect(res.code).toBe(2);
    expect(res.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^error: --max-files 0: /)]);
  });

  it('is a commander command named serve with every flag of the issue', () => {
    const cmd = serveCommand(() => Promise.reject(new Error('unused')));
    expect(cmd.name()).toBe('serve');
    const flags = cmd.options.map((o) => o.long);
    for (const f of ['--port', '--host', '--model', '--backend', '--workers', '--redis-url', '--cache-ttl', '--cache-size', '--max-batch', '--batch-wait-ms', '--max-queue', '--max-upload-bytes', '--max-files', '--max-pixels', '--request-timeout', '--drain-timeout', '--redis-timeout', '--api-key', '--log-level', '--tta']) {
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
