import { Hono } from 'hono';
import { pino, type Logger } from 'pino';
import { CifarError } from '../errors.js';
import type { Predictor, PredictorInfo } from '../model/predictor.js';
import { createPredictionCache, createStore, type CacheStore, type SharedFlights } from './cache/index.js';
import { createClassifier } from './classifier.js';
import { SERVE_DEFAULTS, type ServeConfig } from './config.js';
import { CHOSEN_UNAVAILABLE, errorResponse, isRetryable, notFound } from './http-errors.js';
import { createMetrics, type ServeMetrics } from './metrics.js';
import { accessLog } from './middleware/access-log/index.js';
import { apiKey } from './middleware/api-key/index.js';
import { httpMetrics } from './middleware/http-metrics/index.js';
import { requireReady } from './middleware/require-ready/index.js';
import { createModelSlot } from './model-slot.js';
import { DOCS_HTML, docsAsset, openApiDocument } from './openapi.js';
import { predictRoutes } from './routes/predict.js';
import './types.js';

export interface AppOptions {
  /** A loaded model to serve; it is warmed up before /ready says yes. */
  predictor?: Predictor;
  /** Loads the model folder: used at start when `predictor` is not given, and on every reload. */
  loadPredictor?: () => Promise<Predictor>;
  /** Limits, cache and batching settings; anything left out takes SERVE_DEFAULTS. */
  config?: Partial<ServeConfig>;
  /** A cache store to use instead of the one `config` describes (memory LRU or Redis). */
  store?: CacheStore;
  logger?: Logger;
  /** The other workers' cache and computations, asked on a local miss (cluster workers only). */
  sharedFlights?: SharedFlights;
  /** With several workers: whether all of them are ready; /ready waits for it too. */
  peersReady?: () => boolean;
  /** The /metrics text; the cluster worker passes one that aggregates every worker. */
  metricsText?: () => Promise<string>;
  /** What POST /admin/reload does; default: reload this app's model. */
  onReloadRequest?: () => Promise<PredictorInfo>;
  /** Collect the default process metrics (default true; tests with many apps turn it off). */
  defaultMetrics?: boolean;
}

/** A built server: the Hono app plus the handles to run and stop it. */
export interface CifarApp {
  app: Hono;
  /** Settles when the first model is loaded and warm (rejects if it fails to load). */
  ready: Promise<void>;
  isReady(): boolean;
  /** Load the model folder again and switch to it atomically. */
  reload(): Promise<PredictorInfo>;
  metrics: ServeMetrics;
  /** Finish queued inference, dispose the model, close the cache store. */
  close(): Promise<void>;
}

const OPEN_PATHS = ['/health', '/ready', '/metrics', '/docs', '/openapi.json', '/docs/assets/swagger-ui.css', '/docs/assets/swagger-ui-bundle.js'];

/**
 * Build the prediction API around an injected model.
 *
 * @example
 *   const served = createApp({ predictor, config: { maxBatch: 16 } });
 *   await served.ready;
 *   const res = await served.app.request('/predict', { method: 'POST', body: form });
 */
