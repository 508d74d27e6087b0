import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/fixtures.js';
import { saveTinyModel, startServe, stopProcess, type ServeProcess } from '../helpers/serve.js';
import { eventually, form, freePort, png, startRedis, type TestRedis } from '../serve/helpers.js';
import { loadYaml, repoPath, requireTool } from '../deploy/helpers.js';
import { dashboardExprs, exposedNames, metricNames, ruleExprs, SYNTHETIC_METRICS } from './promql.js';

/**
 * A real `cifar serve` (with Redis, so redis_up exists) and, for the last test, a real Prometheus
 * scraping it: the names in our rules and dashboard are checked against what the server
 * actually exports, and the expressions against what Prometheus actually computes.
 */
let dir: string;
let cleanup: () => Promise<void>;
let redis: TestRedis;
let api: ServeProcess | undefined;
let apiUrl: string;
let apiPort: number;

async function predict(n: number): Promise<void> {
  const res = await fetch(`${apiUrl}/predict`, { method: 'POST', body: form('file', await png(n)) });
  expect(res.status, await res.text()).toBe(200);
}

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('cifar-monitoring-'));
  await saveTinyModel(join(dir, 'model'));
  redis = await startRedis();
  api = await startServe(['--model', join(dir, 'model'), '--workers', '1', '--backend', 'cpu', '--redis-url', redis.url, '--log-level', 'warn']);
  apiPort = api.port;
  apiUrl = api.url;
}, 40_000);

afterAll(async () => {
  await api?.stop(5000);
  await redis?.close();
  await cleanup?.();
});

const dashboard = JSON.parse(readFileSync(repoPath('monitoring/grafana/dashboards/cifar-api.json'), 'utf8'));

