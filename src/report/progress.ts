import cliProgress from 'cli-progress';
import { formatBytes, formatCount } from './format.js';

export interface Progress {
  /** Report `done` of `total` units for a named phase; a new phase starts a new bar or line. */
  update(phase: string, done: number, total: number | undefined): void;
  /** A one-line note between updates. */
  note(message: string): void;
  stop(): void;
}

export interface ProgressOptions {
  /** Show nothing at all. */
  quiet?: boolean;
  /** Draw a live bar (a TTY) or print plain lines (logs, CI). */
  tty?: boolean;
  /** Units of the phases counted in bytes (shown as kB/MB). */
  bytePhases?: readonly string[];
  stream?: NodeJS.WriteStream;
  /** Labels shown for phases. */
  labels?: Record<string, string>;
}

/**
 * Progress on stderr: a cli-progress bar with ETA on a TTY, plain lines every 10% elsewhere
 * (so CI logs stay short), nothing with `quiet`.
 */
export function createProgress(options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  if (options.quiet) return { update() {}, note() {}, stop() {} };
  const bytes = new Set(options.bytePhases ?? []);
  const label = (phase: string) => options.labels?.[phase] ?? phase;
  const fmt = (phase: string, n: number) => (bytes.has(phase) ? formatBytes(n) : formatCount(n));
  return (options.tty ?? stream.isTTY) ? barProgress(stream, label, fmt) : lineProgress(stream, label, fmt);
}

type Fmt = (phase: string, n: number) => string;

function barProgress(stream: NodeJS.WriteStream, label: (p: string) => string, fmt: Fmt): Progress {
  let bar: cliProgress.SingleBar | undefined;
  let current: string | undefined;
  const finish = () => {
    bar?.stop();
    bar = undefined;
  };
  return {
    update(phase, done, total) {
      if (phase !== current) {
        finish();
        current = phase;
        bar = new cliProgress.SingleBar(
          {
            stream,
            format: `${label(phase).padEnd(9)} [{bar}] {percentage}% | {doneText}/{totalText} | ETA {eta_formatted}`,
            barsize: 30,
            hideCursor: true,
            clearOnComplete: false,
            etaBuffer: 50,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total ?? 0, done, { doneText: fmt(phase, done), totalText: total === undefined ? '?' : fmt(phase, total) });
      }
      if (total !== undefined && bar?.getTotal() !== total) bar?.setTotal(total);
      bar?.update(done, { doneText: fmt(phase, done), totalText: total === undefined ? '?' : fmt(phase, total) });
    },
    note(message) {
      finish();
      current = undefined;
      stream.write(`${message}\n`);
    },
    stop: finish,
  };
}

function lineProgress(stream: NodeJS.WriteStream, label: (p: string) => string, fmt: Fmt): Progress {
  let current: string | undefined;
  let lastDecile = -1;
  return {
    update(phase, done, total) {
      if (phase !== current) {
        current = phase;
        lastDecile = -1;
        stream.write(`${label(phase)}: started${total === undefined ? '' : ` (${fmt(phase, total)})`}\n`);
      }
      if (total === undefined || total === 0) return;
      const decile = Math.floor((done / total) * 10);
      if (decile > lastDecile && decile > 0) {
        lastDecile = decile;
        stream.write(`${label(phase)}: ${decile * 10}% (${fmt(phase, done)}/${fmt(phase, total)})\n`);
      }
    },
    note(message) {
      stream.write(`${message}\n`);
    },
    stop() {},
  };
}
