import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLASSES } from '../../src/data/classes.js';
import { memoryStore } from '../../src/serve/cache/memory.js';
import { bombPng, form, lopsidedPng, png, readyApp, tinyPredictor } from './helpers.js';

type Served = Awaited<ReturnType<typeof readyApp>>;
type BodyInit = NonNullable<RequestInit['body']>;
const post = (s: Served, path: string, body: BodyInit, headers: Record<string, string> = {}) => s.app.request(path, { method: 'POST', body, headers });

describe('serve API contract', () => {
  let s: Served;
  beforeAll(async () => {
    s = await readyApp();
  });
  afterAll(() => s.close());

  it('POST /predict answers with the Python service field names', async () => {
    const res = await post(s, '/predict', form('file', await png(1)));
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['cached', 'class_name', 'confidence', 'model_version', 'prediction', 'probabilities'].sort());
    const probs = body.probabilities as number[];
    expect(probs).toHaveLength(10);
    expect(probs.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
    expect(body.class_name).toBe(CLASSES[body.prediction as number]);
    expect(body.confidence).toBe(Math.max(...probs));
    expect(body.model_version).toBe('v1');
    expect(body.cached).toBe(false);
    expect(res.headers.get('x-request-id')).toBeTruthy();
  });

  it('a hit is the same JSON as the miss before it, but for cached (application/json, field order kept)', async () => {
    const bytes = await png(4);
    const miss = await post(s, '/predict', form('file', bytes));
    const hit = await post(s, '/predict', form('file', bytes));
    expect(miss.headers.get('content-type')).toBe('application/json');
    expect(hit.headers.get('content-type')).toBe('application/json');
    const [missText, hitText] = [await miss.text(), await hit.text()];
    expect(hitText).toBe(missText.replace('"cached":false}', '"cached":true}'));
    expect(Object.keys(JSON.parse(hitText) as object)).toEqual(['prediction', 'class_name', 'confidence', 'probabilities', 'model_version', 'cached']);
  });

  it('POST /predict accepts a raw image/* body', async () => {
    const res = await post(s, '/predict', new Uint8Array(await png(2)), { 'content-type': 'image/png' });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { class_name: string }).class_name).toMatch(/\w+/);
  });

  it('a repeated image is answered from the cache without inference', async () => {
    const bytes = await png(3);
    const first = (await (await post(s, '/predict', form('file', bytes))).json()) as { cached: boolean; probabilities: number[] };
    const passes = s.predictor.calls.length;
    const second = (await (await post(s, '/predict', form('file', bytes))).json()) as { cached: boolean; probabilities: number[] };
    expect(first.cached).toBe(false);
    expect(second.cached).toBe(true);
    expect(second.probabilities).toEqual(first.probabilities);
    expect(s.predictor.calls.length).toBe(passes);
  });

  it('POST /predict/batch answers per item, in order, each through the cache', async () => {
    const [a, b] = [await png(4), await png(5)];
    await post(s, '/predict', form('file', a));
    const res = await post(s, '/predict/batch', form('files', a, b, a));
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown[]> & { batch_size: number; model_version: string };
    expect(body.batch_size).toBe(3);
    expect(body.model_version).toBe('v1');
    for (const k of ['predictions', 'class_names', 'confidences', 'probabilities', 'cached']) expect(body[k]).toHaveLength(3);
    expect(body.cached![0]).toBe(true);
    expect(body.probabilities![2]).toEqual(body.probabilities![0]);
  });

  it('concurrent requests are gathered into batches (fewer forward passes than images)', async () => {
    const images = await Promise.all(Array.from({ length: 12 }, (_, i) => png(100 + i)));
    const before = s.predictor.calls.length;
    const answers = await Promise.all(images.map((img) => post(s, '/predict', form('file', img))));
    expect(answers.every((r) => r.status === 200)).toBe(true);
    const passes = s.predictor.calls.slice(before);
    expect(passes.reduce((a, b) => a + b, 0)).toBe(12);
    expect(passes.length).toBeLessThan(12);
  });

  it('concurrent identical misses run inference once (single-flight)', async () => {
    const bytes = await png(200);
    const before = s.predictor.calls.reduce((a, b) => a + b, 0);
    const bodies = await Promise.all(Array.from({ length: 8 }, async () => (await post(s, '/predict', form('file', bytes))).json() as Promise<{ cached: boolean }>));
    expect(s.predictor.calls.reduce((a, b) => a + b, 0) - before).toBe(1);
    expect(bodies.filter((b) => !b.cached)).toHaveLength(1);
  });

  it('GET /health, /ready, /classes describe the model', async () => {
    const health = (await (await s.app.request('/health')).json()) as Record<string, unknown>;
    expect(health).toEqual({ status: 'healthy', model_loaded: true, redis_connected: null, model_name: 'tiny', model_version: 'v1', tta: 'none', inference: 'inline', classes: [...CLASSES] });
    expect((await s.app.request('/ready')).status).toBe(200);
    expect(await (await s.app.request('/classes')).json()).toEqual({ classes: [...CLASSES] });
  });

  it('GET /openapi.json and an offline /docs page with its assets', async () => {
    const doc = (await (await s.app.request('/openapi.json')).json()) as { openapi: string; paths: Record<string, unknown> };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/predict', '/predict/batch', '/health', '/ready', '/classes', '/metrics']));
    const html = await (await s.app.request('/docs')).text();
    expect(html).toContain('/docs/assets/swagger-ui-bundle.js');
    expect(html).not.toMatch(/https?:\/\//);
    const js = await s.app.request('/docs/assets/swagger-ui-bundle.js');
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toContain('javascript');
    expect((await s.app.request('/docs/assets/..%2Fpackage.json')).status).toBe(404);
  });

  it('/metrics exposes every metric the issue names, and the counters move', async () => {
    const read = async () => (await s.app.request('/metrics')).text();
    const before = await read();
    for (const name of [
      'http_requests_total',
      'http_request_duration_seconds',
      'model_predictions_total',
      'cache_hits_total',
      'cache_misses_total',
      'cache_errors_total',
      'inference_batch_size',
      'inference_duration_seconds',
      'inference_queue_depth',
      'inference_queue_capacity',
      'inference_rejected_total',
      'model_loaded',
    ]) {
      expect(before).toContain(`# TYPE ${name} `);
    }
    // In-memory cache: there is no Redis, so no redis_up series to alert on (see redis.test.ts).
    expect(before).not.toContain('redis_up');
    expect(before).toMatch(/^model_loaded 1$/m);
    const count = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
    const hitsRe = /^cache_hits_total (\d+)/m;
    const routeRe = /^http_requests_total\{method="POST",route="\/predict",status="200"\} (\d+)/m;
    const bytes = await png(300);
    await post(s, '/predict', form('file', bytes));
    await post(s, '/predict', form('file', bytes));
    const after = await read();
    expect(count(after, hitsRe)).toBe(count(before, hitsRe) + 1);
    expect(count(after, routeRe)).toBe(count(before, routeRe) + 2);
    expect(after).toMatch(/^inference_batch_size_count [1-9]/m);
    expect(after).toMatch(/^model_predictions_total\{class_name="\w+"\} [1-9]/m);
  });

  it('the default process metrics are there when not turned off', async () => {
    const full = await readyApp({ defaultMetrics: true });
    try {
      expect(await (await full.app.request('/metrics')).text()).toContain('process_cpu_user_seconds_total');
    } finally {
      await full.close();
    }
  });
});

