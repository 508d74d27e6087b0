import { createHash, timingSafeEqual } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { CifarError } from '../../../errors.js';

export interface ApiKeyOptions {
  /** The key; when undefined every route is open. */
  key: string | undefined;
  /** Paths that stay open even with a key (probes and scrapes). */
  open: readonly string[];
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Require the API key as `Authorization: Bearer KEY` or `X-API-Key: KEY`. Keys are compared
 * through their digests in constant time, so neither the length nor a prefix leaks by timing.
 */
export function apiKey(options: ApiKeyOptions): MiddlewareHandler {
  const expected = options.key === undefined ? undefined : digest(options.key);
  const open = new Set(options.open);
  return async function apiKeyMiddleware(c, next) {
    if (!expected || open.has(c.req.path)) return next();
    const bearer = /^Bearer\s+(.+)$/i.exec(c.req.header('authorization') ?? '')?.[1];
    const given = bearer ?? c.req.header('x-api-key');
    if (given === undefined || !timingSafeEqual(digest(given), expected)) {
      throw new CifarError('UNAUTHORIZED', given === undefined ? 'an API key is required' : 'wrong API key', {
        hint: 'send it as `Authorization: Bearer KEY` or `X-API-Key: KEY`',
      });
    }
    return next();
  };
}
