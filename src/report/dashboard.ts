import type { DashboardData, FieldConfig, Panel, PanelData, SeriesData } from '../monitoring/dashboard.js';
import { escapeXml } from './curves.js';

/**
 * A Grafana dashboard drawn as one SVG picture from its queries' data (`cifar dashboard`):
 * stat panels (last value, value mappings, thresholds, background or value colour, sparkline)
 * and time series (lines or stacked areas, units, a right axis by override, legend), laid out on
 * Grafana's 24-column grid in its dark theme. Other panel types are drawn as a titled box saying
 * so. Pure: data in, SVG text out.
 */

const WIDTH = 1800;
const COL = WIDTH / 24;
const CELL = 30;
const GAP = 8;
const HEADER = 56;
const THEME = { bg: '#111217', panel: '#181b1f', border: '#2a2d33', text: '#ccccdc', dim: '#8e8e99', grid: '#26292f', error: '#f2495c' };
/** Grafana's named colours (dark theme), for thresholds and mappings. */
const NAMED: Record<string, string> = {
  green: '#73bf69', 'dark-green': '#37872d', 'semi-dark-green': '#56a64b', red: '#f2495c', 'dark-red': '#c4162a', 'semi-dark-red': '#e02f44',
  orange: '#ff9830', 'dark-orange': '#fa6400', yellow: '#fade2a', 'dark-yellow': '#e0b400', blue: '#5794f2', 'dark-blue': '#1f60c4',
  purple: '#b877d9', 'dark-purple': '#8f3bb8', text: THEME.text, transparent: 'none',
};
/** Grafana's classic palette, the series colours in order. */
const PALETTE = ['#7eb26d', '#eab839', '#6ed0e0', '#ef843c', '#e24d42', '#1f78c1', '#ba43a9', '#705da0', '#508642', '#cca300', '#447ebc', '#c15c17', '#890f02', '#0a437c', '#6d1f62', '#584477'];
/** What Grafana uses when a panel sets no thresholds. */
const DEFAULT_THRESHOLDS = [{ color: 'green', value: null }, { color: 'red', value: 80 }];

export function colour(name: string): string {
  return NAMED[name] ?? name;
}

// ---------------------------------------------------------------- values and units

/** Lowest and highest of `values` and `start` (a loop: spreading a long series into Math.min overflows the stack). */
export function extent(values: Iterable<number>, start: [number, number] = [Infinity, -Infinity]): [number, number] {
  let [lo, hi] = start;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return [lo, hi];
}

function trimmed(v: number, decimals: number): string {
  return v.toFixed(decimals).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
}

/** Decimals for about three significant digits. */
function autoDecimals(v: number): number {
  const a = Math.abs(v);
  return a >= 100 || a === 0 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
}

function scaled(v: number, base: number, units: string[], decimals?: number): string {
  let i = 0;
  let x = v;
  while (Math.abs(x) >= base && i < units.length - 1) {
    x /= base;
    i++;
  }
  return `${trimmed(x, decimals ?? autoDecimals(x))}${units[i]}`;
}

/**
 * A value in one of Grafana's units, the way its panels show it: `reqps` (req/s), `percentunit`
 * (0–1 as %), `percent`, `s` and `ms` (scaled from µs to hours), `bytes` (IEC), `short` (K, Mil, Bil)
 * and `none`; an unknown unit is shown after the number.
 */
