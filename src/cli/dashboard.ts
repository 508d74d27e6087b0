import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import sharp from 'sharp';
import { CifarError } from '../errors.js';
import { writeFileAtomic } from '../files.js';
import { loadDashboard, queryDashboard, type DashboardData } from '../monitoring/dashboard.js';
import { dashboardSvg, extent } from '../report/dashboard.js';
import { parseDuration } from '../train/plan.js';
import { action, durationArg } from './run.js';

/** The Grafana dashboard shipped in monitoring/, wherever cifar is installed. */
export const BUNDLED_DASHBOARD = fileURLToPath(new URL('../../monitoring/grafana/dashboards/cifar-api.json', import.meta.url));

/** Prometheus refuses a range query of more points a series than this. */
const PROMETHEUS_MAX_POINTS = 11_000;

interface DashboardOptions {
  prometheus: string;
  dashboard: string;
  since?: string;
  from?: string;
  to?: string;
  step?: string;
  scrapeInterval: string;
  out: string;
  json?: boolean;
}

/** A point in time for --from/--to: `now`, `now-15m`, unix seconds, or an ISO 8601 date. */
export function parseTime(flag: string, value: string, now: number): number {
  const v = value.trim();
  if (v === 'now') return now;
  const rel = /^now-(.+)$/.exec(v);
  if (rel) {
    const seconds = parseDuration(rel[1]!);
    if (seconds !== undefined) return now - seconds;
  } else if (/^\d+(\.\d+)?$/.test(v)) {
    return Number(v);
  } else if (/^\d{4}-\d{2}-\d{2}/.test(v)) {
    const t = Date.parse(v);
    if (Number.isFinite(t)) return t / 1000;
  }
  throw new CifarError('USAGE', `${flag} ${value}: expected now, now-DURATION (now-15m), unix seconds or an ISO 8601 time`);
}

const seconds = (flag: string, value: string) => durationArg(flag, value, '15s, 5m or 1h30m');

/** The --json summary: each panel's series with their last, lowest and highest values. */
export function dashboardJson(data: DashboardData, out: string): string {
  const panels = data.panels.map(({ panel, series, error }) => ({
    title: panel.title,
    type: panel.type,
    ...(error ? { error } : {}),
    series: series.map((s) => {
      const [min, max] = extent(s.points.map(([, v]) => v));
      const empty = s.points.length === 0;
      return { name: s.name, points: s.points.length, last: empty ? null : s.points[s.points.length - 1]![1], min: empty ? null : min, max: empty ? null : max };
    }),
  }));
  const { title, prometheus, from, to, step, scrapeInterval, rateInterval } = data;
  return JSON.stringify({ out, title, prometheus, from, to, step, scrapeInterval, rateInterval, panels }) + '\n';
}

export function dashboardCommand(): Command {
  return new Command('dashboard')
    .description('draw the Grafana dashboard as a picture from Prometheus, without Grafana: its own queries, panels and layout')
    .option('--prometheus <url>', 'Prometheus base URL (env PROMETHEUS_URL)', process.env.PROMETHEUS_URL ?? 'http://127.0.0.1:9090')
    .option('--dashboard <file>', 'Grafana dashboard JSON (default: the bundled monitoring/grafana/dashboards/cifar-api.json)', BUNDLED_DASHBOARD)
    .option('--since <duration>', 'the last DURATION up to now (default 15m); or give --from and --to')
    .option('--from <time>', 'start: now-DURATION, unix seconds or ISO 8601')
    .option('--to <time>', 'end (default now)')
    .option('--step <duration>', 'seconds between points (default: about 400 points, at least the scrape interval)')
    .option('--scrape-interval <duration>', "Prometheus' scrape interval, as Grafana's data source knows it ($__rate_interval is 4 of them)", '15s')
    .option('--out <file>', 'the picture: .png or .svg', 'dashboard.png')
    .option('--json', 'print one JSON object: the time range and each panel\'s series (last, min, max)')
    .action(
      action(async ({ signal }, opts: DashboardOptions) => {
        if (!/\.(png|svg)$/i.test(opts.out)) throw new CifarError('USAGE', `--out ${opts.out}: use a .png or .svg file name`);
        if (opts.since !== undefined && (opts.from !== undefined || opts.to !== undefined)) throw new CifarError('USAGE', '--since is a range of its own: give it or --from/--to, not both');
        if (!/^https?:\/\/[^/]/.test(opts.prometheus)) throw new CifarError('USAGE', `--prometheus ${opts.prometheus}: expected an http(s) URL`);
        const now = Date.now() / 1000;
        const to = opts.to !== undefined ? parseTime('--to', opts.to, now) : now;
        const from = opts.from !== undefined ? parseTime('--from', opts.from, now) : to - seconds('--since', opts.since ?? '15m');
        if (from >= to) throw new CifarError('USAGE', `--from must come before --to (${new Date(from * 1000).toISOString()} is not before ${new Date(to * 1000).toISOString()})`);
        const scrapeInterval = seconds('--scrape-interval', opts.scrapeInterval);
        const step = opts.step !== undefined ? seconds('--step', opts.step) : undefined;
        if (step !== undefined && (to - from) / step > PROMETHEUS_MAX_POINTS) {
          throw new CifarError('USAGE', `--step ${opts.step}: ${Math.ceil((to - from) / step).toLocaleString('en')} points a series over this range, and Prometheus answers at most ${PROMETHEUS_MAX_POINTS.toLocaleString('en')}: use --step ${Math.ceil((to - from) / PROMETHEUS_MAX_POINTS)}s or more`);
        }
        const dashboard = await loadDashboard(opts.dashboard);
        const data = await queryDashboard(dashboard, {
          prometheus: opts.prometheus,
          from: Math.floor(from),
          to: Math.ceil(to),
          scrapeInterval,
          ...(step !== undefined ? { step } : {}),
          signal,
        });
        const svg = dashboardSvg(data);
        await writeFileAtomic(opts.out, /\.svg$/i.test(opts.out) ? svg : await sharp(Buffer.from(svg)).png().toBuffer(), `--out ${opts.out}`);
        if (opts.json) {
          process.stdout.write(dashboardJson(data, opts.out));
        } else {
          const series = data.panels.reduce((n, p) => n + p.series.length, 0);
          const failed = data.panels.filter((p) => p.error);
          process.stdout.write(`${opts.out}: ${data.panels.length} panels, ${series} series, ${new Date(data.from * 1000).toISOString()} to ${new Date(data.to * 1000).toISOString()} every ${data.step} s\n`);
          for (const p of failed) process.stdout.write(`  ${p.panel.title}: ${p.error}\n`);
        }
      }),
    );
}
