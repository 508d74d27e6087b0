import cluster from 'node:cluster';
import { destination, pino, type Logger } from 'pino';
import type { Predictor } from '../model/predictor.js';
import { createApp } from './app.js';
import { clusterFlights } from './cache/cluster.js';
import { clusterMetricsText, clusterReadiness, onClusterReload, runPrimary, shareWorkerMetrics } from './cluster.js';
import type { ServeConfig } from './config.js';
import { listen } from './server.js';

export { createApp, type AppOptions, type CifarApp } from './app.js';
export { SERVE_DEFAULTS, type ServeConfig } from './config.js';
export { listen, type RunningServer } from './server.js';

export interface ServeHooks {
  /** Loads the model folder named in the config (called in each worker, and on every reload). */
  loadPredictor: () => Promise<Predictor>;
  /** Aborting it shuts the server down gracefully, like SIGTERM. */
  signal?: AbortSignal;
  /** Once the port is open (and, with workers, once every worker listens). */
  onListening?: (info: { url: string; pid: number; workers: number }) => void;
  /** Where log lines go; default: JSON lines on stderr at `config.logLevel`. */
  logger?: Logger;
  /** Handle SIGTERM, SIGINT and SIGHUP (default true; tests turn it off). */
  handleSignals?: boolean;
}

/** Resolves on SIGTERM, SIGINT or an abort of `signal`; SIGHUP calls `onHup`. */
function lifecycle(hooks: ServeHooks, onHup: () => void): { stopped: Promise<void>; dispose: () => void } {
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const handle = hooks.handleSignals ?? true;
  if (handle) {
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', onHup);
  }
  if (hooks.signal?.aborted) stop();
  hooks.signal?.addEventListener('abort', stop, { once: true });
  return {
    stopped,
    dispose() {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      process.off('SIGHUP', onHup);
      hooks.signal?.removeEventListener('abort', stop);
    },
  };
}

/**
 * Run `cifar serve` until SIGTERM/SIGINT (or `hooks.signal`), then drain and return. With
 * `workers > 1` this process becomes the cluster primary and forks copies of the same command;
 * in those (cluster.isWorker) and with one worker, it serves in-process.
 *
 * @example
 *   await startServe(config, { loadPredictor: () => loadPredictor(config.model, config.backend) });
 */
export async function startServe(config: ServeConfig, hooks: ServeHooks): Promise<void> {
  const logger = hooks.logger ?? pino({ level: config.logLevel, base: { pid: process.pid } }, destination({ dest: 2, sync: false }));
  try {
    if (cluster.isPrimary && config.workers > 1) await servePrimary(config, hooks, logger);
    else await serveProcess(config, hooks, logger);
  } finally {
    logger.flush();
  }
}

async function servePrimary(config: ServeConfig, hooks: ServeHooks, logger: Logger): Promise<void> {
  let reloadAll = () => {};
  const life = lifecycle(hooks, () => reloadAll());
  let listening = 0;
  const onListening = () => {
    listening++;
    if (listening === config.workers) {
      const host = config.host.includes(':') ? `[${config.host}]` : config.host;
      hooks.onListening?.({ url: `http://${host}:${config.port}`, pid: process.pid, workers: config.workers });
    }
  };
  cluster.on('listening', onListening);
  try {
    await runPrimary({
      workers: config.workers,
      drainMs: config.drainMs,
      // With Redis the primary only coordinates; Redis stays the one shared store.
      cache: { maxEntries: config.redisUrl ? 0 : config.cacheSize, waitMs: config.flightWaitMs },
      stop: life.stopped,
      onReloadSignal: (fn) => (reloadAll = fn),
      onEvent: (event, detail) => logger.info(detail, event),
    });
  } finally {
    cluster.off('listening', onListening);
    life.dispose();
  }
}

async function serveProcess(config: ServeConfig, hooks: ServeHooks, logger: Logger): Promise<void> {
  const inCluster = cluster.isWorker;
  let relay: ReturnType<typeof onClusterReload> | undefined;
  // One worker has no one to share with: no IPC on its path.
  const flights = inCluster ? clusterFlights({ waitMs: config.flightWaitMs }) : undefined;
  const readiness = inCluster ? clusterReadiness() : undefined;
  const served = createApp({
    loadPredictor: hooks.loadPredictor,
    config,
    logger,
    ...(inCluster
      ? {
          sharedFlights: flights,
          peersReady: readiness!.all,
          metricsText: clusterMetricsText,
          onReloadRequest: async () => {
            const info = await served.reload();
            relay?.reloadOthers();
            return info;
          },
        }
      : {}),
  });
  if (inCluster) shareWorkerMetrics(served.metrics.registry);
  const reload = () => {
    served.reload().catch((err: unknown) => logger.error({ err: err instanceof Error ? err.message : String(err) }, 'reload failed; the old model stays'));
  };
  if (inCluster) relay = onClusterReload(reload);
  const life = lifecycle(hooks, reload);
  // The drain is one budget for the connections and the model's queue together.
  let drainEnds: number | undefined;
  try {
    // Listen before the model is loaded, so /health and /ready answer during a slow load.
    const running = await listen(served.app, { port: config.port, host: config.host, requestTimeoutMs: config.requestTimeoutMs });
    try {
      await Promise.race([served.ready, life.stopped]);
      if (served.isReady()) readiness?.announce();
      if (!inCluster) hooks.onListening?.({ url: running.url, pid: process.pid, workers: 1 });
      await life.stopped;
      logger.info({ in_flight: running.inFlight(), drain_ms: config.drainMs }, 'shutting down');
    } finally {
      drainEnds = Date.now() + config.drainMs;
      await running.close(config.drainMs);
    }
  } finally {
    life.dispose();
    relay?.dispose();
    // A forward pass that never returns must not keep the process alive past the drain.
    let timer: NodeJS.Timeout | undefined;
    const left = Math.max(0, (drainEnds ?? Date.now()) - Date.now());
    await Promise.race([served.close(), new Promise<void>((done) => (timer = setTimeout(done, left)))]);
    clearTimeout(timer);
    flights?.dispose();
    readiness?.dispose();
    // The IPC channel would keep a worker alive after its server has closed.
    if (inCluster) cluster.worker?.disconnect();
  }
}
