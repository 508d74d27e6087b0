import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BENCH_DEFAULTS } from '../../src/bench/config.js';
import { runBench } from '../../src/bench/run.js';
import { spawnServer } from '../../src/bench/spawn.js';

const FAKE_SERVE = fileURLToPath(new URL('./fake-serve.mjs', import.meta.url));
const refused = (url: string) =>
  new Promise<boolean>((resolve) => {
    const s = connect(Number(new URL(url).port), '127.0.0.1');
    s.on('connect', () => (s.destroy(), resolve(false)));
    s.on('error', () => resolve(true));
  });

describe('--spawn', () => {
  it('starts the server on a free loopback port with the passed-through flags, and stops it after', async () => {
    const server = await spawnServer({ command: [process.execPath, FAKE_SERVE], model: 'models/x', workers: 2, redisUrl: 'redis://127.0.0.1:1' });
    try {
      let health: Response | undefined;
      for (let i = 0; i < 50 && !health; i++) health = await fetch(`${server.url}/health`).catch(() => sleep(100, undefined));
      const { args } = (await health!.json()) as { args: string[] };
      expect(args.join(' ')).toBe(`serve --port ${new URL(server.url).port} --host 127.0.0.1 --log-level warn --model models/x --workers 2 --redis-url redis://127.0.0.1:1`);
    } finally {
      await server.stop();
    }
    expect(await refused(server.url)).toBe(true);
  });

  it('runs a whole benchmark against the server it spawned', async () => {
    const config = { ...BENCH_DEFAULTS, requests: 20, batchSize: 1, thresholds: {}, dataDir: '/nonexistent' };
    const r = await runBench(config, { spawn: { command: [process.execPath, FAKE_SERVE] } });
    expect(r.parameters.spawned).toBe(true);
    expect(r.requests.succeeded).toBe(20);
    expect(r.server.modelVersion).toBe('spawned-1');
    expect(await refused(r.parameters.url)).toBe(true);
  });

  it('reports a server that exits before it is ready, with its last words', async () => {
    const dying = [process.execPath, '-e', 'console.error("no model at models/default"); process.exit(3)'];
    const config = { ...BENCH_DEFAULTS, requests: 5, batchSize: 1, thresholds: {}, dataDir: '/nonexistent' };
    await expect(runBench(config, { spawn: { command: dying } })).rejects.toMatchObject({ message: expect.stringMatching(/exited with status 3.*no model at models\/default/) });
  });
});
