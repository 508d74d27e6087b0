import { describe, expect, it } from 'vitest';
import { loadYaml, requireTool, runTool } from '../deploy/helpers.js';

// promtool comes with Debian's `prometheus` package, which .ci/run installs: missing is a failure.
describe('Prometheus config and alert rules (promtool)', () => {
  it('promtool check config accepts prometheus.yml and the rule file it loads', () => {
    requireTool('promtool', 'prometheus');
    const res = runTool('promtool', ['check', 'config', 'monitoring/prometheus.yml']);
    expect(res.code, res.output).toBe(0);
    expect(res.output).toMatch(/SUCCESS: 1 rule files found/);
  });

  it('promtool check rules accepts alert_rules.yml', () => {
    requireTool('promtool', 'prometheus');
    const res = runTool('promtool', ['check', 'rules', 'monitoring/alert_rules.yml']);
    expect(res.code, res.output).toBe(0);
  });

  it('promtool test rules: every alert fires on its failure and stays silent on healthy series', () => {
    requireTool('promtool', 'prometheus');
    const res = runTool('promtool', ['test', 'rules', 'monitoring/tests/alert_rules_test.yml']);
    expect(res.code, res.output).toBe(0);
    expect(res.output).toMatch(/SUCCESS/);
  });

  it('has the alerts the issue asks for, each with a severity, a summary and a firing unit test', async () => {
    const rules = await loadYaml('monitoring/alert_rules.yml');
    const alerts: any[] = rules.groups.flatMap((g: any) => g.rules);
    expect(alerts.map((a) => a.alert).sort()).toEqual(
      [
        'CifarApiDown',
        'CifarHighErrorRatio',
        'CifarHighLatencyP95',
        'CifarCacheHitRatioCollapse',
        'CifarRedisDown',
        'CifarModelNotLoaded',
        'CifarInferenceQueueSaturated',
        'CifarRequestsRejected',
      ].sort(),
    );
    for (const a of alerts) {
      expect(['critical', 'warning'], a.alert).toContain(a.labels?.severity);
      expect(a.annotations?.summary, a.alert).toBeTruthy();
    }
    const byName = Object.fromEntries(alerts.map((a) => [a.alert, String(a.expr)]));
    // The shapes the issue pins down (and that the replaced service got wrong).
    expect(byName.CifarRedisDown).toMatch(/^redis_up\{[^}]*\} == 0$/);
    expect(byName.CifarHighLatencyP95).toMatch(/histogram_quantile\(0\.95,[\s\S]*rate\(http_request_duration_seconds_bucket\{[^}]*\}\[5m\]\)/);
    expect(byName.CifarInferenceQueueSaturated).toMatch(/inference_queue_depth\{[^}]*\} \/ inference_queue_capacity\{[^}]*\} > 0\.8/);
    expect(byName.CifarRequestsRejected).toMatch(/rate\(inference_rejected_total\{[^}]*\}\[5m\]\)\) > 0/);

    // Each alert is expected to fire somewhere in the unit tests (not only expected silent).
    const tests = await loadYaml('monitoring/tests/alert_rules_test.yml');
    const fired = new Set<string>();
    for (const t of tests.tests) for (const c of t.alert_rule_test ?? []) if ((c.exp_alerts ?? []).length > 0) fired.add(c.alertname);
    expect([...fired].sort()).toEqual(alerts.map((a) => a.alert).sort());
  });
});