export function formatValue(v: number, unit: string | undefined, decimals?: number): string {
  if (!Number.isFinite(v)) return String(v);
  switch (unit) {
    case 'percentunit':
      return `${trimmed(v * 100, decimals ?? autoDecimals(v * 100))}%`;
    case 'percent':
      return `${trimmed(v, decimals ?? autoDecimals(v))}%`;
    case 'reqps':
      return `${scaled(v, 1000, ['', 'K', 'Mil'], decimals)} req/s`;
    case 'ms':
      return formatValue(v / 1000, 's', decimals);
    case 's': {
      const a = Math.abs(v);
      if (a === 0) return '0 s';
      if (a < 1e-3) return `${trimmed(v * 1e6, decimals ?? autoDecimals(v * 1e6))} µs`;
      if (a < 1) return `${trimmed(v * 1e3, decimals ?? autoDecimals(v * 1e3))} ms`;
      if (a < 60) return `${trimmed(v, decimals ?? autoDecimals(v))} s`;
      if (a < 3600) return `${trimmed(v / 60, decimals ?? autoDecimals(v / 60))} min`;
      return `${trimmed(v / 3600, decimals ?? autoDecimals(v / 3600))} hour`;
    }
    case 'bytes':
      return scaled(v, 1024, [' B', ' KiB', ' MiB', ' GiB', ' TiB'], decimals);
    case 'none':
      return trimmed(v, decimals ?? autoDecimals(v));
    case 'short':
    case undefined:
    case '':
      return scaled(v, 1000, ['', ' K', ' Mil', ' Bil', ' Tri'], decimals);
    default:
      return `${trimmed(v, decimals ?? autoDecimals(v))} ${unit}`;
  }
}

/** The field config of one series: the panel's defaults with the overrides that match it. */
export function seriesConfig(panel: Panel, series: Pick<SeriesData, 'name' | 'refId'>): FieldConfig {
  const config: FieldConfig = { ...panel.fieldConfig.defaults, custom: { ...panel.fieldConfig.defaults.custom } };
  for (const o of panel.fieldConfig.overrides) {
    const opt = o.matcher.options;
    const matches =
      (o.matcher.id === 'byName' && opt === series.name) ||
      (o.matcher.id === 'byFrameRefID' && opt === series.refId) ||
      (o.matcher.id === 'byRegexp' && typeof opt === 'string' && safeRegExp(opt)?.test(series.name) === true);
    if (!matches) continue;
    for (const p of o.properties) {
      if (p.id.startsWith('custom.')) (config.custom as Record<string, unknown>)[p.id.slice(7)] = p.value;
      else (config as Record<string, unknown>)[p.id] = p.value;
    }
  }
  return config;
}

function safeRegExp(source: string): RegExp | undefined {
  try {
    const m = /^\/(.*)\/([a-z]*)$/.exec(source);
    return m ? new RegExp(m[1]!, m[2]) : new RegExp(source);
  } catch {
    return undefined;
  }
}

/** The colour of a value by the thresholds (the last step at or below it). */
export function thresholdColour(value: number, config: FieldConfig): string {
  const steps = config.thresholds?.steps ?? DEFAULT_THRESHOLDS;
  let c = steps[0]?.color ?? 'green';
  for (const s of steps) if (s.value === null || value >= s.value) c = s.color;
  return colour(c);
}

