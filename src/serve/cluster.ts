import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { CifarError } from '../errors.js';
import { serveClusterCache, type PrimaryCacheOptions } from './cache/cluster.js';

// IPC messages between the primary and its workers.
const METRICS_REQ = 'cifar:metrics-req';
const METRICS_RES = 'cifar:metrics-res';
const RELOAD = 'cifar:reload';
const RELOAD_OTHERS = 'cifar:reload-others';
const WORKER_READY = 'cifar:worker-ready';
const CLUSTER_READY = 'cifar:cluster-ready';

interface Message {
  type?: string;
  id?: number;
  text?: string;
  error?: string;
  ready?: boolean;
}

export interface PrimaryOptions {
  workers: number;
  /** How long a worker may drain before it is killed. */
  drainMs: number;
  /** The cross-worker cache the primary keeps for its workers. */
  cache: PrimaryCacheOptions;
  /** Resolves when the primary should shut the workers down. */
  stop: Promise<void>;
  /** SIGHUP on the primary: tell every worker to reload. */
  onReloadSignal?: (reloadAll: () => void) => void;
  onEvent?: (event: string, detail: Record<string, unknown>) => void;
}

// More crashes than this within CRASH_WINDOW_MS means a worker cannot start (bad model folder,
// port taken): give up instead of forking for ever.
const MAX_CRASHES = 5;
const CRASH_WINDOW_MS = 30_000;

/**
 * Run the cluster primary: fork `workers` copies of this same command (they see
 * `cluster.isWorker` and serve), replace any that crash, answer their requests for
 * cluster-wide metrics, coordinate their cache (shared LRU, one computation per image), relay
 * reloads, and on `stop` SIGTERM them all and wait (bounded).
 * Resolves once every worker has exited. The primary never loads a model.
 */
export async function runPrimary(options: PrimaryOptions): Promise<void> {
  // Workers re-run the same CLI with the same flags.
  cluster.setupPrimary({ exec: process.argv[1], args: process.argv.slice(2) });
  const aggregator = new AggregatorRegistry();
  let stopping = false;
  const crashes: number[] = [];
  let giveUp: ((err: Error) => void) | undefined;
  const failed = new Promise<never>((_, reject) => (giveUp = reject));
  failed.catch(() => undefined);

  // Workers whose model is warm: /ready says yes only when all of them are, since the cluster
  // hands connections to every worker, loading or not.
  const ready = new Set<Worker>();
  const tellReadiness = () => {
    const all = ready.size >= options.workers;
    for (const w of Object.values(cluster.workers ?? {})) if (w?.isConnected()) w.send({ type: CLUSTER_READY, ready: all });
  };

  const reloadAll = (except?: Worker) => {
    for (const w of Object.values(cluster.workers ?? {})) if (w && w !== except && w.isConnected()) w.send({ type: RELOAD });
  };

  const onMessage = (worker: Worker, msg: Message) => {
    if (msg?.type === METRICS_REQ) {
      aggregator.clusterMetrics().then(
        (text) => worker.isConnected() && worker.send({ type: METRICS_RES, id: msg.id, text }),
        (err: Error) => worker.isConnected() && worker.send({ type: METRICS_RES, id: msg.id, error: err.message }),
      );
    } else if (msg?.type === RELOAD_OTHERS) {
      reloadAll(worker);
    } else if (msg?.type === WORKER_READY) {
      ready.add(worker);
      tellReadiness();
    }
  };
  const onExit = (worker: Worker, code: number | null, signal: string | null) => {
    options.onEvent?.('worker exit', { worker_pid: worker.process.pid, code, signal });
    if (ready.delete(worker) && !stopping) tellReadiness();
    if (stopping) return;
    const now = Date.now();
    crashes.push(now);
    while (crashes.length > 0 && crashes[0]! < now - CRASH_WINDOW_MS) crashes.shift();
    if (crashes.length > MAX_CRASHES) {
      giveUp?.(new CifarError('WORKER_CRASHED', `workers exited ${crashes.length} times in ${CRASH_WINDOW_MS / 1000} s`, { hint: 'run with --workers 1 to see why' }));
      return;
    }
    cluster.fork();
  };
  cluster.on('message', onMessage);
  cluster.on('exit', onExit);
  const cache = serveClusterCache(options.cache);
  options.onReloadSignal?.(() => reloadAll());
  for (let i = 0; i < options.workers; i++) cluster.fork();

  let error: unknown;
  try {
    await Promise.race([options.stop, failed]);
  } catch (err) {
    error = err;
  }
  stopping = true;
  await stopWorkers(options.drainMs);
  cluster.off('message', onMessage);
  cluster.off('exit', onExit);
  cache.dispose();
  if (error) throw error;
}

async function stopWorkers(drainMs: number): Promise<void> {
  const alive = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && !w.isDead());
  await Promise.all(
    alive.map(
      (w) =>
        new Promise<void>((resolve) => {
          // Workers drain on SIGTERM; a worker still alive past the drain time is stuck.
          const timer = setTimeout(() => w.process.kill('SIGKILL'), drainMs + 5_000);
          w.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          w.process.kill('SIGTERM');
        }),
    ),
  );
}

/** Worker side: expose `registry` to the primary's aggregation. */
export function shareWorkerMetrics(registry: Registry): void {
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one in a worker installs prom-client's IPC listener that answers the primary.
  new AggregatorRegistry();
}

let nextId = 0;

/** Worker side: the metrics of every worker, summed by the primary. */
export function clusterMetricsText(): Promise<string> {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const onMessage = (msg: Message) => {
      if (msg?.type !== METRICS_RES || msg.id !== id) return;
      process.off('message', onMessage);
      clearTimeout(timer);
      if (msg.error !== undefined) reject(new Error(msg.error));
      else resolve(msg.text ?? '');
    };
    const timer = setTimeout(() => {
      process.off('message', onMessage);
      reject(new Error('the cluster primary did not answer with metrics'));
    }, 6_000);
    process.on('message', onMessage);
    process.send?.({ type: METRICS_REQ, id });
  });
}

/**
 * Worker side: whether every worker of the cluster has a warm model. Call `announce` once this
 * worker's is; `all()` turns true when the primary has heard it from every worker.
 */
export function clusterReadiness(): { announce: () => void; all: () => boolean; dispose: () => void } {
  let all = false;
  const onMessage = (msg: Message) => {
    if (msg?.type === CLUSTER_READY) all = msg.ready === true;
  };
  process.on('message', onMessage);
  return { announce: () => process.send?.({ type: WORKER_READY }), all: () => all, dispose: () => process.off('message', onMessage) };
}

/** Worker side: call `reload` when the primary relays a reload, and ask it to relay ours. */
export function onClusterReload(reload: () => void): { reloadOthers: () => void; dispose: () => void } {
  const onMessage = (msg: Message) => {
    if (msg?.type === RELOAD) reload();
  };
  process.on('message', onMessage);
  return { reloadOthers: () => process.send?.({ type: RELOAD_OTHERS }), dispose: () => process.off('message', onMessage) };
}
