import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { CifarError, isCifarError, type ErrorCode } from '../errors.js';

/** HTTP status of each error code the server can meet; anything else is a 500. */
const STATUS: Partial<Record<ErrorCode, ContentfulStatusCode>> = {
  INVALID_IMAGE: 400,
  IMAGE_TOO_LARGE: 400,
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  REQUEST_TIMEOUT: 408,
  PAYLOAD_TOO_LARGE: 413,
  TOO_MANY_FILES: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  MISSING_FIELD: 422,
  OVERLOADED: 503,
  NOT_READY: 503,
  DEADLINE_EXCEEDED: 503,
  MODEL_MISSING: 503,
  // The GPU failed a batch (src/model/predictor.ts): a server fault the client can retry elsewhere.
  BACKEND_FAILED: 503,
};

/**
 * 503s the server chooses to give (shedding load, not ready, past a deadline, no model): expected
 * states, counted in the metrics, not faults. BACKEND_FAILED, the other 503, is a fault.
 */
export const CHOSEN_UNAVAILABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['OVERLOADED', 'NOT_READY', 'DEADLINE_EXCEEDED', 'MODEL_MISSING']);

/** The JSON body of every error answer. */
export interface ErrorBody {
  error: { code: string; message: string; hint?: string };
}

/** Status and body for any thrown value; unknown errors hide their message (it may leak internals). */
export function errorResponse(err: unknown): { status: ContentfulStatusCode; body: ErrorBody } {
  if (isCifarError(err)) {
    const status = STATUS[err.code] ?? 500;
    const body: ErrorBody = { error: { code: err.code, message: err.message } };
    if (err.hint) body.error.hint = err.hint;
    return { status, body };
  }
  return { status: 500, body: { error: { code: 'INTERNAL', message: 'internal server error' } } };
}

/** Whether a status means the client should come back later (gets a Retry-After). */
export function isRetryable(status: number): boolean {
  return status === 503;
}

export function notFound(path: string): CifarError {
  return new CifarError('NOT_FOUND', `no route for ${path}`, { hint: 'see GET /docs for the API' });
}
