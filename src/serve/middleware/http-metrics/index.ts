import type { MiddlewareHandler } from 'hono';
import type { ServeMetrics } from '../../metrics.js';
import { routeLabel } from '../route.js';

export interface HttpMetricsOptions {
  metrics: Pick<ServeMetrics, 'httpRequests' | 'httpDuration'>;
}

interface Series {
  count: () => void;
  observe: (seconds: number) => void;
}

/** Count every request and time it, labelled by route pattern (not raw path) and status. */
export function httpMetrics(options: HttpMetricsOptions): MiddlewareHandler {
  const { httpRequests, httpDuration } = options.metrics;
  // Route labels are bounded (patterns, not paths), so this holds a few dozen entries; it spares
  // building and validating label objects per request (and the counter's label hashing).
  const series = new Map<string, Series>();
  const seriesOf = (method: string, route: string, status: number): Series => {
    const id = `${method} ${route} ${status}`;
    let s = series.get(id);
    if (!s) {
      const labels = { method, route, status: String(status) };
      const counter = httpRequests.labels(labels);
      const histogram = httpDuration.labels(labels);
      s = { count: () => counter.inc(), observe: (seconds) => histogram.observe(seconds) };
      series.set(id, s);
    }
    return s;
  };
  return async function httpMetricsMiddleware(c, next) {
    const started = performance.now();
    await next();
    const s = seriesOf(c.req.method, routeLabel(c), c.res.status);
    s.count();
    s.observe((performance.now() - started) / 1000);
  };
}
