import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { BENCH_DEFAULTS, type BenchConfig } from '../../src/bench/config.js';
import { runBench } from '../../src/bench/run.js';
import { tempDir } from '../helpers/fixtures.js';
import { MODEL_VERSION, startFakeApi, type FakeApi, type FakeApiOptions } from './fake-api.js';

let api: FakeApi | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});

// An empty data dir: generated images, whatever the machine has under data/.
const { dir: emptyDataDir, cleanup } = await tempDir('cifar-bench-data-');
afterAll(cleanup);

async function bench(server: FakeApiOptions, over: Partial<BenchConfig>) {
  api = await startFakeApi(server);
  const config: BenchConfig = { ...BENCH_DEFAULTS, url: api.url, concurrency: 2, batchSize: 8, dataDir: emptyDataDir, warmup: 0, timeoutMs: 5000, thresholds: {}, ...over };
  return runBench(config);
}

describe('runBench, closed model', () => {
  it('reports the percentiles, throughput and errors of a known latency distribution', async () => {
    // 90% answer after 4 ms, 10% after 40 ms; every 20th request is a 500.
    const r = await bench({ latencyMs: (n) => (n % 10 === 9 ? 40 : 4), failWith: (n) => (n % 20 === 7 ? 500 : undefined) }, { requests: 100 });
    expect(r.requests).toMatchObject({ sent: 100, completed: 100, succeeded: 95, failed: 5, late: 0 });
    expect(r.errors).toMatchObject({ total: 5, connect: 0, timeout: 0, byStatus: { '500': 5 }, byCode: { INTERNAL: 5 } });
    const l = r.latencyMs!;
    expect(l.count).toBe(95);
    expect(l.p50).toBeGreaterThanOrEqual(4);
    expect(l.p50).toBeLessThan(25);
    expect(l.p95).toBeGreaterThanOrEqual(40);
    expect(l.max).toBeLessThan(150);
    // Two connections through 90×4 + 10×40 ms of server time: at least 0.38 s, minus the 5 failed.
    expect(r.elapsedSeconds).toBeGreaterThan(0.3);
    expect(r.throughput.requestsPerSecond).toBeCloseTo(95 / r.elapsedSeconds, 0);
    expect(r.throughput.requestsPerSecond).toBeLessThan(95 / 0.3);
    expect(r.server.modelVersion).toBe(MODEL_VERSION);
    expect(r.cache).toMatchObject({ hitRatio: 0, hits: 0, misses: 95 });
    expect(r.thresholds.passed).toBe(false);
    expect(r.client.cpuPercent).toBeGreaterThan(0);
  });

  it('--unique 1 after a warm-up is all cache hits, with their latency apart', async () => {
    const r = await bench({}, { requests: 30, unique: 1, warmup: 1 });
    expect(r.cache.hitRatio).toBe(1);
    expect(r.cache.cachedLatencyMs?.count).toBe(30);
    expect(r.cache.uncachedLatencyMs).toBeNull();
    expect(api!.received()).toBe(31);
    expect(r.thresholds.passed).toBe(true);
  });

  it('--warmup-seconds loads the server that long first and leaves it out of every figure', async () => {
    const r = await bench({ latencyMs: () => 2 }, { requests: 10, unique: 1, warmupSeconds: 0.4 });
    // Two connections at ~2 ms a request for 0.4 s: dozens of warm-up requests, none counted.
    expect(api!.received()).toBeGreaterThan(10 + 20);
    expect(r.requests).toMatchObject({ sent: 10, completed: 10, succeeded: 10 });
    expect(r.cache).toMatchObject({ hits: 10, misses: 0 }); // the image was seen during the warm-up
    expect(r.elapsedSeconds).toBeLessThan(0.35);
    expect(r.parameters).toMatchObject({ warmup: 0, warmupSeconds: 0.4 });
  });

  it('counts timeouts and dropped connections as their own kinds of error', async () => {
    const r = await bench({ latencyMs: (n) => (n % 10 === 3 ? 400 : 1), dropConnection: (n) => n % 10 === 5 }, { requests: 20, timeoutMs: 150 });
    expect(r.errors.timeout).toBe(2);
    expect(r.errors.connect).toBe(2);
    expect(r.requests.succeeded).toBe(16);
  });

  it('stops after --duration and counts images of batch requests', async () => {
    const r = await bench({ latencyMs: () => 5 }, { durationSeconds: 0.5, endpoint: 'batch', batchSize: 3 });
    expect(r.elapsedSeconds).toBeGreaterThanOrEqual(0.5);
    expect(r.elapsedSeconds).toBeLessThan(1);
    expect(r.throughput.imagesPerSecond).toBeCloseTo(r.throughput.requestsPerSecond * 3, 0);
    expect(r.cache.misses).toBe(r.requests.succeeded * 3);
  });
});

describe('runBench, open model', () => {
  // 300 requests due at 200/s; the server freezes for 400 ms when request 100 arrives.
  const stalled = { stall: { at: 100, ms: 400 } };

  it('reports the latency a stalled server causes, counted from the scheduled send time', async () => {
    const r = await bench(stalled, { requests: 300, rate: 200, concurrency: 4 });
    // About 80 requests were due during the stall: each waited for it to end.
    expect(r.latencyMs!.p90).toBeGreaterThan(150);
    expect(r.latencyMs!.max).toBeGreaterThan(350);
    expect(r.requests.late).toBeGreaterThan(40);
    expect(r.parameters.model).toBe('open');
  });

  it('while the closed model hides the same stall in its tail (coordinated omission)', async () => {
    const r = await bench(stalled, { requests: 300, concurrency: 4 });
    expect(r.latencyMs!.max).toBeGreaterThan(350);
    expect(r.latencyMs!.p90).toBeLessThan(50);
  });
});

describe('runBench, bad targets', () => {
  it('says nothing is listening, and suggests --spawn', async () => {
    const closed = await startFakeApi();
    await closed.close();
    await expect(runBench({ ...BENCH_DEFAULTS, url: closed.url, requests: 1, batchSize: 1, dataDir: emptyDataDir, thresholds: {} })).rejects.toMatchObject({
      code: 'SERVER_UNREACHABLE',
      hint: expect.stringContaining('--spawn'),
    });
  });

  it('rejects a server that does not answer JSON', async () => {
    await expect(bench({ htmlHealth: true }, { requests: 1 })).rejects.toMatchObject({ code: 'SERVER_INVALID_RESPONSE', message: expect.stringContaining('not JSON') });
  });

  it('waits for /ready before measuring', async () => {
    const notes: string[] = [];
    api = await startFakeApi({ readyAfterMs: 400 });
    const r = await runBench({ ...BENCH_DEFAULTS, url: api.url, requests: 5, batchSize: 1, dataDir: emptyDataDir, thresholds: {} }, { onNote: (m) => notes.push(m) });
    expect(r.requests.succeeded).toBe(5);
    expect(notes.join('\n')).toContain('/ready');
  });
});