/** A value mapping's text and colour for a value (null: no value), if one matches. */
export function mapValue(value: number | null, config: FieldConfig): { text?: string; color?: string } | undefined {
  for (const m of config.mappings ?? []) {
    const o = m.options as Record<string, any>;
    if (m.type === 'value' && value !== null) {
      const hit = o[String(value)];
      if (hit) return hit;
    } else if (m.type === 'range' && value !== null) {
      const from = o.from ?? -Infinity;
      const to = o.to ?? Infinity;
      if (value >= from && value <= to) return o.result;
    } else if (m.type === 'special' && value === null && (o.match === 'null' || o.match === 'null+nan')) {
      return o.result;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------- axes

/** A "nice" step (1, 2 or 5 × 10^k), the nearest to `span` / `target`. */
export function niceStep(span: number, target = 4): number {
  if (!(span > 0)) return 1;
  const raw = span / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

/** Nice y ticks from `lo` to at least `hi`; bytes step in powers of 1024. */
export function yTicks(lo: number, hi: number, unit: string | undefined): number[] {
  if (hi <= lo) hi = lo + (lo === 0 ? 1 : Math.abs(lo));
  let step: number;
  if (unit === 'bytes' && hi - lo >= 1024) {
    const base = 1024 ** Math.floor(Math.log(hi - lo) / Math.log(1024));
    step = niceStep((hi - lo) / base) * base;
  } else {
    step = niceStep(hi - lo);
  }
  const first = Math.floor(lo / step) * step;
  const ticks: number[] = [];
  for (let t = first; t < hi + step * 0.999; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/** Time ticks at round times, at least `minSpacing` px apart over `width` px. */
export function timeTicks(from: number, to: number, width: number, minSpacing = 90): number[] {
  const span = to - from;
  const step = TIME_STEPS.find((s) => (s / span) * width >= minSpacing) ?? 86400;
  const ticks: number[] = [];
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) ticks.push(t);
  return ticks;
}

function timeLabel(t: number, span: number): string {
  const iso = new Date(t * 1000).toISOString();
  return span <= 3600 ? iso.slice(11, 19) : span <= 86400 ? iso.slice(11, 16) : `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
}

// ---------------------------------------------------------------- panels

interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

function panelBox(panel: Panel): Box {
  const { x, y, w, h } = panel.gridPos;
  return { x: x * COL + GAP / 2, y: HEADER + y * (CELL + GAP), w: w * COL - GAP, h: h * CELL + (h - 1) * GAP };
}

function text(x: number, y: number, s: string, attrs: string): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${escapeXml(s)}</text>`;
}

/** Cut a label to about `px` pixels at `size` (an average glyph is ~0.58 em wide in DejaVu Sans). */
function fit(s: string, px: number, size: number): string {
  const max = Math.max(3, Math.floor(px / (size * 0.58)));
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}

function frame(b: Box, title: string, fill = THEME.panel): string {
  return [
    `<rect x="${b.x}" y="${b.y}" width="${b.w}" height="${b.h}" rx="3" fill="${fill}" stroke="${THEME.border}"/>`,
    text(b.x + 10, b.y + 20, fit(title, b.w - 20, 13), `font-size="13" font-weight="bold" fill="${fill === THEME.panel ? THEME.text : '#ffffff'}"`),
  ].join('');
}

function path(points: Array<[number, number]>): string {
  return points.map(([x, y], i) => `${i ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`).join('');
}

/** Split a series' points where a sample is missing (a gap over 1.5 steps), as Grafana breaks its lines. */
function runs(points: Array<[number, number]>, step: number): Array<Array<[number, number]>> {
  const out: Array<Array<[number, number]>> = [];
  let cur: Array<[number, number]> = [];
  for (const p of points) {
    const prev = cur[cur.length - 1];
    if (prev && p[0] - prev[0] > step * 1.5) {
      out.push(cur);
      cur = [];
    }
    cur.push(p);
  }
  if (cur.length) out.push(cur);
  return out;
}

function statPanel(d: PanelData, b: Box, data: DashboardData): string {
  const panel = d.panel;
  if (d.error) return frame(b, panel.title) + errorText(b, d.error);
  const series = d.series.length ? d.series : [undefined];
  const parts: string[] = [];
  const cellW = b.w / series.length;
  const background = panel.options.colorMode === 'background';
  let fill = THEME.panel;
  const values = series.map((s) => {
    const config = s ? seriesConfig(panel, s) : panel.fieldConfig.defaults;
    const last = s?.points[s.points.length - 1]?.[1] ?? null;
    const mapped = mapValue(last, config);
    const label = mapped?.text ?? (last === null ? (config.noValue ?? 'No data') : formatValue(last, config.unit, config.decimals));
    const c = mapped?.color ? colour(mapped.color) : last === null ? THEME.text : thresholdColour(last, config);
    return { s, label, c };
  });
  if (background && values.length === 1 && values[0]!.s?.points.length) fill = values[0]!.c;
  parts.push(frame(b, panel.title, fill));
  const sparkH = panel.options.graphMode === 'area' ? b.h * 0.3 : 0;
  values.forEach(({ s, label, c }, i) => {
    const cx = b.x + cellW * i + cellW / 2;
    // The value sits between the title and the sparkline, as large as the space and its length allow.
    const top = b.y + 28;
    const bottom = b.y + b.h - Math.max(6, sparkH * 0.8) - (series.length > 1 ? 14 : 0);
    const size = Math.max(10, Math.min((bottom - top) * 0.8, (cellW - 16) / Math.max(1, label.length * 0.62), 48));
    if (s && sparkH > 0 && s.points.length > 1) {
      const x0 = b.x + cellW * i;
      const ys = s.points.map(([, v]) => v);
      const [lo, top] = extent(ys, [0, -Infinity]);
      const hi = Math.max(top, lo + 1e-12);
      const sx = (t: number) => x0 + ((t - data.from) / (data.to - data.from)) * cellW;
      const sy = (v: number) => b.y + b.h - 4 - ((v - lo) / (hi - lo)) * sparkH;
      const line = s.points.map(([t, v]) => [sx(t), sy(v)] as [number, number]);
      parts.push(`<path d="${path(line)}L${line[line.length - 1]![0].toFixed(1)},${(b.y + b.h - 4).toFixed(1)}L${line[0]![0].toFixed(1)},${(b.y + b.h - 4).toFixed(1)}Z" fill="${c}" fill-opacity="0.18" stroke="${c}" stroke-width="1.2"/>`);
    }
    const fillText = background && fill !== THEME.panel ? '#ffffff' : s?.points.length ? c : THEME.dim;
    parts.push(text(cx, (top + bottom) / 2 + size * 0.36, label, `font-size="${size.toFixed(1)}" font-weight="bold" text-anchor="middle" fill="${fillText}" class="stat-value"`));
    if (series.length > 1 && s) parts.push(text(cx, b.y + b.h - 8, fit(s.name, cellW - 8, 11), `font-size="11" text-anchor="middle" fill="${THEME.dim}"`));
  });
  return parts.join('');
}

function errorText(b: Box, message: string): string {
  return text(b.x + 10, b.y + 46, fit(message, b.w - 20, 12), `font-size="12" fill="${THEME.error}" class="panel-error"`);
}

function timeSeriesPanel(d: PanelData, b: Box, data: DashboardData): string {
  const panel = d.panel;
  const parts = [frame(b, panel.title)];
  if (d.error) return parts.join('') + errorText(b, d.error);
  const series = d.series.map((s, i) => ({ s, config: seriesConfig(panel, s), colour: PALETTE[i % PALETTE.length]! }));
  if (!series.some(({ s }) => s.points.length)) {
    parts.push(text(b.x + b.w / 2, b.y + b.h / 2 + 6, 'No data', `font-size="16" text-anchor="middle" fill="${THEME.dim}" class="no-data"`));
    return parts.join('');
  }

  // Legend: one or more lines under the plot.
  const showLegend = (panel.options.legend as { showLegend?: boolean } | undefined)?.showLegend !== false;
  const legendLines: Array<Array<{ name: string; colour: string; x: number }>> = [];
  if (showLegend) {
    let line: Array<{ name: string; colour: string; x: number }> = [];
    let x = 0;
    for (const { s, colour: c } of series) {
      const name = fit(s.name || s.refId, b.w - 40, 11);
      const w = 22 + name.length * 11 * 0.58 + 14;
      if (x + w > b.w - 20 && line.length) {
        legendLines.push(line);
        line = [];
        x = 0;
      }
      line.push({ name, colour: c, x });
      x += w;
    }
    if (line.length) legendLines.push(line);
  }
  const maxLegendLines = Math.max(1, Math.floor((b.h - 120) / 16));
  const shownLegend = legendLines.slice(0, maxLegendLines);
  const legendH = shownLegend.length * 16 + (shownLegend.length ? 6 : 0);

  // Axes: left for the defaults' unit, right for series an override puts there.
  const right = series.filter(({ config }) => config.custom?.axisPlacement === 'right');
  const left = series.filter(({ config }) => config.custom?.axisPlacement !== 'right');
  const stacked = panel.fieldConfig.defaults.custom?.stacking?.mode === 'normal';
  const plot = { x: b.x + 64, y: b.y + 34, w: b.w - 64 - (right.length ? 64 : 14), h: b.h - 34 - 22 - legendH };
  const sx = (t: number) => plot.x + ((t - data.from) / (data.to - data.from)) * plot.w;

  // Stacking adds each series to the ones before it, at the same timestamps (missing: 0).
  const drawn = new Map<(typeof series)[number], { line: Array<[number, number]>; base: Array<[number, number]> }>();
  const stackTotals = new Map<number, number>();
  for (const item of left) {
    if (!stacked) {
      drawn.set(item, { line: item.s.points, base: [] });
      continue;
    }
    const line: Array<[number, number]> = [];
    const base: Array<[number, number]> = [];
    for (const [t, v] of item.s.points) {
      const below = stackTotals.get(t) ?? 0;
      base.push([t, below]);
      line.push([t, below + v]);
      stackTotals.set(t, below + v);
    }
    drawn.set(item, { line, base });
  }
  for (const item of right) drawn.set(item, { line: item.s.points, base: [] });

  const axis = (items: typeof series) => {
    const config = items[0]?.config ?? panel.fieldConfig.defaults;
    let [lo, hi] = [config.min ?? 0, config.max ?? -Infinity];
    for (const it of items) [lo, hi] = extent(drawn.get(it)!.line.map(([, v]) => v), [lo, hi]);
    const ticks = yTicks(lo, hi, config.unit);
    const min = ticks[0]!;
    const max = ticks[ticks.length - 1]!;
    return { ticks, unit: config.unit, decimals: config.decimals, sy: (v: number) => plot.y + plot.h - ((v - min) / (max - min || 1)) * plot.h };
  };
  const leftAxis = left.length ? axis(left) : undefined;
  const rightAxis = right.length ? axis(right) : undefined;

  const primary = leftAxis ?? rightAxis!;
  for (const t of primary.ticks) {
    const y = primary.sy(t);
    parts.push(`<line x1="${plot.x}" x2="${(plot.x + plot.w).toFixed(1)}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="${THEME.grid}"/>`);
  }
  if (leftAxis) for (const t of leftAxis.ticks) parts.push(text(plot.x - 6, leftAxis.sy(t) + 4, formatValue(t, leftAxis.unit, leftAxis.decimals), `font-size="11" text-anchor="end" fill="${THEME.dim}"`));
  if (rightAxis) for (const t of rightAxis.ticks) parts.push(text(plot.x + plot.w + 6, rightAxis.sy(t) + 4, formatValue(t, rightAxis.unit, rightAxis.decimals), `font-size="11" fill="${THEME.dim}"`));
  const span = data.to - data.from;
  for (const t of timeTicks(data.from, data.to, plot.w)) {
    const x = sx(t);
    parts.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${plot.y}" y2="${(plot.y + plot.h).toFixed(1)}" stroke="${THEME.grid}"/>`);
    parts.push(text(x, plot.y + plot.h + 15, timeLabel(t, span), `font-size="11" text-anchor="middle" fill="${THEME.dim}"`));
  }

  for (const item of series) {
    const ax = right.includes(item) ? rightAxis! : leftAxis!;
    const { line, base } = drawn.get(item)!;
    const fillOpacity = (item.config.custom?.fillOpacity ?? 0) / 100;
    const baseByTime = new Map(base);
    for (const run of runs(line, data.step)) {
      const pts = run.map(([t, v]) => [sx(t), ax.sy(v)] as [number, number]);
      if (fillOpacity > 0) {
        const under = run.map(([t]) => [sx(t), ax.sy(baseByTime.get(t) ?? Math.max(ax.ticks[0]!, 0))] as [number, number]).reverse();
        parts.push(`<path d="${path([...pts, ...under])}Z" fill="${item.colour}" fill-opacity="${fillOpacity}" stroke="none"/>`);
      }
      if (pts.length === 1) parts.push(`<circle cx="${pts[0]![0].toFixed(1)}" cy="${pts[0]![1].toFixed(1)}" r="1.5" fill="${item.colour}"/>`);
      else parts.push(`<path d="${path(pts)}" fill="none" stroke="${item.colour}" stroke-width="1.5" class="series"/>`);
    }
  }

  shownLegend.forEach((line, i) => {
    const y = plot.y + plot.h + 22 + 14 + i * 16;
    for (const item of line) {
      parts.push(`<rect x="${(b.x + 10 + item.x).toFixed(1)}" y="${(y - 6).toFixed(1)}" width="14" height="4" rx="1" fill="${item.colour}"/>`);
      parts.push(text(b.x + 10 + item.x + 20, y, item.name, `font-size="11" fill="${THEME.text}" class="legend"`));
    }
  });
  if (legendLines.length > shownLegend.length) {
    const more = legendLines.slice(shownLegend.length).reduce((n, l) => n + l.length, 0);
    parts.push(text(b.x + b.w - 10, b.y + b.h - 6, `+${more} more`, `font-size="11" text-anchor="end" fill="${THEME.dim}"`));
  }
  return parts.join('');
}

function rowPanel(panel: Panel, b: Box): string {
  return text(b.x + 2, b.y + 20, panel.title, `font-size="15" font-weight="bold" fill="${THEME.text}"`) + `<line x1="${b.x}" x2="${b.x + b.w}" y1="${b.y + b.h - 2}" y2="${b.y + b.h - 2}" stroke="${THEME.border}"/>`;
}

function otherPanel(panel: Panel, b: Box): string {
  return frame(b, panel.title) + text(b.x + b.w / 2, b.y + b.h / 2 + 5, `(a ${panel.type} panel: not drawn)`, `font-size="12" text-anchor="middle" fill="${THEME.dim}"`);
}

/** The whole dashboard as SVG: a header with the title, time range and source, then the panels. */
export function dashboardSvg(data: DashboardData): string {
  const height = Math.max(HEADER + 40, ...data.panels.map(({ panel }) => HEADER + (panel.gridPos.y + panel.gridPos.h) * (CELL + GAP))) + GAP;
  const iso = (t: number) => new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 19);
  const minutes = (data.to - data.from) / 60;
  const header = [
    text(GAP, 24, data.title, `font-size="20" font-weight="bold" fill="${THEME.text}"`),
    text(GAP, 44, `${iso(data.from)} – ${iso(data.to).slice(11)} UTC (${trimmed(minutes, 1)} min) · step ${data.step} s · $__rate_interval ${data.rateInterval} s · from ${data.prometheus}`, `font-size="12" fill="${THEME.dim}"`),
    text(WIDTH - GAP, 24, 'drawn by cifar dashboard from the dashboard\'s own queries', `font-size="11" text-anchor="end" fill="${THEME.dim}"`),
  ];
  const body = data.panels.map((d) => {
    const b = panelBox(d.panel);
    if (d.panel.type === 'stat') return statPanel(d, b, data);
    if (d.panel.type === 'timeseries' || d.panel.type === 'graph') return timeSeriesPanel(d, b, data);
    if (d.panel.type === 'row') return rowPanel(d.panel, b);
    return otherPanel(d.panel, b);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" font-family="DejaVu Sans, Arial, sans-serif">
<rect width="100%" height="100%" fill="${THEME.bg}"/>
${header.join('\n')}
${body.join('\n')}
</svg>
`;
}
