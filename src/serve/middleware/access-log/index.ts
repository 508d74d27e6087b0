import { randomUUID } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import type { Logger } from 'pino';
import '../../types.js';
import { routeLabel } from '../route.js';

export interface AccessLogOptions {
  logger: Logger;
}

const VALID_ID = /^[\w.:-]{1,128}$/;

/**
 * Give each request an id (the caller's `X-Request-Id` when it is sane, so traces join up),
 * echo it back, and write one JSON line when the response is ready.
 */
export function accessLog(options: AccessLogOptions): MiddlewareHandler {
  const { logger } = options;
  return async function accessLogMiddleware(c, next) {
    const started = performance.now();
    const given = c.req.header('x-request-id');
    const requestId = given && VALID_ID.test(given) ? given : randomUUID();
    c.set('requestId', requestId);
    // Before next(): a header set on a finished response makes hono rebuild it around a body
    // stream, which @hono/node-server then pipes out the slow way (a third of a cache hit's cost).
    c.header('X-Request-Id', requestId);
    await next();
    if (!logger.isLevelEnabled('info')) return;
    const line = {
      request_id: requestId,
      method: c.req.method,
      route: routeLabel(c),
      status: c.res.status,
      latency_ms: Math.round((performance.now() - started) * 100) / 100,
      cached: c.get('cached'),
      error: c.get('errorCode'),
    };
    // 503 is the server's own choice (overloaded, not ready yet, past the deadline): a warning.
    if (c.res.status === 503) logger.warn(line, 'request');
    else if (c.res.status >= 500) logger.error(line, 'request');
    else logger.info(line, 'request');
  };
}
