import { createWriteStream } from 'node:fs';
import { stat, unlink } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { CifarError, fromSystemError, isCifarError } from '../errors.js';

export interface FetchOptions {
  signal?: AbortSignal;
  /** Attempts in a row without progress before giving up (default 5). */
  retries?: number;
  /** First backoff delay; doubles each failed attempt (default 1000 ms). */
  retryDelayMs?: number;
  /** Abort and retry an attempt when no byte arrives for this long (default 30 s). */
  idleTimeoutMs?: number;
  /** Bytes on disk so far and the expected total (undefined when the server does not say). */
  onProgress?: (bytes: number, total: number | undefined) => void;
  /** A transient failure is about to be retried. */
  onRetry?: (reason: string, attempt: number, delayMs: number) => void;
}

export interface FetchResult {
  bytes: number;
  /** True when an earlier partial file was continued with an HTTP Range request. */
  resumed: boolean;
}

class Retryable extends Error {}

/**
 * Download `url` into `partPath`, continuing a partial file left by an earlier attempt or run
 * with an HTTP Range request when the server allows it (and starting over when it does not).
 * Redirects are followed; connection drops, stalls, 5xx and 429 answers are retried with
 * exponential backoff, resuming where the bytes stopped.
 */
export async function fetchToFile(url: string, partPath: string, options: FetchOptions = {}): Promise<FetchResult> {
  const retries = options.retries ?? 5;
  const baseDelay = options.retryDelayMs ?? 1000;
  let failures = 0;
  let resumed = false;
  for (;;) {
    const before = await sizeOf(partPath);
    try {
      const got = await attempt(url, partPath, before, options);
      return { bytes: got.bytes, resumed: resumed || got.resumed };
    } catch (err) {
      if (options.signal?.aborted) throw new CifarError('ABORTED', `download of ${url} interrupted`, { cause: err });
      if (!(err instanceof Retryable)) throw isCifarError(err) ? err : fromSystemError(err, partPath);
      const after = await sizeOf(partPath);
      // A failure after progress is a fresh start for the retry budget: a long download over a
      // flaky link should finish, while a dead server still fails fast.
      failures = after > before ? 1 : failures + 1;
      resumed = resumed || after > 0;
      if (failures > retries) {
        throw new CifarError('NETWORK', `${url}: ${err.message} (gave up after ${retries} retries)`, {
          hint: 'check the network and run the command again: the download resumes where it stopped',
        });
      }
      const delay = baseDelay * 2 ** (failures - 1);
      options.onRetry?.(err.message, failures, delay);
      await sleep(delay, undefined, { signal: options.signal }).catch(() => {
        throw new CifarError('ABORTED', `download of ${url} interrupted`);
      });
    }
  }
}

async function attempt(url: string, partPath: string, offset: number, options: FetchOptions): Promise<{ bytes: number; resumed: boolean }> {
  const idle = new AbortController();
  const signals = [idle.signal, ...(options.signal ? [options.signal] : [])];
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => idle.abort(new Retryable('no data received for a while')), options.idleTimeoutMs ?? 30_000);
  };
  arm();
  try {
    let res: Response;
    try {
      res = await fetch(url, {
        headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
        redirect: 'follow',
        signal: AbortSignal.any(signals),
      });
    } catch (err) {
      throw networkError(url, err, idle.signal);
    }
    if (res.status === 416 && offset > 0) {
      // The partial file is not a prefix the server recognises: start over.
      await res.body?.cancel();
      await unlink(partPath);
      throw new Retryable('server refused to resume (416)');
    }
    if (res.status >= 500 || res.status === 429 || res.status === 408) {
      await res.body?.cancel();
      throw new Retryable(`server answered ${res.status}`);
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new CifarError('HTTP_STATUS', `${url}: server answered ${res.status} ${res.statusText}`.trim());
    }
    const resuming = res.status === 206 && offset > 0 && contentRangeStart(res) === offset;
    if (res.status === 206 && !resuming) {
      await res.body.cancel();
      await unlink(partPath).catch(() => {});
      throw new Retryable('server sent an unexpected byte range');
    }
    const length = Number(res.headers.get('content-length') ?? NaN);
    const total = Number.isFinite(length) ? (resuming ? offset : 0) + length : undefined;
    let bytes = resuming ? offset : 0;
    options.onProgress?.(bytes, total);
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        arm();
        bytes += chunk.length;
        options.onProgress?.(bytes, total);
        done(null, chunk);
      },
    });
    try {
      await pipeline(
        Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>),
        counter,
        createWriteStream(partPath, { flags: resuming ? 'a' : 'w' }),
      );
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EACCES' || code === 'EROFS') throw fromSystemError(err, partPath);
      throw networkError(url, err, idle.signal);
    }
    if (total !== undefined && bytes !== total) throw new Retryable(`connection closed after ${bytes} of ${total} bytes`);
    return { bytes, resumed: resuming };
  } finally {
    clearTimeout(timer);
  }
}

function contentRangeStart(res: Response): number | undefined {
  const m = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
  return m ? Number(m[1]) : undefined;
}

function networkError(url: string, err: unknown, idle: AbortSignal): Error {
  if (idle.aborted) return new Retryable('no data received for a while');
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e?.name === 'AbortError') return e;
  const code = e?.cause?.code;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new CifarError('NETWORK', `${url}: host not found (${code})`, { hint: 'check the URL and the network, or use --from with a local copy' });
  }
  if (code === 'ERR_INVALID_URL' || e instanceof TypeError && /Invalid URL|unknown scheme/i.test(e.message)) {
    return new CifarError('USAGE', `${url}: not a valid http(s) URL`);
  }
  return new Retryable(code ? `${code}${e.cause?.message ? `: ${e.cause.message}` : ''}` : (e?.message ?? String(err)));
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}
