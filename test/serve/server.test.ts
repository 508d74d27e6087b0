import { connect } from 'node:net';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { Predictor } from '../../src/model/predictor.js';
import { SERVE_DEFAULTS, startServe, type ServeConfig } from '../../src/serve/index.js';
import { form, png, tinyPredictor } from './helpers.js';

const config = (over: Partial<ServeConfig> = {}): ServeConfig => ({ ...SERVE_DEFAULTS, port: 0, workers: 1, logLevel: 'silent', ...over });

/** startServe in this process on a free port, stopped through an AbortSignal instead of SIGTERM. */
async function start(over: Partial<ServeConfig>, load: () => Promise<Predictor>) {
  const stop = new AbortController();
  let url!: string;
  let listening!: () => void;
  const ready = new Promise<void>((resolve) => (listening = resolve));
  const running = startServe(config(over), {
    loadPredictor: load,
    signal: stop.signal,
    handleSignals: false,
    logger: pino({ level: 'silent' }),
    onListening: (info) => ((url = info.url), listening()),
  });
  await Promise.race([ready, running]);
  return { url, stop: () => (stop.abort(), running) };
}

/**
 * The tiny predictor, answering after `ms` once its two warm-up batches are done; `asked` hears
 * of each later batch (its image count) as it starts.
 */
async function delayedPredictor(ms: number, asked?: (images: number) => void): Promise<Predictor> {
  const p = await tinyPredictor();
  let warm = 0;
  return {
    ...p,
    info: p.info,
    predict: async (px, n) => {
      if (warm++ < 2) return p.predict(px, n);
      asked?.(n);
      await new Promise((r) => setTimeout(r, ms));
      return p.predict(px, n);
    },
  };
}

/** Send raw bytes on a socket and collect whatever comes back until it closes. */
function rawExchange(port: number, chunks: { data: string | Buffer; delayMs?: number }[], waitMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    socket.on('data', (d) => (got += d.toString('latin1')));
    socket.on('close', () => resolve(got));
    socket.on('error', () => resolve(got));
    setTimeout(() => (socket.destroy(), resolve(got)), waitMs);
    void (async () => {
      for (const c of chunks) {
        if (c.delayMs) await new Promise((r) => setTimeout(r, c.delayMs));
        if (!socket.destroyed) socket.write(c.data);
      }
    })();
  });
}

describe('cifar serve over the network', () => {
  it('graceful shutdown finishes in-flight requests, then stops accepting', async () => {
    // Stopped once every request has reached the model (its last batch still running), not after
    // a fixed wait: on a busy machine some had not even connected 150 ms after being sent.
    let asked = 0;
    let allAsked!: () => void;
    const reached = new Promise<void>((resolve) => (allAsked = resolve));
    const server = await start({ maxBatch: 4 }, () => delayedPredictor(400, (n) => (asked += n) >= 6 && allAsked()));
    const images = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => png(500 + n)));
    const inFlight = images.map((img) => fetch(`${server.url}/predict`, { method: 'POST', body: form('file', img) }));
    await reached;
    const stopped = server.stop();
    const answers = await Promise.all(inFlight);
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
    await stopped;
    await expect(fetch(`${server.url}/health`)).rejects.toThrow();
  });

  it('the drain is bounded: a request still running after drainMs is cut and the server stops', async () => {
    const server = await start({ drainMs: 300 }, () => delayedPredictor(4000));
    const answer = fetch(`${server.url}/predict`, { method: 'POST', body: form('file', await png(600)) }).then(
      (r) => r.status,
      () => 'cut',
    );
    await new Promise((r) => setTimeout(r, 150));
    const started = Date.now();
    await server.stop();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(await answer).toBe('cut');
  });

  it('refuses an oversize body from its Content-Length, before the body is sent', async () => {
    const server = await start({ maxUploadBytes: 1024 }, () => tinyPredictor());
    try {
      const port = Number(new URL(server.url).port);
      const reply = await rawExchange(port, [{ data: 'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 50000000\r\n\r\n' }]);
      expect(reply).toMatch(/^HTTP\/1\.1 413/);
      expect(reply).toContain('PAYLOAD_TOO_LARGE');
    } finally {
      await server.stop();
    }
  });

  it('cuts off a client that sends its body too slowly', async () => {
    const server = await start({ requestTimeoutMs: 600 }, () => tinyPredictor());
    try {
      const port = Number(new URL(server.url).port);
      const started = Date.now();
      const trickle = Array.from({ length: 20 }, () => ({ data: 'x', delayMs: 200 }));
      const reply = await rawExchange(port, [{ data: 'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n' }, ...trickle], 5000);
      expect(Date.now() - started).toBeLessThan(3000);
      // Node answers 408 when the request timeout fires, unless the response already started.
      expect(reply === '' || /^HTTP\/1\.1 (408|400)/.test(reply)).toBe(true);
    } finally {
      await server.stop();
    }
  });

  it('fails to start with a clear error when the model cannot load', async () => {
    await expect(
      startServe(config(), { loadPredictor: () => Promise.reject(new Error('no model here')), handleSignals: false, logger: pino({ level: 'silent' }) }),
    ).rejects.toThrow('no model here');
  });
});
