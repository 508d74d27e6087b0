import { Chalk } from 'chalk';
import type { EvalMetrics } from '../eval/metrics.js';
import { escapeXml } from './curves.js';

const pct = (v: number) => `${(v * 100).toFixed(1)}%`;

/**
 * The evaluation report as text: accuracy, a per-class precision/recall/F1 table and the
 * confusion matrix (rows: true class, columns: predicted), the diagonal in green and errors
 * shaded red by size when `colour` is on.
 */
export function formatEval(m: EvalMetrics, extra: { model: string; imagesPerSecond: number; backend: string; tta?: 'flip' | 'none' }, colour: boolean): string {
  const c = new Chalk({ level: colour ? 1 : 0 });
  const names = m.perClass.map((p) => p.className);
  const w = Math.max(...names.map((n) => n.length));
  const lines: string[] = [];
  lines.push(`${c.bold('accuracy')} ${pct(m.accuracy)} on ${m.count.toLocaleString('en-US')} test images  (model ${extra.model}, ${extra.backend}${extra.tta === 'flip' ? ', flip TTA' : ''}, ${extra.imagesPerSecond.toFixed(0)} img/s)`);
  lines.push('');
  lines.push(`${'class'.padEnd(w)}  precision  recall      F1  support`);
  for (const p of m.perClass) {
    lines.push(`${p.className.padEnd(w)}  ${pct(p.precision).padStart(9)}  ${pct(p.recall).padStart(6)}  ${pct(p.f1).padStart(6)}  ${String(p.support).padStart(7)}`);
  }
  lines.push(`${'macro avg'.padEnd(w)}  ${pct(m.macro.precision).padStart(9)}  ${pct(m.macro.recall).padStart(6)}  ${pct(m.macro.f1).padStart(6)}  ${String(m.count).padStart(7)}`);
  lines.push('');
  lines.push('confusion matrix (rows: true class, columns: predicted)');
  const cw = Math.max(5, ...m.confusion.flat().map((v) => String(v).length + 1));
  lines.push(`${''.padEnd(w)} ${names.map((n) => n.slice(0, cw - 1).padStart(cw)).join('')}`);
  m.confusion.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    const cells = row.map((v, j) => {
      const text = String(v).padStart(cw);
      if (i === j) return c.green(text);
      const share = v / total;
      return share >= 0.1 ? c.red.bold(text) : share >= 0.03 ? c.red(text) : v === 0 ? c.dim(text) : text;
    });
    lines.push(`${names[i]!.padEnd(w)} ${cells.join('')}`);
  });
  return lines.join('\n') + '\n';
}

/** The confusion matrix as an SVG heat map, each row normalised to the share of its class. */
export function confusionSvg(m: EvalMetrics, title: string): string {
  const names = m.perClass.map((p) => p.className);
  const k = names.length;
  const cell = 54;
  const left = 100;
  const top = 84;
  const size = left + k * cell + 20;
  const parts: string[] = [];
  parts.push(`<text x="${size / 2}" y="24" font-size="16" font-weight="bold" text-anchor="middle">${escapeXml(title)} — accuracy ${pct(m.accuracy)}</text>`);
  parts.push(`<text x="${left + (k * cell) / 2}" y="${top - 30}" font-size="12" text-anchor="middle">predicted</text>`);
  m.confusion.forEach((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    parts.push(`<text x="${left - 6}" y="${top + i * cell + cell / 2 + 4}" font-size="12" text-anchor="end">${names[i]}</text>`);
    row.forEach((v, j) => {
      const share = v / total;
      const fill = i === j ? `rgb(${Math.round(255 - 200 * share)},${Math.round(255 - 80 * share)},${Math.round(255 - 200 * share)})` : `rgb(255,${Math.round(255 - 600 * Math.min(share, 0.4))},${Math.round(255 - 600 * Math.min(share, 0.4))})`;
      const x = left + j * cell;
      const y = top + i * cell;
      parts.push(`<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${fill}" stroke="#fff"/>`);
      parts.push(`<text x="${x + cell / 2}" y="${y + cell / 2 + 4}" font-size="11" text-anchor="middle">${v}</text>`);
    });
  });
  names.forEach((n, j) => {
    parts.push(`<text x="${left + j * cell + cell / 2}" y="${top - 8}" font-size="10" text-anchor="middle">${n.slice(0, 8)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${top + k * cell + 20}" font-family="DejaVu Sans, Arial, sans-serif">
<rect width="100%" height="100%" fill="white"/>
${parts.join('\n')}
</svg>
`;
}
