/**
 * The one error type of cifar. Library code throws `CifarError` with a stable `code`;
 * the CLI maps codes to exit codes in one place (`exitCodeFor`), the server to HTTP statuses.
 */
export type ErrorCode =
  | 'USAGE'
  | 'DATASET_MISSING'
  | 'DATASET_CORRUPT'
  | 'ARCHIVE_INVALID'
  | 'ARCHIVE_UNSUPPORTED'
  | 'CHECKSUM_MISMATCH'
  | 'INVALID_IMAGE'
  | 'UNKNOWN_CLASS'
  | 'NETWORK'
  | 'HTTP_STATUS'
  | 'DISK_FULL'
  | 'IO'
  | 'ABORTED'
  | 'NOT_BUILT'
  | 'MODEL_MISSING'
  | 'MODEL_INVALID'
  | 'BACKEND_UNAVAILABLE'
  | 'BACKEND_FAILED'
  | 'CONFIG_INVALID'
  | 'OUT_OF_MEMORY'
  // Server-side codes: src/serve/http-errors.ts maps each to an HTTP status.
  | 'IMAGE_TOO_LARGE'
  | 'PAYLOAD_TOO_LARGE'
  | 'TOO_MANY_FILES'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'MISSING_FIELD'
  | 'BAD_REQUEST'
  | 'UNAUTHORIZED'
  | 'NOT_FOUND'
  | 'OVERLOADED'
  | 'DEADLINE_EXCEEDED'
  | 'NOT_READY'
  | 'REQUEST_TIMEOUT'
  | 'WORKER_CRASHED'
  // cifar bench: the target server cannot be benchmarked, or a threshold was missed.
  | 'SERVER_UNREACHABLE'
  | 'SERVER_INVALID_RESPONSE'
  | 'THRESHOLD_MISSED';

export class CifarError extends Error {
  readonly code: ErrorCode;
  /** What the user can do next, shown after the message. */
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CifarError';
    this.code = code;
    this.hint = options.hint;
  }
}

export function isCifarError(err: unknown): err is CifarError {
  return err instanceof CifarError;
}

/** Exit status for each error code: 2 for misuse, 130 for an interrupt, 1 for everything else. */
export function exitCodeFor(err: unknown): number {
  if (!isCifarError(err)) return 1;
  switch (err.code) {
    case 'USAGE':
    case 'CONFIG_INVALID':
    case 'NOT_BUILT':
    case 'SERVER_UNREACHABLE':
    case 'SERVER_INVALID_RESPONSE':
      return 2;
    case 'ABORTED':
      return 130;
    default:
      return 1;
  }
}

/**
 * Turn a Node system error (ENOSPC, EACCES, ...) into a CifarError with a one-line message.
 * Anything already a CifarError passes through unchanged.
 */
export function fromSystemError(err: unknown, what: string): CifarError {
  if (isCifarError(err)) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.name === 'AbortError' || e?.code === 'ABORT_ERR') {
    return new CifarError('ABORTED', `${what}: interrupted`, { cause: err });
  }
  switch (e?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new CifarError('DISK_FULL', `${what}: no space left on device`, {
        hint: 'free some disk space and run the command again',
        cause: err,
      });
    case 'EACCES':
    case 'EPERM':
      return new CifarError('IO', `${what}: permission denied (${e.path ?? ''})`, { cause: err });
    case 'ENOENT':
      return new CifarError('IO', `${what}: no such file or directory (${e.path ?? ''})`, { cause: err });
    default:
      return new CifarError('IO', `${what}: ${e?.message ?? String(err)}`, { cause: err });
  }
}
