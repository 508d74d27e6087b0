import type { DownloadResult } from '../data/download.js';
import { formatCount, formatSeconds } from './format.js';

const FORMAT_NAMES: Record<DownloadResult['format'], string> = {
  binary: 'binary release',
  python: 'imported python version',
  'image-folder': 'imported image folder',
  existing: 'already present',
};

/** The human summary of `cifar download`, as lines (pure: no colours, no I/O). */
export function formatDownload(result: DownloadResult): string {
  const lines: string[] = [];
  if (result.alreadyPresent) {
    lines.push(`CIFAR-10 is already complete at ${result.path} (use --force to redo it)`);
  } else {
    lines.push(`CIFAR-10 ready at ${result.path} (${FORMAT_NAMES[result.format]}, ${formatSeconds(result.seconds)})`);
    lines.push(`source   ${result.source}${result.md5 ? ` (md5 ${result.md5} verified)` : ''}`);
  }
  lines.push(`records  train ${formatCount(result.counts.train)}, test ${formatCount(result.counts.test)}`);
  if (result.resized > 0) lines.push(`resized  ${formatCount(result.resized)} images were not 32×32 and were centre-cropped and resized`);
  const classes = Object.keys(result.perClass.train);
  const width = Math.max(...classes.map((c) => c.length));
  lines.push(`${'class'.padEnd(width)}  ${'train'.padStart(6)}  ${'test'.padStart(6)}`);
  for (const c of classes) {
    lines.push(`${c.padEnd(width)}  ${formatCount(result.perClass.train[c]!).padStart(6)}  ${formatCount(result.perClass.test[c]!).padStart(6)}`);
  }
  const [r, g, b] = result.stats.mean;
  const [sr, sg, sb] = result.stats.std;
  lines.push(`mean     ${[r, g, b].map((v) => v.toFixed(4)).join(' ')}   std ${[sr, sg, sb].map((v) => v.toFixed(4)).join(' ')}`);
  return lines.join('\n') + '\n';
}

/** The `--json` object: the library's result, with the per-file checksums and timing. */
export function downloadJson(result: DownloadResult): string {
  return JSON.stringify(result) + '\n';
}