describe('monitoring against a running cifar serve', () => {
  it('every metric the alert rules and the dashboard use is exported on /metrics', async () => {
    // Labelled series (per route, per class) exist only once something was counted.
    await predict(101);
    const exported = exposedNames(await (await fetch(`${apiUrl}/metrics`)).text());
    expect(exported).toContain('redis_up');
    const rules = ruleExprs(await loadYaml('monitoring/alert_rules.yml'));
    const used = [...rules.map((r) => ({ where: `alert ${r.name}`, expr: r.expr })), ...dashboardExprs(dashboard).map((expr) => ({ where: 'dashboard', expr }))];
    const missing = used.flatMap(({ where, expr }) => metricNames(expr).filter((m) => !exported.has(m) && !SYNTHETIC_METRICS.has(m)).map((m) => `${m} (${where})`));
    expect(missing).toEqual([]);
  });

  it('a real Prometheus scrapes it: counters, the dashboard request rate, and every rule evaluate', async () => {
    requireTool('prometheus', 'prometheus');
    const promPort = await freePort();
    const prom = `http://127.0.0.1:${promPort}`;
    // JSON is YAML: a 1 s scrape and rule evaluation, the real rule file, the compose job name.
    const config = {
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: [repoPath('monitoring/alert_rules.yml')],
      scrape_configs: [{ job_name: 'cifar-api', static_configs: [{ targets: [`127.0.0.1:${apiPort}`] }] }],
    };
    await writeFile(join(dir, 'prometheus.yml'), JSON.stringify(config));
    let promLog = '';
    const child = spawn(
      'prometheus',
      [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr!.on('data', (d) => (promLog += d));
    const query = async (q: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> => {
      const body = (await (await fetch(`${prom}/api/v1/query?query=${encodeURIComponent(q)}`)).json()) as any;
      if (body.status !== 'success') throw new Error(`${q}: ${body.error}`);
      return body.data.result;
    };
    const scalar = async (q: string) => Number((await query(q))[0]?.value[1] ?? NaN);
    try {
      await eventually(async () => (await scalar('up{job="cifar-api"}').catch(() => NaN)) === 1, 15_000).catch(() => {
        throw new Error(`Prometheus never scraped cifar serve:\n${promLog}`);
      });
      // Counters as first scraped; the traffic below happens after, so rate() sees it rise.
      const hits0 = await scalar('cache_hits_total{job="cifar-api"}');
      const ok0 = (await scalar('sum(http_requests_total{job="cifar-api", route="/predict", status="200"})')) || 0;
      // One image five times: one miss, then four hits from Redis.
      for (let i = 0; i < 5; i++) await predict(202);

      await eventually(async () => (await scalar('cache_hits_total{job="cifar-api"}')) === hits0 + 4, 15_000);
      expect(await scalar('sum(http_requests_total{job="cifar-api", route="/predict", status="200"})')).toBe(ok0 + 5);
      // The dashboard's own request-rate panel, with Grafana's interval filled in.
      const rateExpr = dashboardExprs(dashboard).find((e) => e.startsWith('sum by (route, status) (rate(http_requests_total'))!;
      await eventually(async () => {
        const series = await query(rateExpr.replaceAll('$__rate_interval', '1m'));
        return Number(series.find((s) => s.metric.route === '/predict' && s.metric.status === '200')?.value[1] ?? 0) > 0;
      }, 15_000);

      // Every dashboard query is valid PromQL to this Prometheus (query() throws otherwise).
      for (const e of dashboardExprs(dashboard)) await query(e.replaceAll('$__rate_interval', '1m'));
      // `cifar dashboard` draws every panel from this Prometheus: each query answers without error,
      // and the stats show the healthy server as it is.
      const picture = join(dir, 'dashboard.png');
      const drawn = await runCli(['dashboard', '--prometheus', prom, '--since', '1m', '--scrape-interval', '1s', '--out', picture, '--json']);
      expect(drawn.code, drawn.stderr).toBe(0);
      const summary = JSON.parse(drawn.stdout) as { panels: Array<{ title: string; error?: string; series: Array<{ name: string; points: number; last: number | null; max: number | null }> }> };
      expect(summary.panels.filter((p) => p.error)).toEqual([]);
      expect(summary.panels.map((p) => p.title).sort()).toEqual(dashboard.panels.map((p: { title: string }) => p.title).sort());
      const panelOf = (title: string) => summary.panels.find((p) => p.title === title)!;
      for (const title of ['API targets up', 'Model loaded', 'Redis up']) expect(panelOf(title).series.map((s) => s.last), title).toEqual([1]);
      // No 5xx: 0%, not "No data" (the numerator is `or vector(0)`).
      expect(panelOf('5xx ratio').series.map((s) => [s.points > 0, s.max])).toEqual([[true, 0]]);
      expect(panelOf('Request rate by route and status').series.map((s) => s.name)).toContain('/predict 200');
      expect(panelOf('Predictions by class').series.length).toBeGreaterThan(0);
      expect(await sharp(picture).metadata()).toMatchObject({ format: 'png', width: 1800 });
      // A query Prometheus refuses is shown in its panel and named on stdout; the others are drawn.
      const mixed = { title: 'mixed', panels: [
        { type: 'timeseries', title: 'Up', gridPos: { x: 0, y: 0, w: 12, h: 8 }, targets: [{ refId: 'A', expr: 'up{job="cifar-api"}' }] },
        { type: 'timeseries', title: 'Broken', gridPos: { x: 12, y: 0, w: 12, h: 8 }, targets: [{ refId: 'A', expr: 'rate(up[$__rate_interval]' }] },
      ] };
      await writeFile(join(dir, 'mixed.json'), JSON.stringify(mixed));
      const partly = await runCli(['dashboard', '--prometheus', prom, '--dashboard', join(dir, 'mixed.json'), '--since', '1m', '--scrape-interval', '1s', '--out', join(dir, 'mixed.svg')]);
      expect(partly.code, partly.stderr).toBe(0);
      expect(partly.stdout).toMatch(/^.*mixed\.svg: 2 panels, 1 series, .*\n  Broken: A: .*parse error.*\n$/);
      const svg = readFileSync(join(dir, 'mixed.svg'), 'utf8');
      expect(svg).toContain('class="panel-error">A: ');
      expect(svg.match(/class="series"/g)).toHaveLength(1);

      // Every alert rule was evaluated, without error, and none fires on a healthy server.
      let rules: any[] = [];
      await eventually(async () => {
        const body = (await (await fetch(`${prom}/api/v1/rules`)).json()) as any;
        rules = body.data.groups.flatMap((g: any) => g.rules);
        return rules.length > 0 && rules.every((r) => !r.lastEvaluation.startsWith('0001'));
      }, 10_000);
      expect(rules.map((r) => [r.name, r.health, r.lastError ?? ''])).toEqual(rules.map((r) => [r.name, 'ok', '']));
      expect(rules.filter((r) => r.state !== 'inactive').map((r) => r.name)).toEqual([]);
    } finally {
      await stopProcess(child, 5000);
    }
  }, 60_000);
});
