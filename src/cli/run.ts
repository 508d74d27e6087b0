import chalk from 'chalk';
import { CifarError, exitCodeFor, isCifarError } from '../errors.js';

/** What every command's action gets besides its options: an abort signal tied to Ctrl-C. */
export interface ActionContext {
  signal: AbortSignal;
}

let interrupts = 0;
const controller = new AbortController();

/**
 * Wrap a command's action: Ctrl-C aborts the signal (a second Ctrl-C quits at once), and any
 * error becomes one line on stderr and an exit status from `exitCodeFor`.
 */
export function action<A extends unknown[]>(fn: (ctx: ActionContext, ...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const onSigint = () => {
      interrupts++;
      if (interrupts > 1) process.exit(130);
      controller.abort(new CifarError('ABORTED', 'interrupted'));
    };
    process.on('SIGINT', onSigint);
    try {
      await fn({ signal: controller.signal }, ...args);
    } catch (err) {
      reportError(err);
      process.exitCode = exitCodeFor(controller.signal.aborted ? new CifarError('ABORTED', 'interrupted') : err);
    } finally {
      process.off('SIGINT', onSigint);
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

/** Parse a positive integer option or throw a USAGE error naming the flag. */
export function positiveInt(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0) throw new CifarError('USAGE', `${flag} ${value}: expected a positive integer`);
    return n;
  };
}
