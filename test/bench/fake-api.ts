import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface FakeApiOptions {
  /** Milliseconds to wait before answering request n (0-based, in arrival order). */
  latencyMs?: (n: number) => number;
  /** An HTTP status to fail request n with (JSON error body), or undefined to answer normally. */
  failWith?: (n: number) => number | undefined;
  /** Destroy the connection instead of answering request n. */
  dropConnection?: (n: number) => boolean;
  /** When request number `at` arrives, hold every answer until `ms` later (a GC pause, a stuck worker). */
  stall?: { at: number; ms: number };
  /** Answer /health with HTML instead of JSON. */
  htmlHealth?: boolean;
  /** /ready answers 503 until this many ms after start. */
  readyAfterMs?: number;
  /** Say which answers were cached (true by default); like the real server, by body bytes. */
  reportCached?: boolean;
}

export interface FakeApi {
  url: string;
  /** Prediction requests received. */
  received: () => number;
  close: () => Promise<void>;
}

const MODEL_VERSION = 'fake-1234';

/**
 * A loopback stand-in for `cifar serve` with a known, injected latency distribution and error
 * pattern, so the benchmark's numbers can be checked against what the server really did.
 */
export async function startFakeApi(options: FakeApiOptions = {}): Promise<FakeApi> {
  const seen = new Set<string>();
  const startedAt = Date.now();
  let n = 0;
  let stalledUntil = 0;
  const sockets = new Set<Socket>();
  const json = (res: ServerResponse, status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/health') {
        if (options.htmlHealth) return void res.writeHead(200, { 'content-type': 'text/html' }).end('<html>hello</html>');
        return json(res, 200, { status: 'healthy', model_version: MODEL_VERSION });
      }
      if (req.method === 'GET' && req.url === '/ready') {
        const ready = Date.now() - startedAt >= (options.readyAfterMs ?? 0);
        return ready ? json(res, 200, { ready: true }) : json(res, 503, { error: { code: 'NOT_READY', message: 'loading' } });
      }
      if (req.method !== 'POST' || (req.url !== '/predict' && req.url !== '/predict/batch')) return json(res, 404, { error: { code: 'NOT_FOUND', message: 'no' } });
      const i = n++;
      if (options.stall && i === options.stall.at) stalledUntil = Date.now() + options.stall.ms;
      if (options.dropConnection?.(i)) return void req.socket.destroy();
      const body = Buffer.concat(chunks);
      const key = createHash('sha256').update(body).digest('hex');
      const cached = seen.has(key);
      seen.add(key);
      const images = Math.max(1, body.toString('latin1').split('Content-Disposition').length - 1);
      const delay = Math.max(options.latencyMs?.(i) ?? 0, stalledUntil - Date.now());
      const answer = () => {
        const status = options.failWith?.(i);
        if (status !== undefined) return json(res, status, { error: { code: status === 503 ? 'OVERLOADED' : 'INTERNAL', message: `injected ${status}` } });
        const c = options.reportCached === false ? {} : req.url === '/predict' ? { cached } : { cached: Array(images).fill(cached) };
        if (req.url === '/predict') return json(res, 200, { prediction: 1, class_name: 'automobile', confidence: 0.75, probabilities: Array(10).fill(0.1), model_version: MODEL_VERSION, ...c });
        return json(res, 200, { predictions: Array(images).fill(1), class_names: Array(images).fill('automobile'), confidences: Array(images).fill(0.75), batch_size: images, model_version: MODEL_VERSION, ...c });
      };
      if (delay > 0) setTimeout(answer, delay);
      else answer();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received: () => n,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export { MODEL_VERSION };
