import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadYaml, repoPath } from '../deploy/helpers.js';
import { dashboardExprs, metricNames, ruleExprs } from './promql.js';

const dashboard = JSON.parse(readFileSync(repoPath('monitoring/grafana/dashboards/cifar-api.json'), 'utf8'));

describe('metricNames (the PromQL scan the name checks rely on)', () => {
  it.each([
    ['up{job="cifar-api"} == 0', ['up']],
    ['histogram_quantile(0.95, sum by (instance, le) (rate(http_request_duration_seconds_bucket{route=~"/predict.*"}[5m]))) > 1', ['http_request_duration_seconds_bucket']],
    ['sum(rate(a_total[1h] offset 10m)) / (sum(rate(b_total{x="rate(c)"}[$__rate_interval])) + 1e3)', ['a_total', 'b_total']],
    ['x / on (instance) group_left (le) y unless z', ['x', 'y', 'z']],
  ])('%s', (expr, names) => {
    expect(metricNames(expr)).toEqual(names);
  });
});

describe('Grafana provisioning and dashboard', () => {
  const panels: any[] = dashboard.panels;

  it('draws every panel the issue lists, from the metrics behind them', () => {
    const used = new Set(dashboardExprs(dashboard).flatMap(metricNames));
    for (const m of [
      'http_requests_total', // request rate by route and status, error ratio
      'http_request_duration_seconds_bucket', // latency p50/p95/p99
      'cache_hits_total',
      'cache_misses_total', // cache hit ratio
      'inference_batch_size_bucket',
      'inference_duration_seconds_bucket',
      'inference_queue_depth',
      'model_predictions_total', // predictions by class
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'redis_up',
    ]) {
      expect(used, m).toContain(m);
    }
    const exprs = dashboardExprs(dashboard).join('\n');
    for (const q of ['0.5', '0.95', '0.99']) expect(exprs).toContain(`histogram_quantile(${q}, sum by (le) (rate(http_request_duration_seconds_bucket`);
    expect(exprs).toContain('sum by (route, status) (rate(http_requests_total');
    expect(exprs).toContain('sum by (class_name) (rate(model_predictions_total');
  });

  it('has unique panel ids, titles and a layout inside the 24-column grid without overlaps', () => {
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    expect(new Set(panels.map((p) => p.title)).size).toBe(panels.length);
    const cells = new Set<string>();
    for (const p of panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) for (let j = y; j < y + h; j++) {
        expect(cells.has(`${i},${j}`), `${p.title} overlaps at ${i},${j}`).toBe(false);
        cells.add(`${i},${j}`);
      }
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      expect(new Set(p.targets.map((t: any) => t.refId)).size, p.title).toBe(p.targets.length);
    }
  });

  it('uses the provisioned data source by uid, which points at the compose Prometheus', async () => {
    const ds = (await loadYaml('monitoring/grafana/provisioning/datasources/prometheus.yml')).datasources;
    expect(ds).toHaveLength(1);
    expect(ds[0]).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090' });
    for (const p of panels) {
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: ds[0].uid });
      for (const t of p.targets) expect(t.datasource, p.title).toEqual({ type: 'prometheus', uid: ds[0].uid });
    }
  });

  it('is loaded by the dashboard provider from the folder docker-compose mounts', async () => {
    const providers = (await loadYaml('monitoring/grafana/provisioning/dashboards/provider.yml')).providers;
    const compose = await loadYaml('docker-compose.yml');
    const mounts: string[] = compose.services.grafana.volumes;
    expect(mounts).toContain(`./monitoring/grafana/dashboards:${providers[0].options.path}:ro`);
    expect(mounts).toContain('./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro');
    expect(compose.services.grafana.environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH).toBe(`${providers[0].options.path}/cifar-api.json`);
  });

  it('selects the same scrape job as the alert rules', async () => {
    const rules = await loadYaml('monitoring/alert_rules.yml');
    for (const expr of [...dashboardExprs(dashboard), ...ruleExprs(rules).map((r) => r.expr)]) {
      // Every selector of a cifar metric names the job: redis_exporter has a redis_up of its own.
      for (const m of expr.matchAll(/([a-z_:]+)\{([^}]*)\}/g)) expect(m[2], `${m[1]} in ${expr}`).toContain('job="cifar-api"');
    }
  });
});