export function createApp(options: AppOptions): CifarApp {
  const config: ServeConfig = { ...SERVE_DEFAULTS, ...options.config };
  const logger = options.logger ?? pino({ level: 'silent' });
  const slot = createModelSlot({ maxBatch: config.maxBatch, waitMs: config.batchWaitMs, maxQueue: config.maxQueue, onBatch: (n, s) => onBatch(n, s) });
  const store =
    options.store ??
    createStore({
      redisUrl: config.redisUrl,
      ttlSeconds: config.cacheTtlSeconds,
      maxEntries: config.cacheSize,
      commandTimeoutMs: config.redisTimeoutMs,
      onConnectionError: (err) => logger.warn({ err: err.message }, 'redis connection error'),
    });
  const metrics = createMetrics(
    { queueDepth: () => slot.depth(), queueCapacity: config.maxQueue, modelLoaded: () => ready, redisUp: () => store.connected() },
    { defaultMetrics: options.defaultMetrics ?? true },
  );
  const onBatch = (n: number, seconds: number) => {
    metrics.batchSize.observe(n);
    metrics.inferenceDuration.observe(seconds);
  };
  const cache = createPredictionCache(
    store,
    {
      onHit: () => metrics.cacheHits.inc(),
      onMiss: () => metrics.cacheMisses.inc(),
      onError: (err) => {
        metrics.cacheErrors.inc();
        logger.debug({ err: err instanceof Error ? err.message : String(err) }, 'cache error, serving uncached');
      },
    },
    options.sharedFlights,
  );
  // One counter child per class, looked up once: the label object is not hashed per request.
  const predicted = new Map<string, ReturnType<ServeMetrics['predictions']['labels']>>();
  const countPrediction = (name: string) => {
    let child = predicted.get(name);
    if (!child) predicted.set(name, (child = metrics.predictions.labels(name)));
    child.inc();
  };
  const classify = createClassifier({ slot, cache, maxImagePixels: config.maxImagePixels, onPrediction: countPrediction });

  let ready = false;
  const install = async (predictor: Predictor) => {
    const info = await slot.install(predictor);
    ready = true;
    logger.info({ model: info.name, version: info.version, backend: info.backend }, 'model ready');
    return info;
  };
  const reload = async () => {
    if (!options.loadPredictor) throw new CifarError('MODEL_MISSING', 'this server has no model loader to reload from');
    return install(await options.loadPredictor());
  };
  const readyPromise = options.predictor ? install(options.predictor).then(() => undefined) : reload().then(() => undefined);
  // The caller may never await `ready`; a failed load is still visible as /ready 503.
  readyPromise.catch((err: unknown) => logger.error({ err: err instanceof Error ? err.message : String(err) }, 'model failed to load'));

  const app = new Hono();
  app.onError((err, c) => {
    const { status, body } = errorResponse(err);
    if (err instanceof CifarError && err.code === 'OVERLOADED') metrics.rejected.inc();
    c.set('errorCode', body.error.code);
    // A fault gets its own line with the stack. A 503 the server chose (overloaded, loading,
    // past the deadline: each counted in the metrics) is only the access log's warning: a
    // stack a rejected request would flood the log just when the server is shedding load.
    if (status >= 500 && !(err instanceof CifarError && CHOSEN_UNAVAILABLE.has(err.code))) {
      logger.error({ err: err.message, stack: err.stack, request_id: c.get('requestId') }, 'request failed');
    }
    if (isRetryable(status)) c.header('Retry-After', '1');
    // The rest of an over-limit body is never read: close the connection rather than drain it.
    if (status === 413 || status === 408) c.header('Connection', 'close');
    return c.json(body, status);
  });
  app.notFound((c) => {
    const { status, body } = errorResponse(notFound(c.req.path));
    return c.json(body, status);
  });

  app.use(accessLog({ logger }));
  app.use(httpMetrics({ metrics }));
  app.use(apiKey({ key: config.apiKey, open: OPEN_PATHS }));
  app.use('/predict/*', requireReady({ isReady: () => ready }));
  app.use('/predict', requireReady({ isReady: () => ready }));

  app.route('/', predictRoutes({ classify, limits: { maxBytes: config.maxUploadBytes, maxFiles: config.maxFiles, timeoutMs: config.requestTimeoutMs }, requestTimeoutMs: config.requestTimeoutMs }));

  app.get('/health', (c) => {
    const info = slot.current()?.predictor.info;
    const redis = store.connected();
    return c.json({
      status: ready && redis !== false ? 'healthy' : 'degraded',
      model_loaded: ready,
      redis_connected: redis,
      model_name: info?.name ?? null,
      model_version: info?.version ?? null,
      tta: info ? (info.tta ? 'flip' : 'none') : null,
      inference: info ? (info.thread ? 'thread' : 'inline') : null,
      classes: info?.classes ?? [],
    });
  });
  app.get('/ready', (c) => {
    if (!ready) throw new CifarError('NOT_READY', 'the model is still loading', { hint: 'retry in a few seconds' });
    if (options.peersReady && !options.peersReady()) throw new CifarError('NOT_READY', 'other workers are still loading the model', { hint: 'retry in a few seconds' });
    return c.json({ ready: true });
  });
  app.get('/classes', (c) => {
    const info = slot.current()?.predictor.info;
    if (!info) throw new CifarError('NOT_READY', 'the model is still loading');
    return c.json({ classes: info.classes });
  });
  app.get('/metrics', async (c) => {
    const text = options.metricsText ? await options.metricsText() : await metrics.registry.metrics();
    return c.body(text, 200, { 'Content-Type': metrics.registry.contentType });
  });
  app.get('/openapi.json', (c) => c.json(openApiDocument(slot.current()?.predictor.info.version ?? 'unknown')));
  app.get('/docs', (c) => c.html(DOCS_HTML));
  app.get('/docs/assets/:file', async (c) => {
    const asset = docsAsset(c.req.param('file'));
    if (!asset) throw notFound(c.req.path);
    return c.body(new Uint8Array(await asset.body), 200, { 'Content-Type': asset.type, 'Cache-Control': 'public, max-age=86400' });
  });
  app.post('/admin/reload', async (c) => {
    const info = await (options.onReloadRequest ?? reload)();
    return c.json({ status: 'reloaded', model_name: info.name, model_version: info.version });
  });

  return {
    app,
    ready: readyPromise,
    isReady: () => ready,
    reload,
    metrics,
    async close() {
      ready = false;
      await slot.close();
      await cache.close();
    },
  };
}
