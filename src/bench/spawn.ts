import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { CifarError } from '../errors.js';

/** The package's own launcher: the `cifar serve` of this very version, wherever bench is run from. */
export const CIFAR_BIN = fileURLToPath(new URL('../../bin/cifar', import.meta.url));

export interface SpawnOptions {
  /** Passed through to `cifar serve`. */
  model?: string;
  workers?: number;
  redisUrl?: string;
  /** The program and its first arguments (tests use a fake server); default node + bin/cifar. */
  command?: string[];
  signal?: AbortSignal;
}

/** A server started for one run. */
export interface SpawnedServer {
  url: string;
  /** Exits before `stop()` reject this, with the server's last stderr lines. */
  exited: Promise<never>;
  /** SIGTERM, wait for the exit (SIGKILL after a grace period). */
  stop(): Promise<void>;
}

const STOP_GRACE_MS = 10_000;

/** A port free right now on the loopback interface. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/**
 * Start `cifar serve --port P --host 127.0.0.1` on a free port. The caller waits for /ready
 * (racing `exited`, so a server that dies while loading is reported at once) and calls `stop()`.
 *
 * @example
 *   const server = await spawnServer({ model: 'models/default' });
 *   try { await Promise.race([probeServer(server.url, …), server.exited]); … } finally { await server.stop(); }
 */
export async function spawnServer(options: SpawnOptions = {}): Promise<SpawnedServer> {
  const port = await freePort();
  const [program, ...first] = options.command ?? [process.execPath, CIFAR_BIN];
  const args = [...first, 'serve', '--port', String(port), '--host', '127.0.0.1', '--log-level', 'warn'];
  if (options.model !== undefined) args.push('--model', options.model);
  if (options.workers !== undefined) args.push('--workers', String(options.workers));
  if (options.redisUrl !== undefined) args.push('--redis-url', options.redisUrl);
  // stdout is dropped (request logs); stderr is kept short, to explain an early exit.
  const child = spawn(program!, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  let stopping = false;
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code, sig) => resolve(code ?? (sig ? 128 : null))));
  const exited = (async (): Promise<never> => {
    const spawnError = once(child, 'error').then(([err]) => {
      throw new CifarError('SERVER_UNREACHABLE', `could not start \`cifar serve\`: ${(err as Error).message}`);
    });
    const code = await Promise.race([exit, spawnError]);
    if (stopping) return new Promise<never>(() => {});
    const last = stderr.trim().split('\n').slice(-1)[0] ?? '';
    throw new CifarError('SERVER_UNREACHABLE', `the spawned \`cifar serve\` exited with status ${code} before the run ended${last ? `: ${last}` : ''}`);
  })();
  exited.catch(() => {}); // observed by whoever races it; never an unhandled rejection
  const onAbort = () => child.kill('SIGTERM');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  return {
    url: `http://127.0.0.1:${port}`,
    exited,
    async stop() {
      stopping = true;
      options.signal?.removeEventListener('abort', onAbort);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killed = await Promise.race([exit.then(() => true), sleep(STOP_GRACE_MS, false, { ref: false })]);
      if (!killed) {
        child.kill('SIGKILL');
        await exit;
      }
    },
  };
}
