import type { MiddlewareHandler } from 'hono';
import type { ServeMetrics } from '../../metrics.js';
import { routeLabel } from '../route.js';

export interface HttpMetricsOptions {
  metrics: Pick<ServeMetrics, 'httpRequests' | 'httpDuration'>;
}

/** Count every request and time it, labelled by route pattern (not raw path) and status. */
export function httpMetrics(options: HttpMetricsOptions): MiddlewareHandler {
  const { httpRequests, httpDuration } = options.metrics;
  return async function httpMetricsMiddleware(c, next) {
    const started = performance.now();
    await next();
    const labels = { method: c.req.method, route: routeLabel(c), status: String(c.res.status) };
    httpRequests.inc(labels);
    httpDuration.observe(labels, (performance.now() - started) / 1000);
  };
}
