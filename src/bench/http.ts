import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { CifarError } from '../errors.js';
import type { BenchEndpoint } from './config.js';

/** Why a request failed: no connection, no answer in time, an error status, or an answer that is not the API's. */
export type ErrorKind = 'connect' | 'timeout' | 'status' | 'invalid';

/** What one request came to. */
export type Outcome =
  | { ok: true; images: number; cachedImages: number | null; modelVersion: string | null }
  | { ok: false; kind: ErrorKind; status?: number; code?: string; message: string };

/** Sends prediction requests over a keep-alive pool of `connections` sockets. */
export interface BenchClient {
  send(body: Buffer): Promise<Outcome>;
  /** The multipart body of one request carrying `images`. */
  body(images: Buffer[]): Buffer;
  close(): Promise<void>;
}

export interface ClientOptions {
  connections: number;
  timeoutMs: number;
  endpoint: BenchEndpoint;
  apiKey?: string;
}

const BOUNDARY = `----cifar-bench-${randomBytes(8).toString('hex')}`;
/** The Content-Type that goes with `multipartBody`. */
export const MULTIPART_TYPE = `multipart/form-data; boundary=${BOUNDARY}`;

/**
 * A multipart/form-data body with each image as a part named `field` (`file` for /predict,
 * `files` for /predict/batch), built once per request so sending it is one write.
 */
export function multipartBody(field: string, images: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  images.forEach((data, i) => {
    parts.push(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${field}"; filename="image-${i}.png"\r\nContent-Type: image/png\r\n\r\n`, 'latin1'));
    parts.push(data, Buffer.from('\r\n'));
  });
  parts.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(parts);
}

/** Split a base URL into the pool's origin and a path prefix (a server mounted under /api). */
export function splitUrl(url: string): { origin: string; prefix: string } {
  const u = new URL(url);
  return { origin: u.origin, prefix: u.pathname.replace(/\/+$/, '') };
}

const TIMEOUT_CODES = new Set(['BENCH_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

function errorCode(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown }; errors?: { code?: unknown }[] };
  return String(e?.code ?? e?.cause?.code ?? e?.errors?.[0]?.code ?? 'UNKNOWN');
}

function failure(err: Error, timeoutMs: number): Outcome {
  const code = errorCode(err);
  if (TIMEOUT_CODES.has(code)) return { ok: false, kind: 'timeout', message: `no answer within ${timeoutMs} ms` };
  return { ok: false, kind: 'connect', code, message: `${code}: ${err.message}` };
}

/**
 * One request's handler in undici's callback form (onConnect … onComplete). That form is marked
 * deprecated in undici 7 but is what its HTTP/1 client runs natively: the newer form is wrapped
 * around it and parses every header. Measured against a fixed-answer server (64 connections),
 * `pool.request()` cost about 20 µs of client CPU per request, the newer handler 16, this one 15;
 * autocannon 13. It matters because the client shares the CPU with the server it measures.
 */
class Exchange {
  status = 0;
  rawHeaders: Buffer[] = [];
  chunks: Buffer[] = [];
  timer: NodeJS.Timeout | undefined;
  done = false;
  constructor(
    readonly endpoint: BenchEndpoint,
    readonly timeoutMs: number,
    readonly resolve: (outcome: Outcome) => void,
  ) {}
  onConnect(abort: (err?: Error) => void): void {
    // One timer for the whole exchange: undici's own header/body timers tick in ~1 s steps.
    this.timer ??= setTimeout(() => abort(Object.assign(new Error(`no answer within ${this.timeoutMs} ms`), { code: 'BENCH_TIMEOUT' })), this.timeoutMs);
  }
  onHeaders(status: number, rawHeaders: Buffer[]): boolean {
    this.status = status;
    this.rawHeaders = rawHeaders;
    return true;
  }
  onData(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    return true;
  }
  onComplete(): void {
    const text = (this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks)).toString('utf8');
    this.finish(parseAnswer(this.status, () => headerValue(this.rawHeaders, 'content-type'), text, this.endpoint));
  }
  onError(err: Error): void {
    this.finish(failure(err, this.timeoutMs));
  }
  finish(outcome: Outcome): void {
    clearTimeout(this.timer);
    if (!this.done) this.resolve(outcome);
    this.done = true;
  }
}

