import chalk from 'chalk';
import { CifarError, exitCodeFor, isCifarError } from '../errors.js';
import { parseDuration } from '../train/plan.js';

/** What every command's action gets besides its options: an abort signal tied to Ctrl-C and SIGTERM. */
export interface ActionContext {
  signal: AbortSignal;
}

let interrupts = 0;
const controller = new AbortController();
// The shell's status for a process ended by a signal: 128 + its number.
const SIGNAL_EXIT: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 130, SIGTERM: 143 };

/**
 * Wrap a command's action: Ctrl-C or SIGTERM (a job scheduler, `timeout`, `docker stop`) aborts
 * the signal so that the command stops cleanly (training saves a checkpoint); a second one quits
 * at once. Any error becomes one line on stderr and an exit status from `exitCodeFor`, or 130 /
 * 143 after SIGINT / SIGTERM.
 */
export function action<A extends unknown[]>(fn: (ctx: ActionContext, ...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    let received: keyof typeof SIGNAL_EXIT | undefined;
    const on = (name: keyof typeof SIGNAL_EXIT) => () => {
      interrupts++;
      if (interrupts > 1) process.exit(SIGNAL_EXIT[name]);
      received = name;
      controller.abort(new CifarError('ABORTED', 'interrupted'));
    };
    const handlers = { SIGINT: on('SIGINT'), SIGTERM: on('SIGTERM') };
    for (const [name, handler] of Object.entries(handlers)) process.on(name, handler);
    try {
      await fn({ signal: controller.signal }, ...args);
    } catch (err) {
      reportError(err);
      process.exitCode = received ? SIGNAL_EXIT[received] : exitCodeFor(err);
    } finally {
      for (const [name, handler] of Object.entries(handlers)) process.off(name, handler);
    }
  };
}

/** Print an error as one line (plus the stack when CIFAR_DEBUG is set). */
export function reportError(err: unknown): void {
  const paint = process.stderr.isTTY ? chalk.red : (s: string) => s;
  if (isCifarError(err)) {
    const hint = err.hint ? ` — ${err.hint}` : '';
    process.stderr.write(`${paint('error:')} ${err.message}${hint}\n`);
  } else {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`${paint('error:')} unexpected failure: ${message.split('\n')[0]} (set CIFAR_DEBUG=1 for details)\n`);
  }
  if (process.env.CIFAR_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
}

/** The flag of a camelCase option key, as a user types it: `timeLimit` → `--time-limit`. */
export function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** --workers of train and eval: "auto" or a whole number of threads. */
export function workersArg(value: string): number | 'auto' {
  if (value === 'auto') return value;
  const n = value.trim() === '' ? NaN : Number(value);
  if (!Number.isInteger(n) || n < 1) throw new CifarError('USAGE', `--workers ${value}: expected auto or a whole number ≥ 1`);
  return n;
}

/** A duration flag's seconds (600, 600s, 10m, 1h30m), or a USAGE error naming the flag and `examples`. */
export function durationArg(flag: string, value: string, examples: string): number {
  const seconds = parseDuration(value);
  if (seconds === undefined) throw new CifarError('USAGE', `${flag} ${value}: expected a duration such as ${examples}`);
  return seconds;
}

/** Parse a positive integer option or throw a USAGE error naming the flag. */
export function positiveInt(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new CifarError('USAGE', `${flag} ${value}: expected a positive integer`);
    return n;
  };
}