describe('model versions', () => {
  it('a reloaded model switches the version and never serves the old model’s cached answer', async () => {
    let next = 2;
    const s = await readyApp({ loadPredictor: () => tinyPredictor(`v${next++}`, 7) });
    try {
      const bytes = await png(9);
      await post(s, '/predict', form('file', bytes));
      const cachedOld = (await (await post(s, '/predict', form('file', bytes))).json()) as { cached: boolean; model_version: string };
      expect(cachedOld).toMatchObject({ cached: true, model_version: 'v1' });
      const reload = await s.app.request('/admin/reload', { method: 'POST' });
      expect(await reload.json()).toMatchObject({ status: 'reloaded', model_version: 'v2' });
      const fresh = (await (await post(s, '/predict', form('file', bytes))).json()) as { cached: boolean; model_version: string };
      expect(fresh).toMatchObject({ cached: false, model_version: 'v2' });
    } finally {
      await s.close();
    }
  });

  it('/ready is 503 with Retry-After until the model is loaded and warm', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const s = await import('../../src/serve/app.js').then(({ createApp }) =>
      createApp({ loadPredictor: async () => (await gate, tinyPredictor()), defaultMetrics: false }),
    );
    try {
      const early = await s.app.request('/ready');
      expect(early.status).toBe(503);
      expect(early.headers.get('retry-after')).toBe('1');
      expect(((await (await s.app.request('/health')).json()) as { status: string }).status).toBe('degraded');
      expect((await s.app.request('/predict', { method: 'POST', body: form('file', await png(1)) })).status).toBe(503);
      release();
      await s.ready;
      expect((await s.app.request('/ready')).status).toBe(200);
    } finally {
      await s.close();
    }
  });
});

