import type { MiddlewareHandler } from 'hono';
import { CifarError } from '../../../errors.js';

export interface RequireReadyOptions {
  isReady: () => boolean;
}

/** Answer 503 (with Retry-After, from the error handler) while the model loads or warms up. */
export function requireReady(options: RequireReadyOptions): MiddlewareHandler {
  return async function requireReadyMiddleware(_c, next) {
    if (!options.isReady()) throw new CifarError('NOT_READY', 'the model is still loading', { hint: 'retry in a few seconds' });
    return next();
  };
}
