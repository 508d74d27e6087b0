import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface MetricsProbes {
  queueDepth: () => number;
  /** Images the queue may hold (--max-queue): saturation is depth / capacity. */
  queueCapacity: number;
  modelLoaded: () => boolean;
  /** null when there is no Redis configured. */
  redisUp: () => boolean | null;
}

/** The server's Prometheus metrics, in a registry of their own (one per app, so tests stay apart). */
export interface ServeMetrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route' | 'status'>;
  predictions: Counter<'class_name'>;
  cacheHits: Counter;
  cacheMisses: Counter;
  cacheErrors: Counter;
  batchSize: Histogram;
  inferenceDuration: Histogram;
  /** Requests refused at once because the inference queue was full (503 + Retry-After). */
  rejected: Counter;
}

/**
 * Create every metric the issue names. Gauges read their value from `probes` at scrape time, so
 * nothing has to remember to update them. With several workers the cluster primary sums most
 * metrics; `model_loaded` and `redis_up` take the minimum (one worker down is down).
 */
export function createMetrics(probes: MetricsProbes, options: { defaultMetrics?: boolean } = {}): ServeMetrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const metrics: ServeMetrics = {
    registry,
    httpRequests: new Counter({
      name: 'http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status',
      labelNames: ['method', 'route', 'status'],
      registers,
    }),
    httpDuration: new Histogram({
      name: 'http_request_duration_seconds',
      help: 'Time from request to response, by route pattern',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    predictions: new Counter({ name: 'model_predictions_total', help: 'Images classified, by predicted class', labelNames: ['class_name'], registers }),
    cacheHits: new Counter({ name: 'cache_hits_total', help: 'Predictions answered without inference', registers }),
    cacheMisses: new Counter({ name: 'cache_misses_total', help: 'Predictions that needed inference', registers }),
    cacheErrors: new Counter({ name: 'cache_errors_total', help: 'Cache store commands that failed (served uncached)', registers }),
    batchSize: new Histogram({ name: 'inference_batch_size', help: 'Images per forward pass', buckets: [1, 2, 4, 8, 16, 32, 64, 128], registers }),
    rejected: new Counter({ name: 'inference_rejected_total', help: 'Requests refused because the inference queue was full', registers }),
    inferenceDuration: new Histogram({
      name: 'inference_duration_seconds',
      help: 'Time of one forward pass',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    }),
  };
  new Gauge({
    name: 'inference_queue_depth',
    help: 'Images waiting for a forward pass',
    registers,
    collect() {
      this.set(probes.queueDepth());
    },
  });
  new Gauge({
    name: 'model_loaded',
    help: '1 when a model is loaded and warm',
    aggregator: 'min',
    registers,
    collect() {
      this.set(probes.modelLoaded() ? 1 : 0);
    },
  });
  new Gauge({
    name: 'inference_queue_capacity',
    help: 'Images the inference queue may hold (--max-queue)',
    registers,
    collect() {
      this.set(probes.queueCapacity);
    },
  });
  // Only a server with Redis has a Redis to be down: without one, no series (an alert on
  // redis_up == 0 must not fire for the in-memory cache).
  if (probes.redisUp() !== null) {
    new Gauge({
      name: 'redis_up',
      help: '1 when the Redis cache is reachable',
      aggregator: 'min',
      registers,
      collect() {
        this.set(probes.redisUp() ? 1 : 0);
      },
    });
  }
  return metrics;
}
