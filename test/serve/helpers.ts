import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { deflateSync } from 'node:zlib';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { pino } from 'pino';
import { CLASSES } from '../../src/data/classes.js';
import { predictorFromModel, type Predictor } from '../../src/model/predictor.js';
import { createApp, type AppOptions, type CifarApp } from '../../src/serve/app.js';
import { PNG_SIGNATURE, pngChunk } from '../../src/image/png.js';

/** A real (tiny) tfjs model: flatten + dense(10) on the cpu backend, seeded per version; `tta`: with flip TTA (serve --tta). */
export async function tinyPredictor(version = 'v1', seed = 1, tta = false): Promise<Predictor & { calls: number[] }> {
  await tf.setBackend('cpu');
  const model = tf.sequential({
    layers: [tf.layers.flatten({ inputShape: [32, 32, 3] }), tf.layers.dense({ units: 10, kernelInitializer: tf.initializers.randomNormal({ seed, stddev: 0.05 }) })],
  });
  const inner = predictorFromModel(model, { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] }, { name: 'tiny', version, classes: CLASSES, backend: 'cpu', ...(tta ? { tta } : {}) });
  // Records each forward pass's batch size, so tests can see batching and single-flight.
  const calls: number[] = [];
  return {
    info: inner.info,
    calls,
    predict(pixels, count) {
      calls.push(count);
      return inner.predict(pixels, count);
    },
    dispose: () => inner.dispose(),
  };
}

/** A ready app around a tiny model, with quiet logs and no process metrics. */
export async function readyApp(options: Partial<AppOptions> = {}): Promise<CifarApp & { predictor: Predictor & { calls: number[] } }> {
  const predictor = await tinyPredictor();
  const served = createApp({ predictor, defaultMetrics: false, logger: pino({ level: 'silent' }), ...options, config: { batchWaitMs: 1, ...options.config } });
  await served.ready;
  return Object.assign(served, { predictor });
}

/** A 32 × 32 PNG darker on the left than on the right, or its mirror image. */
export function lopsidedPng(mirrored = false): Promise<Buffer> {
  const raw = Buffer.alloc(32 * 32 * 3);
  for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) for (let c = 0; c < 3; c++) raw[(y * 32 + x) * 3 + c] = ((mirrored ? 31 - x : x) * 8 + y * c * 2) % 256;
  return sharp(raw, { raw: { width: 32, height: 32, channels: 3 } }).png().toBuffer();
}

/** A PNG whose pixels depend on `n`, so different n give different bytes and cache keys. */
export function png(n: number, size = 32): Promise<Buffer> {
  return sharp({ create: { width: size, height: size, channels: 3, background: { r: n % 256, g: (n * 7) % 256, b: (n * 13) % 256 } } })
    .png()
    .toBuffer();
}

/** A multipart form with each buffer as a file under `field`. */
export function form(field: string, ...files: Buffer[]): FormData {
  const f = new FormData();
  files.forEach((b, i) => f.append(field, new Blob([new Uint8Array(b)], { type: 'image/png' }), `img${i}.png`));
  return f;
}

/**
 * A ~100-byte PNG that claims to be width × height: a decompression bomb's header, without
 * building the gigabytes (decoders must refuse it from the header alone).
 */
export function bombPng(width = 20000, height = 20000): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([Buffer.from(PNG_SIGNATURE), pngChunk('IHDR', ihdr), pngChunk('IDAT', deflateSync(Buffer.alloc(1024))), pngChunk('IEND', Buffer.alloc(0))]);
}

/** A free loopback port (bind port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** A Redis the test can take away and give back. */
export interface TestRedis {
  url: string;
  /** Make Redis unreachable: clients see their connections drop and new ones refused. */
  outage(): Promise<void>;
  recover(): Promise<void>;
  close(): Promise<void>;
}

/**
 * REDIS_URL when set (CI), else a private `redis-server` on a free loopback port. Either way the
 * app talks to it through a loopback TCP proxy, so an outage can be staged on a shared Redis too.
 */
export async function startRedis(): Promise<TestRedis> {
  let own: PrivateRedis | undefined;
  let target: URL;
  if (process.env.REDIS_URL) {
    target = new URL(process.env.REDIS_URL);
  } else {
    own = await privateRedis();
    target = new URL(own.url);
  }
  const sockets = new Set<Socket>();
  let up = true;
  const proxy: Server = createServer((client) => {
    if (!up) return client.destroy();
    const upstream = connect(Number(target.port || 6379), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const proxyPort = (proxy.address() as { port: number }).port;
  const auth = target.username || target.password ? `${target.username}:${target.password}@` : '';
  return {
    url: `redis://${auth}127.0.0.1:${proxyPort}${target.pathname}`,
    async outage() {
      up = false;
      for (const s of sockets) s.destroy();
    },
    async recover() {
      up = true;
    },
    async close() {
      up = false;
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => proxy.close(() => r()));
      await own?.close();
    },
  };
}

/** A redis-server of the test's own, for what must not happen to a shared one (CLIENT PAUSE). */
export interface PrivateRedis {
  url: string;
  close(): Promise<void>;
}

/** Start `redis-server` on a free loopback port, without persistence. */
export async function privateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  const child: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  await waitForPort(port);
  return {
    url: `redis://127.0.0.1:${port}`,
    async close() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server did not open port ${port}`);
}

/** Poll `check` until it is true or `ms` pass. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('condition not met in time');
}
