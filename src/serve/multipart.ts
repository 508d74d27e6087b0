import { Readable } from 'node:stream';
import busboy from 'busboy';
import { CifarError } from '../errors.js';

/** One uploaded file, fully read. */
export interface Upload {
  field: string;
  filename: string;
  mimeType: string;
  data: Buffer;
}

export interface BodyLimits {
  /** Largest body accepted, all parts together. */
  maxBytes: number;
  /** Most files accepted in one body. */
  maxFiles: number;
  /** Longest time the whole body may take to arrive (slow clients hold a socket and memory). */
  timeoutMs?: number;
}

/** A request body as a Node stream plus the headers that describe it. */
export interface BodySource {
  contentType: string;
  /** The Content-Length header, when the client sent one. */
  contentLength: number | undefined;
  stream: Readable | null;
}

function tooSlow(ms: number): CifarError {
  return new CifarError('REQUEST_TIMEOUT', `the request body did not arrive within ${ms} ms`);
}

/** Fail with REQUEST_TIMEOUT after `ms`; returns the function that cancels the timer. */
function bodyTimer(ms: number | undefined, onTimeout: () => void): () => void {
  if (!ms) return () => {};
  const timer = setTimeout(onTimeout, ms);
  return () => clearTimeout(timer);
}

function tooLarge(maxBytes: number): CifarError {
  return new CifarError('PAYLOAD_TOO_LARGE', `the request body is larger than ${maxBytes} bytes`, { hint: 'send a smaller image' });
}

/** Refuse a body whose declared length is already over the limit, before reading any of it. */
export function checkDeclaredLength(source: BodySource, limits: BodyLimits): void {
  if (source.contentLength !== undefined && source.contentLength > limits.maxBytes) throw tooLarge(limits.maxBytes);
}

/**
 * Stream a multipart/form-data body through busboy, keeping the files of `fields` and skipping
 * anything else unread. Limits are enforced while reading: the first byte over `maxBytes` or the
 * first file over `maxFiles` stops the upload, so an oversize body never sits in memory whole.
 *
 * @example
 *   const files = await readMultipart(source, ['file'], { maxBytes: 10 << 20, maxFiles: 1 });
 */
export function readMultipart(source: BodySource, fields: readonly string[], limits: BodyLimits): Promise<Upload[]> {
  checkDeclaredLength(source, limits);
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: { 'content-type': source.contentType },
      limits: { fileSize: limits.maxBytes, files: limits.maxFiles, fields: 32, fieldSize: 4096, parts: limits.maxFiles + 32 },
    });
  } catch (err) {
    // busboy throws at once on a multipart type without a boundary.
    throw new CifarError('BAD_REQUEST', `malformed multipart body (${(err as Error).message})`, { cause: err });
  }
  const stream = source.stream;
  if (!stream) return Promise.resolve([]);

  return new Promise<Upload[]>((resolve, reject) => {
    const uploads: Upload[] = [];
    const reading: Promise<void>[] = [];
    let total = 0;
    let failed = false;
    const cancelTimer = bodyTimer(limits.timeoutMs, () => fail(tooSlow(limits.timeoutMs!)));
    const fail = (err: CifarError) => {
      if (failed) return;
      failed = true;
      cancelTimer();
      // Stop pulling the rest of the body; the server answers and closes the connection.
      stream.pause();
      parser.removeAllListeners('file');
      reject(err);
    };

    // Fed by hand rather than piped: one listener counts and forwards, where pipe() adds half a
    // dozen per request. Backpressure is not needed: the body is bounded by maxBytes and kept whole.
    stream.on('data', (chunk: Buffer) => {
      if (failed) return;
      total += chunk.length;
      if (total > limits.maxBytes) return fail(tooLarge(limits.maxBytes));
      parser.write(chunk);
    });
    stream.on('end', () => failed || parser.end());
    stream.on('error', (err) => fail(new CifarError('BAD_REQUEST', `the upload broke off (${err.message})`, { cause: err })));

    parser.on('file', (field, file, info) => {
      if (!fields.includes(field)) {
        file.resume();
        return;
      }
      const chunks: Buffer[] = [];
      const slot = reading.length;
      reading.push(
        new Promise<void>((done) => {
          file.on('data', (c: Buffer) => chunks.push(c));
          file.on('limit', () => fail(tooLarge(limits.maxBytes)));
          file.on('close', () => {
            uploads[slot] = { field, filename: info.filename ?? '', mimeType: info.mimeType, data: Buffer.concat(chunks) };
            done();
          });
        }),
      );
    });
    parser.on('filesLimit', () =>
      fail(new CifarError('TOO_MANY_FILES', `more than ${limits.maxFiles} files in one request`, { hint: 'split the batch' })),
    );
    parser.on('partsLimit', () => fail(new CifarError('TOO_MANY_FILES', 'too many parts in one request')));
    parser.on('fieldsLimit', () => fail(new CifarError('TOO_MANY_FILES', 'too many form fields in one request')));
    parser.on('error', (err: Error) => fail(new CifarError('BAD_REQUEST', `malformed multipart body (${err.message})`, { cause: err })));
    parser.on('close', () => {
      void Promise.all(reading).then(() => {
        cancelTimer();
        if (failed) return;
        // Indexed by arrival, so the answers keep the client's order.
        resolve(uploads);
      });
    });
  });
}

/** Read a raw (non-multipart) body with the same byte limit, refusing it as soon as it is over. */
export function readRaw(source: BodySource, limits: BodyLimits): Promise<Buffer> {
  checkDeclaredLength(source, limits);
  const stream = source.stream;
  if (!stream) return Promise.resolve(Buffer.alloc(0));
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const stop = (err: CifarError) => {
      cancelTimer();
      stream.pause();
      stream.removeAllListeners('data');
      reject(err);
    };
    const cancelTimer = bodyTimer(limits.timeoutMs, () => stop(tooSlow(limits.timeoutMs!)));
    stream.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total > limits.maxBytes) return stop(tooLarge(limits.maxBytes));
      chunks.push(chunk);
    });
    stream.on('end', () => {
      cancelTimer();
      resolve(Buffer.concat(chunks));
    });
    stream.on('error', (err) => stop(new CifarError('BAD_REQUEST', `the upload broke off (${err.message})`, { cause: err })));
  });
}

/** A web ReadableStream body (from `app.request()` or any fetch Request) as a Node stream. */
export function nodeStream(body: ReadableStream<Uint8Array> | null): Readable | null {
  return body ? Readable.fromWeb(body as import('node:stream/web').ReadableStream<Uint8Array>) : null;
}