/** A header from undici's raw [name, value, …] list (only looked up to explain a bad answer). */
function headerValue(raw: Buffer[], name: string): string {
  for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i]!.toString('latin1').toLowerCase() === name) return raw[i + 1]!.toString('latin1');
  return '';
}

/** Create the load-generating client for `baseUrl`. */
export function createClient(baseUrl: string, options: ClientOptions): BenchClient {
  const { origin, prefix } = splitUrl(baseUrl);
  const { endpoint, timeoutMs } = options;
  const path = `${prefix}${endpoint === 'batch' ? '/predict/batch' : '/predict'}`;
  const field = endpoint === 'batch' ? 'files' : 'file';
  const headers: Record<string, string> = { 'content-type': MULTIPART_TYPE, ...(options.apiKey ? { 'x-api-key': options.apiKey } : {}) };
  // Each Exchange times itself; undici's timers are off so they cannot fire first.
  const pool = new Pool(origin, { connections: options.connections, pipelining: 1, headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 60_000, connect: { timeout: timeoutMs } });
  return {
    body: (images) => multipartBody(field, images),
    send: (body) => new Promise<Outcome>((resolve) => pool.dispatch({ origin, path, method: 'POST', headers, body }, new Exchange(endpoint, timeoutMs, resolve))),
    close: () => pool.destroy(),
  };
}

function parseAnswer(status: number, type: () => string, text: string, endpoint: BenchEndpoint): Outcome {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    const message = `${status} answer is not JSON (${type() || 'no content type'})`;
    return status >= 400 ? { ok: false, kind: 'status', status, message } : { ok: false, kind: 'invalid', status, message };
  }
  const o = (json ?? {}) as Record<string, unknown>;
  if (status >= 400 || status < 200) {
    const e = (o.error ?? {}) as { code?: unknown; message?: unknown };
    return { ok: false, kind: 'status', status, ...(typeof e.code === 'string' ? { code: e.code } : {}), message: `${status} ${typeof e.message === 'string' ? e.message : ''}`.trim() };
  }
  const modelVersion = typeof o.model_version === 'string' ? o.model_version : null;
  if (endpoint === 'predict') {
    if (typeof o.prediction !== 'number') return { ok: false, kind: 'invalid', status, message: `${status} answer has no numeric \`prediction\`` };
    return { ok: true, images: 1, cachedImages: typeof o.cached === 'boolean' ? Number(o.cached) : null, modelVersion };
  }
  if (!Array.isArray(o.predictions)) return { ok: false, kind: 'invalid', status, message: `${status} answer has no \`predictions\` array` };
  return { ok: true, images: o.predictions.length, cachedImages: batchCached(o, o.predictions.length), modelVersion };
}

/** Cached items of a batch answer: a `cached` array or boolean, or `items[].cached`; null when it does not say. */
function batchCached(o: Record<string, unknown>, n: number): number | null {
  const flags = Array.isArray(o.cached) ? o.cached : Array.isArray(o.items) ? o.items.map((it) => (it as { cached?: unknown })?.cached) : undefined;
  if (flags && flags.length === n && flags.every((f) => typeof f === 'boolean')) return flags.filter(Boolean).length;
  if (typeof o.cached === 'boolean') return o.cached ? n : 0;
  return null;
}

/** What the server says about itself before the run. */
export interface ServerInfo {
  modelVersion: string | null;
}

interface ProbeAnswer {
  status: number;
  json: unknown;
  type: string;
}

