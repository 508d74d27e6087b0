/**
 * A real `cifar serve` process on a free loopback port, for tests that need the CLI, node:cluster
 * or a backend the in-process app does not use, and a model saved like a trained one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { CLASSES } from '../../src/data/classes.js';
import { saveModel } from '../../src/model/store.js';
import { eventually, freePort } from '../serve/helpers.js';
import { CIFAR_BIN } from './cli.js';

export interface ServeProcess {
  url: string;
  port: number;
  child: ChildProcess;
  /** Everything the server wrote on stderr so far (its JSON log lines). */
  log(): string;
  /** SIGTERM, then SIGKILL if it has not exited in `ms`. */
  stop(ms?: number): Promise<void>;
}

/** SIGTERM, then SIGKILL if the process has not exited in `ms`. */
export async function stopProcess(child: ChildProcess, ms = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts `cifar serve --host 127.0.0.1 --port P ...args` and resolves once /ready answers 200
 * (every worker loaded and warm). No API key or REDIS_URL from the environment leaks in.
 */
export async function startServe(args: string[], options: { env?: NodeJS.ProcessEnv; readyMs?: number } = {}): Promise<ServeProcess> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [CIFAR_BIN, 'serve', '--host', '127.0.0.1', '--port', String(port), ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, FORCE_COLOR: '0', CIFAR_API_KEY: '', REDIS_URL: '', ...options.env },
  });
  let log = '';
  child.stderr!.on('data', (d) => (log += d));
  const stop = (ms?: number): Promise<void> => stopProcess(child, ms);
  try {
    await eventually(async () => {
      if (child.exitCode !== null) throw new Error('exited');
      return (await fetch(`${url}/ready`).catch(() => null))?.status === 200;
    }, options.readyMs ?? 30_000);
  } catch {
    await stop(1000);
    throw new Error(`cifar serve did not become ready:\n${log}`);
  }
  return { url, port, child, log: () => log, stop };
}

/** Saves a one-layer dense model (flatten + 10 units) with full metadata, as `cifar train` would. */
export async function saveTinyModel(out: string, kernelInitializer: ReturnType<typeof tf.initializers.zeros> | 'zeros' = 'zeros'): Promise<void> {
  await tf.setBackend('cpu');
  const model = tf.sequential({ layers: [tf.layers.flatten({ inputShape: [32, 32, 3] }), tf.layers.dense({ units: 10, kernelInitializer })] });
  await mkdir(out, { recursive: true });
  await saveModel(out, model, {
    name: 'tiny', architecture: 'dense', parameters: 30730, classes: [...CLASSES],
    normalization: { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] }, testAccuracy: null, perClassAccuracy: null,
    epochs: 0, batchSize: 0, trainingSeconds: 0, backend: 'cpu', datasetChecksum: null, createdAt: new Date().toISOString(), packageVersion: 'test',
  });
  model.dispose();
}
