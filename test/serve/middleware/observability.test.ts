import { Writable } from 'node:stream';
import { Hono } from 'hono';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../../src/serve/metrics.js';
import { accessLog } from '../../../src/serve/middleware/access-log/index.js';
import { httpMetrics } from '../../../src/serve/middleware/http-metrics/index.js';
import { requireReady } from '../../../src/serve/middleware/require-ready/index.js';

describe('accessLog middleware', () => {
  it('writes one JSON line per request with id, method, route pattern, status, latency and cached', async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk))), done()) });
    const app = new Hono();
    app.use(accessLog({ logger: pino({ level: 'info' }, sink) }));
    app.get('/items/:id', (c) => (c.set('cached', true), c.text('ok')));
    const res = await app.request('/items/42', { headers: { 'x-request-id': 'abc-1' } });
    expect(res.headers.get('x-request-id')).toBe('abc-1');
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ request_id: 'abc-1', method: 'GET', route: '/items/:id', status: 200, cached: true });
    expect(typeof lines[0]!.latency_ms).toBe('number');
  });

  it('echoes the request id on error answers and on 404s too', async () => {
    const app = new Hono();
    app.use(accessLog({ logger: pino({ level: 'silent' }) }));
    app.onError((_err, c) => c.json({ error: 'boom' }, 500));
    app.notFound((c) => c.json({ error: 'nothing' }, 404));
    app.get('/fail', () => {
      throw new Error('boom');
    });
    for (const path of ['/fail', '/nowhere']) {
      const res = await app.request(path, { headers: { 'x-request-id': `id-${path.slice(1)}` } });
      expect(res.headers.get('x-request-id')).toBe(`id-${path.slice(1)}`);
    }
  });

  it('replaces an unusable client request id with a fresh one', async () => {
    const app = new Hono();
    app.use(accessLog({ logger: pino({ level: 'silent' }) }));
    app.get('/', (c) => c.text(c.get('requestId')));
    const res = await app.request('/', { headers: { 'x-request-id': 'bad id with spaces and {braces}' } });
    expect(await res.text()).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('httpMetrics middleware', () => {
  it('labels by route pattern, and unknown paths as unmatched', async () => {
    const metrics = createMetrics({ queueDepth: () => 0, queueCapacity: 8, modelLoaded: () => true, redisUp: () => null }, { defaultMetrics: false });
    const app = new Hono();
    app.use(httpMetrics({ metrics }));
    app.get('/items/:id', (c) => c.text('ok'));
    await app.request('/items/1');
    await app.request('/items/2');
    await app.request('/random/junk');
    const text = await metrics.registry.metrics();
    expect(text).toContain('http_requests_total{method="GET",route="/items/:id",status="200"} 2');
    expect(text).toContain('http_requests_total{method="GET",route="unmatched",status="404"} 1');
    expect(text).toMatch(/http_request_duration_seconds_count\{method="GET",route="\/items\/:id",status="200"\} 2/);
  });
});

describe('requireReady middleware', () => {
  it('answers NOT_READY until ready', async () => {
    let ready = false;
    const app = new Hono();
    app.onError((err, c) => c.json({ code: (err as { code?: string }).code }, 503));
    app.use(requireReady({ isReady: () => ready }));
    app.get('/', (c) => c.text('ok'));
    expect(await (await app.request('/')).json()).toEqual({ code: 'NOT_READY' });
    ready = true;
    expect((await app.request('/')).status).toBe(200);
  });
});
