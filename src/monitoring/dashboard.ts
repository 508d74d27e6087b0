import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { CifarError, fromSystemError } from '../errors.js';

/**
 * A Grafana dashboard's panels and their PromQL, evaluated against a Prometheus over its HTTP
 * API: what `cifar dashboard` draws (src/report/dashboard.ts) where no Grafana runs. Only the
 * parts of the dashboard model that drawing needs are read; the rest is kept as it is.
 */

const Mapping = z.object({
  type: z.string(),
  options: z.record(z.string(), z.unknown()).default({}),
});
const Thresholds = z.object({ steps: z.array(z.object({ color: z.string(), value: z.number().nullable() })) });
const FieldDefaults = z
  .object({
    unit: z.string().optional(),
    decimals: z.number().optional(),
    min: z.number().optional(),
    max: z.number().optional(),
    mappings: z.array(Mapping).optional(),
    thresholds: Thresholds.optional(),
    noValue: z.string().optional(),
    custom: z
      .object({
        stacking: z.object({ mode: z.string().optional() }).passthrough().optional(),
        fillOpacity: z.number().optional(),
        axisPlacement: z.string().optional(),
      })
      .passthrough()
      .optional(),
  })
  .passthrough();
const Override = z.object({
  matcher: z.object({ id: z.string(), options: z.unknown() }),
  properties: z.array(z.object({ id: z.string(), value: z.unknown() })),
});

export type FieldConfig = z.infer<typeof FieldDefaults>;
export type ValueMapping = z.infer<typeof Mapping>;

interface PanelShape {
  id?: number | undefined;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets: Array<{ refId?: string | undefined; expr?: string | undefined; legendFormat?: string | undefined; hide?: boolean | undefined }>;
  fieldConfig: { defaults: FieldConfig; overrides: Array<z.infer<typeof Override>> };
  options: Record<string, unknown>;
  collapsed?: boolean | undefined;
  panels?: PanelShape[] | undefined;
}

const PanelSchema: z.ZodType<PanelShape> = z.lazy(() =>
  z.object({
    id: z.number().optional(),
    type: z.string(),
    title: z.string().default(''),
    gridPos: z.object({ x: z.number().min(0), y: z.number().min(0), w: z.number().positive(), h: z.number().positive() }),
    targets: z
      .array(z.object({ refId: z.string().optional(), expr: z.string().optional(), legendFormat: z.string().optional(), hide: z.boolean().optional() }).passthrough())
      .default([]),
    fieldConfig: z.object({ defaults: FieldDefaults.default({}), overrides: z.array(Override).default([]) }).default({ defaults: {}, overrides: [] }),
    options: z.record(z.string(), z.unknown()).default({}),
    collapsed: z.boolean().optional(),
    panels: z.array(PanelSchema).optional(),
  }),
) as z.ZodType<PanelShape>;

const DashboardSchema = z.object({
  title: z.string().default('dashboard'),
  panels: z.array(PanelSchema),
  templating: z
    .object({ list: z.array(z.object({ name: z.string(), current: z.object({ value: z.unknown() }).partial().optional() }).passthrough()).default([]) })
    .default({ list: [] }),
});

export type Panel = PanelShape;
export type Dashboard = z.infer<typeof DashboardSchema>;

/** Parse a dashboard JSON (as Grafana exports it, or wrapped as its API returns it: `{dashboard: …}`). */
export function parseDashboard(json: unknown, where: string): Dashboard {
  const body = json && typeof json === 'object' && 'dashboard' in json && !('panels' in json) ? (json as { dashboard: unknown }).dashboard : json;
  const parsed = DashboardSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new CifarError('CONFIG_INVALID', `${where}: not a Grafana dashboard (${issue.path.join('.') || 'top level'}: ${issue.message})`);
  }
  return parsed.data;
}

export async function loadDashboard(path: string): Promise<Dashboard> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw fromSystemError(err, path);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CifarError('CONFIG_INVALID', `${path}: not JSON (${(err as Error).message})`);
  }
  return parseDashboard(json, path);
}

/**
 * The top-level panels in reading order (by row, then column). A collapsed row keeps its panels
 * in its own `panels`, hidden in Grafana, so they are not among these; the row stays, as a title.
 */
export function panelsInOrder(dashboard: Dashboard): Panel[] {
  return [...dashboard.panels].sort((a, b) => a.gridPos.y - b.gridPos.y || a.gridPos.x - b.gridPos.x);
}

/**
 * Grafana's `$__rate_interval`: the larger of the step plus the scrape interval and four scrape
 * intervals, so that a rate always spans enough samples.
 */
export function rateInterval(stepSeconds: number, scrapeSeconds: number): number {
  return Math.max(stepSeconds + scrapeSeconds, 4 * scrapeSeconds);
}

/**
 * The step of a range query: about `points` points over the range, in whole seconds, never less
 * than the scrape interval (no finer than the data).
 */
export function queryStep(rangeSeconds: number, scrapeSeconds: number, points = 400): number {
  return Math.max(scrapeSeconds, Math.ceil(rangeSeconds / points));
}

export interface QueryVariables {
  stepSeconds: number;
  rangeSeconds: number;
  rateIntervalSeconds: number;
}

/**
 * An expression with Grafana's variables replaced: `$__rate_interval`, `$__interval`, `$__range`
 * (with or without braces, and their `_ms`/`_s` forms), then the dashboard's own variables by
 * their current value (several values as a regex alternation). A variable left unknown stays,
 * and Prometheus says what is wrong with the query.
 */