async function get(pool: Pool, path: string, timeoutMs: number, apiKey?: string): Promise<ProbeAnswer> {
  const res = await pool.request({ path, method: 'GET', headersTimeout: timeoutMs, bodyTimeout: timeoutMs, headers: apiKey ? { 'x-api-key': apiKey } : {} });
  const text = await res.body.text();
  const type = String(res.headers['content-type'] ?? '');
  try {
    return { status: res.statusCode, json: JSON.parse(text), type };
  } catch {
    return { status: res.statusCode, json: undefined, type };
  }
}

const PROBE_TIMEOUT_MS = 5_000;

export interface ProbeOptions {
  readyTimeoutMs: number;
  /** Keep retrying a refused connection until the deadline (a server still starting up). */
  starting?: boolean;
  signal?: AbortSignal;
  apiKey?: string;
  /** Called once if the server is not ready at the first try. */
  onWaiting?: () => void;
}

/**
 * Check that `baseUrl` is a cifar server before loading it: reachable (SERVER_UNREACHABLE),
 * answering JSON (SERVER_INVALID_RESPONSE), then wait until `/ready` says yes (NOT_READY after
 * `readyTimeoutMs`). A server without /ready (404) counts as ready.
 */
export async function probeServer(baseUrl: string, options: ProbeOptions): Promise<ServerInfo> {
  const { prefix, origin } = splitUrl(baseUrl);
  // Its own small pool, closed at the end, so no idle probe socket outlives the check.
  const pool = new Pool(origin, { connections: 1, connect: { timeout: PROBE_TIMEOUT_MS } });
  try {
    return await probe(pool, prefix, baseUrl, options);
  } finally {
    await pool.destroy();
  }
}

async function probe(pool: Pool, prefix: string, baseUrl: string, options: ProbeOptions): Promise<ServerInfo> {
  const at = (p: string) => `${prefix}${p}`;
  const deadline = Date.now() + options.readyTimeoutMs;
  let waiting = false;
  const wait = async () => {
    if (!waiting) options.onWaiting?.();
    waiting = true;
    await sleep(250, undefined, { signal: options.signal });
  };
  let health: ProbeAnswer | undefined;
  while (!health) {
    try {
      health = await get(pool, at('/health'), PROBE_TIMEOUT_MS, options.apiKey);
    } catch (err) {
      const code = errorCode(err);
      if (options.starting && code === 'ECONNREFUSED' && Date.now() < deadline) {
        await wait();
        continue;
      }
      const why = TIMEOUT_CODES.has(code) ? `no answer within ${PROBE_TIMEOUT_MS / 1000} s` : code === 'ECONNREFUSED' ? 'nothing is listening' : code;
      throw new CifarError('SERVER_UNREACHABLE', `cannot reach ${baseUrl} (${why})`, { hint: 'start `cifar serve` there, or add --spawn to start one for this run', cause: err });
    }
  }
  if (health.json === undefined) {
    throw new CifarError('SERVER_INVALID_RESPONSE', `${baseUrl.replace(/\/+$/, '')}/health answered ${health.status} ${health.type || 'without a content type'}, not JSON`, { hint: 'is --url a `cifar serve` server?' });
  }
  for (;;) {
    const ready = await get(pool, at('/ready'), PROBE_TIMEOUT_MS, options.apiKey).catch(() => undefined);
    if (ready && (ready.status < 300 || ready.status === 404)) break;
    if (Date.now() > deadline) throw new CifarError('NOT_READY', `${baseUrl} is still not ready after ${Math.round(options.readyTimeoutMs / 1000)} s (/ready: ${ready?.status ?? 'no answer'})`);
    await wait();
  }
  // A loading server reports no version yet, so ask again once it is ready.
  const first = health;
  const after = await get(pool, at('/health'), PROBE_TIMEOUT_MS, options.apiKey).catch(() => first);
  const version = (after.json as { model_version?: unknown } | undefined)?.model_version;
  return { modelVersion: typeof version === 'string' ? version : null };
}
