/** Where cached probabilities live: a process-local LRU or a shared Redis. */
export interface CacheStore {
  readonly kind: 'memory' | 'redis';
  /** The cached probabilities, or undefined on a miss. Rejects when the store is unreachable. */
  get(key: string): Promise<Float32Array | undefined>;
  set(key: string, probs: Float32Array): Promise<void>;
  /** Whether a remote store is reachable now; null when there is no remote store to lose. */
  connected(): boolean | null;
  close(): Promise<void>;
}