export function expandVariables(expr: string, vars: QueryVariables, dashboard?: Dashboard): string {
  const builtin: Record<string, string> = {
    __rate_interval: `${vars.rateIntervalSeconds}s`,
    __interval: `${vars.stepSeconds}s`,
    __interval_ms: String(vars.stepSeconds * 1000),
    __range: `${Math.round(vars.rangeSeconds)}s`,
    __range_s: String(Math.round(vars.rangeSeconds)),
    __range_ms: String(Math.round(vars.rangeSeconds * 1000)),
  };
  for (const v of dashboard?.templating.list ?? []) {
    const value = v.current?.value;
    if (Array.isArray(value)) builtin[v.name] = value.length === 1 ? String(value[0]) : `(${value.map(String).join('|')})`;
    else if (value !== undefined) builtin[v.name] = String(value) === '$__all' ? '.*' : String(value);
  }
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (whole, braced: string | undefined, bare: string | undefined) => builtin[(braced ?? bare)!] ?? whole);
}

/** A legend name: `{{label}}` replaced by the series' label; without a format, its label set. */
export function legendName(format: string | undefined, labels: Record<string, string>, expr: string): string {
  if (format && format !== '__auto') return format.replace(/\{\{\s*([\w.]+)\s*\}\}/g, (_, name: string) => labels[name] ?? '');
  const { __name__: name, ...rest } = labels;
  const pairs = Object.entries(rest).map(([k, v]) => `${k}="${v}"`);
  if (pairs.length === 0) return name ?? expr;
  return `${name ?? ''}{${pairs.join(', ')}}`;
}

export interface SeriesData {
  /** The legend name. */
  name: string;
  refId: string;
  /** [unix seconds, value]; non-finite values (NaN from 0/0, ±Inf) are left out, as gaps. */
  points: Array<[number, number]>;
}

export interface PanelData {
  panel: Panel;
  series: SeriesData[];
  /** A query Prometheus refused, one line: the panel shows it instead of a graph. */
  error?: string;
}

export interface DashboardData {
  title: string;
  prometheus: string;
  from: number;
  to: number;
  step: number;
  scrapeInterval: number;
  rateInterval: number;
  panels: PanelData[];
}

export interface QueryDashboardOptions {
  /** Prometheus' base URL, e.g. http://127.0.0.1:9090. */
  prometheus: string;
  /** Unix seconds. */
  from: number;
  to: number;
  /** The data source's scrape interval in seconds (Grafana's "min interval"): 15 in our stack. */
  scrapeInterval: number;
  /** Seconds between points; default `queryStep`. */
  step?: number;
  signal?: AbortSignal;
  /** Override for tests and callers with their own client. */
  fetch?: typeof fetch;
}

interface PromResponse {
  status: 'success' | 'error';
  error?: string;
  data?: { resultType: string; result: Array<{ metric: Record<string, string>; values?: Array<[number, string]> }> };
}

/** Every visible panel's queries over [from, to], from Prometheus' range-query API. */
export async function queryDashboard(dashboard: Dashboard, options: QueryDashboardOptions): Promise<DashboardData> {
  const base = options.prometheus.replace(/\/+$/, '');
  const range = options.to - options.from;
  if (!(range > 0)) throw new CifarError('USAGE', `the time range is empty (from ${options.from} to ${options.to})`);
  const step = options.step ?? queryStep(range, options.scrapeInterval);
  const vars = { stepSeconds: step, rangeSeconds: range, rateIntervalSeconds: rateInterval(step, options.scrapeInterval) };
  const doFetch = options.fetch ?? fetch;

  const run = async (expr: string): Promise<PromResponse> => {
    const params = new URLSearchParams({ query: expr, start: String(options.from), end: String(options.to), step: String(step) });
    let res: Response;
    try {
      res = await doFetch(`${base}/api/v1/query_range`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: params.toString(),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw new CifarError('ABORTED', 'interrupted');
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new CifarError('SERVER_UNREACHABLE', `--prometheus ${options.prometheus}: cannot connect (${cause?.code ?? cause?.message ?? (err as Error).message})`, {
        hint: 'give the URL of a running Prometheus that scrapes cifar serve (e.g. http://127.0.0.1:9090)',
      });
    }
    const text = await res.text();
    let body: PromResponse;
    try {
      body = JSON.parse(text) as PromResponse;
    } catch {
      throw new CifarError('SERVER_INVALID_RESPONSE', `--prometheus ${options.prometheus}: HTTP ${res.status} from ${base}/api/v1/query_range is not Prometheus' JSON`, {
        hint: 'give the base URL of Prometheus itself, without a path',
      });
    }
    if (body.status !== 'success' && body.status !== 'error') {
      throw new CifarError('SERVER_INVALID_RESPONSE', `--prometheus ${options.prometheus}: the answer has no Prometheus status`);
    }
    return body;
  };

  const panels: PanelData[] = [];
  for (const panel of panelsInOrder(dashboard)) {
    const data: PanelData = { panel, series: [] };
    for (const [i, target] of panel.targets.entries()) {
      if (target.hide || !target.expr) continue;
      const expr = expandVariables(target.expr, vars, dashboard);
      const body = await run(expr);
      if (body.status === 'error') {
        data.error = `${target.refId ?? String.fromCharCode(65 + i)}: ${String(body.error ?? 'query failed').split('\n')[0]}`;
        continue;
      }
      for (const r of body.data?.result ?? []) {
        const points = (r.values ?? []).map(([t, v]) => [Number(t), Number(v)] as [number, number]).filter(([, v]) => Number.isFinite(v));
        data.series.push({ name: legendName(target.legendFormat, r.metric, expr), refId: target.refId ?? String.fromCharCode(65 + i), points });
      }
    }
    panels.push(data);
  }
  return { title: dashboard.title, prometheus: options.prometheus, from: options.from, to: options.to, step, scrapeInterval: options.scrapeInterval, rateInterval: vars.rateIntervalSeconds, panels };
}
