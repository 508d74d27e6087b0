/** One row of history.jsonl: the numbers of one epoch. */
export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  trainAccuracy: number;
  /** null: no test pass after this epoch (`--test-every`). */
  testLoss: number | null;
  testAccuracy: number | null;
  lr: number;
  imagesPerSecond: number;
  seconds: number;
  /**
   * Of `seconds`, the time the training loop waited for the batch loader (absent in histories
   * from before it was measured; after a resume, the resumed part only).
   */
  loaderWaitSeconds?: number;
  /**
   * With a weight average (`ema`), whose figures `testLoss`/`testAccuracy` are, the test accuracy
   * of the weights being trained (null: no test pass; absent: no average).
   */
  liveTestAccuracy?: number | null;
  /**
   * With mixing on (`mixup`, `cutmix`), the fraction of the epoch's steps whose batches were
   * mixed (1 before `mixUntil`, 0 after; absent: no mixing). Their train figures are the mixed
   * targets': lower than a plain batch's.
   */
  mixed?: number;
  /** The fraction of a full epoch's steps this one had, when fewer (the last of a run planned to a time limit). */
  fraction?: number;
}

const W = 900;
const H = 360;
const PAD = { left: 56, right: 16, top: 36, bottom: 40 };

interface Series {
  label: string;
  colour: string;
  /** One value per epoch; null where there is none (the line joins the points that exist). */
  values: Array<number | null>;
}

/** Epochs [from, to] shaded behind the curves (the mixed steps: `to` can end within an epoch). */
interface Band {
  from: number;
  to: number;
  label: string;
}

function panel(x0: number, title: string, series: Series[], epochs: number[], yMax: number, yFormat: (v: number) => string, legendAtBottom: boolean, band?: Band): string {
  const w = W / 2 - PAD.left - PAD.right;
  const h = H - PAD.top - PAD.bottom;
  const xMax = Math.max(1, epochs[epochs.length - 1] ?? 1);
  const sx = (e: number) => x0 + PAD.left + (e / xMax) * w;
  const sy = (v: number) => PAD.top + h - (Math.min(v, yMax) / yMax) * h;
  const parts: string[] = [];
  parts.push(`<text x="${x0 + PAD.left}" y="22" font-size="15" font-weight="bold">${title}</text>`);
  if (band) {
    parts.push(`<rect class="band" x="${sx(band.from).toFixed(1)}" y="${PAD.top}" width="${(sx(band.to) - sx(band.from)).toFixed(1)}" height="${h}" fill="#fff2cc"/>`);
    parts.push(`<text x="${(sx(band.from) + 4).toFixed(1)}" y="${PAD.top + h - 6}" font-size="11" fill="#8a6d00">${escapeXml(band.label)}</text>`);
  }
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    parts.push(`<line x1="${x0 + PAD.left}" x2="${x0 + PAD.left + w}" y1="${sy(v)}" y2="${sy(v)}" stroke="#ddd"/>`);
    parts.push(`<text x="${x0 + PAD.left - 6}" y="${sy(v) + 4}" font-size="11" text-anchor="end">${yFormat(v)}</text>`);
  }
  const ticks = Math.min(xMax, 10);
  for (let i = 0; i <= ticks; i++) {
    const e = Math.round((xMax * i) / ticks);
    parts.push(`<text x="${sx(e)}" y="${PAD.top + h + 16}" font-size="11" text-anchor="middle">${e}</text>`);
  }
  parts.push(`<text x="${x0 + PAD.left + w / 2}" y="${H - 6}" font-size="12" text-anchor="middle">epoch</text>`);
  parts.push(`<rect x="${x0 + PAD.left}" y="${PAD.top}" width="${w}" height="${h}" fill="none" stroke="#888"/>`);
  series.forEach((s, k) => {
    const points = s.values
      .flatMap((v, i) => (v === null ? [] : [`${sx(epochs[i]!).toFixed(1)},${sy(v).toFixed(1)}`]))
      .join(' ');
    parts.push(`<polyline points="${points}" fill="none" stroke="${s.colour}" stroke-width="2"/>`);
    for (const p of points.split(' ')) {
      const [cx, cy] = p.split(',');
      if (cx && cy) parts.push(`<circle cx="${cx}" cy="${cy}" r="2.5" fill="${s.colour}"/>`);
    }
    const ly = legendAtBottom ? PAD.top + h - 10 - (series.length - 1 - k) * 16 : PAD.top + 14 + k * 16;
    parts.push(`<line x1="${x0 + PAD.left + w - 110}" x2="${x0 + PAD.left + w - 92}" y1="${ly - 4}" y2="${ly - 4}" stroke="${s.colour}" stroke-width="3"/>`);
    parts.push(`<text x="${x0 + PAD.left + w - 88}" y="${ly}" font-size="12">${s.label}</text>`);
  });
  return parts.join('\n');
}

/**
 * The loss and accuracy curves of a training run as an SVG document (pure: history in, text
 * out). Render it to PNG with sharp when a bitmap is wanted.
 */
export function curvesSvg(history: readonly EpochRecord[], title = 'training'): string {
  // Where each epoch ended: a partial last one (a run planned to a time limit) short of its number.
  const epochs = history.map((r) => r.epoch - 1 + (r.fraction ?? 1));
  const maxLoss = Math.max(0.5, ...history.flatMap((r) => [r.trainLoss, r.testLoss ?? NaN]).filter(Number.isFinite));
  const lossMax = Math.ceil(maxLoss * 2) / 2;
  const best = history.reduce((b, r) => Math.max(b, r.testAccuracy ?? 0), 0);
  // With a weight average (--ema) the test figures are the average's; the live weights' accuracy beside them.
  const averaged = history.some((r) => r.liveTestAccuracy !== undefined);
  // Mixed batches (--mixup, --cutmix) from the start until --mix-until: shaded, their train figures being the mixed targets'.
  const mixedUpTo = history.reduce((to, r) => ((r.mixed ?? 0) > 0 ? r.epoch - 1 + r.mixed! * (r.fraction ?? 1) : to), 0);
  const band = mixedUpTo > 0 ? { from: 0, to: mixedUpTo, label: 'mixed batches' } : undefined;
  const loss = panel(0, 'loss', [
    { label: 'train', colour: '#1f77b4', values: history.map((r) => r.trainLoss) },
    { label: averaged ? 'test (average)' : 'test', colour: '#d62728', values: history.map((r) => r.testLoss) },
  ], epochs, lossMax, (v) => v.toFixed(2), false, band);
  const acc = panel(W / 2, `accuracy (best test ${(best * 100).toFixed(2)}%)`, [
    { label: 'train', colour: '#1f77b4', values: history.map((r) => r.trainAccuracy) },
    { label: averaged ? 'test (average)' : 'test', colour: '#d62728', values: history.map((r) => r.testAccuracy) },
    ...(averaged ? [{ label: 'test (live)', colour: '#ff9896', values: history.map((r) => r.liveTestAccuracy ?? null) }] : []),
  ], epochs, 1, (v) => `${Math.round(v * 100)}%`, true, band);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H + 20}" font-family="DejaVu Sans, Arial, sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="${H + 14}" font-size="11" text-anchor="middle" fill="#555">${escapeXml(title)}</text>
${loss}
${acc}
</svg>
`;
}

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}