describe('errors: JSON bodies with the right status', () => {
  let s: Served;
  beforeAll(async () => {
    s = await readyApp({ config: { maxUploadBytes: 64 * 1024, maxFiles: 4, apiKey: 'sekrit' } });
  });
  afterAll(() => s.close());
  const auth = { authorization: 'Bearer sekrit' };

  const cases: [string, () => Promise<[string, BodyInit, Record<string, string>?]>, number, string][] = [
    ['zero bytes', async () => ['/predict', form('file', Buffer.alloc(0))], 400, 'INVALID_IMAGE'],
    ['a truncated PNG', async () => ['/predict', form('file', (await png(1, 64)).subarray(0, 60))], 400, 'INVALID_IMAGE'],
    ['a text file', async () => ['/predict', form('file', Buffer.from('hello, I am not an image\n'))], 400, 'INVALID_IMAGE'],
    ['a 20000×20000 PNG (decompression bomb)', async () => ['/predict', form('file', bombPng())], 400, 'IMAGE_TOO_LARGE'],
    ['the wrong field name', async () => ['/predict', form('image', await png(1))], 422, 'MISSING_FIELD'],
    ['no files in a batch', async () => ['/predict/batch', form('file', await png(1))], 422, 'MISSING_FIELD'],
    ['a body over --max-upload-bytes', async () => ['/predict', form('file', Buffer.alloc(100 * 1024, 7))], 413, 'PAYLOAD_TOO_LARGE'],
    ['too many files in a batch', async () => ['/predict/batch', form('files', ...(await Promise.all([1, 2, 3, 4, 5].map((n) => png(n)))))], 413, 'TOO_MANY_FILES'],
    ['a JSON body', async () => ['/predict', JSON.stringify({ file: 'x' }), { 'content-type': 'application/json' }], 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['a raw body on the batch route', async () => ['/predict/batch', new Uint8Array(await png(1)), { 'content-type': 'image/png' }], 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['multipart without a boundary', async () => ['/predict', 'x', { 'content-type': 'multipart/form-data' }], 400, 'BAD_REQUEST'],
  ];
  it.each(cases)('%s', async (_name, make, status, code) => {
    const [path, body, headers] = await make();
    const res = await s.app.request(path, { method: 'POST', body, headers: { ...auth, ...headers } });
    expect(res.status).toBe(status);
    const json = (await res.json()) as { error: { code: string; message: string } };
    expect(json.error.code).toBe(code);
    expect(json.error.message).toBeTruthy();
  });

  it('413 as soon as Content-Length is over the limit, closing the connection', async () => {
    const res = await s.app.request('/predict', { method: 'POST', body: 'x', headers: { ...auth, 'content-type': 'image/png', 'content-length': String(10 << 20) } });
    expect(res.status).toBe(413);
    expect(res.headers.get('connection')).toBe('close');
  });

  it('401 without or with a wrong API key; health, ready and metrics stay open', async () => {
    const img = await png(1);
    expect((await s.app.request('/predict', { method: 'POST', body: form('file', img) })).status).toBe(401);
    expect((await s.app.request('/predict', { method: 'POST', body: form('file', img), headers: { 'x-api-key': 'nope' } })).status).toBe(401);
    expect((await s.app.request('/predict', { method: 'POST', body: form('file', img), headers: { 'x-api-key': 'sekrit' } })).status).toBe(200);
    expect((await s.app.request('/predict', { method: 'POST', body: form('file', img), headers: auth })).status).toBe(200);
    expect((await s.app.request('/admin/reload', { method: 'POST' })).status).toBe(401);
    for (const path of ['/health', '/ready', '/metrics']) expect((await s.app.request(path)).status).toBe(200);
  });

  it('404 JSON for an unknown route', async () => {
    const res = await s.app.request('/nope', { headers: auth });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
  });
});

describe('overload', () => {
  it('past --max-queue answers 503 with Retry-After at once, and counts the rejection', async () => {
    const inner = await tinyPredictor();
    // A model that takes 300 ms per forward pass, so the queue fills while it works.
    const slow = { ...inner, predict: async (px: Uint8Array, n: number) => (await new Promise((r) => setTimeout(r, 300)), inner.predict(px, n)) };
    const s = await readyApp({ predictor: slow, config: { maxBatch: 1, maxQueue: 2 } });
    try {
      const started = Date.now();
      const answers = await Promise.all(Array.from({ length: 6 }, async (_, i) => post(s, '/predict', form('file', await png(100 + i)))));
      const statuses = answers.map((r) => r.status).sort();
      expect(statuses.filter((x) => x === 200).length).toBeGreaterThanOrEqual(2);
      const refused = answers.filter((r) => r.status === 503);
      expect(refused.length).toBeGreaterThanOrEqual(1);
      expect(refused[0]!.headers.get('retry-after')).toBe('1');
      expect(((await refused[0]!.json()) as { error: { code: string } }).error.code).toBe('OVERLOADED');
      expect(Date.now() - started).toBeLessThan(5000);
      const metrics = await (await s.app.request('/metrics')).text();
      expect(Number(/^inference_rejected_total (\d+)/m.exec(metrics)?.[1])).toBe(refused.length);
      expect(metrics).toMatch(/^inference_queue_capacity 2$/m);
    } finally {
      await s.close();
    }
  });
});

describe('serve with flip TTA (--tta)', () => {
  it('answers the mean over the image and its mirror image, says so on /health, and shares no cache entry with a server without it', async () => {
    type Answer = { probabilities: number[]; cached: boolean; model_version: string };
    // Both servers run the same weights (v1, seed 1) over one cache store, as two deployments sharing a Redis would.
    const store = memoryStore(100);
    const plain = await readyApp({ store, predictor: await tinyPredictor('v1', 1) });
    const tta = await readyApp({ store, predictor: await tinyPredictor('v1', 1, true) });
    try {
      const [image, mirror] = [await lopsidedPng(), await lopsidedPng(true)];
      const ask = async (s: Served, bytes: Buffer) => (await (await post(s, '/predict', form('file', bytes))).json()) as Answer;
      const a = await ask(plain, image);
      const m = await ask(plain, mirror);
      const t = await ask(tta, image);
      expect(t.cached).toBe(false);
      expect(t.model_version).toBe('v1');
      t.probabilities.forEach((p, i) => expect(p).toBeCloseTo((a.probabilities[i]! + m.probabilities[i]!) / 2, 6));
      // The image and its mirror differ enough for the mean to be neither.
      expect(Math.max(...a.probabilities.map((p, i) => Math.abs(p - t.probabilities[i]!)))).toBeGreaterThan(1e-4);
      expect(await ask(tta, image)).toEqual({ ...t, cached: true });
      expect((await ask(plain, image)).probabilities).toEqual(a.probabilities);
      expect(((await (await tta.app.request('/health')).json()) as { tta: string }).tta).toBe('flip');
    } finally {
      await tta.close();
      await plain.close();
    }
  });
});
