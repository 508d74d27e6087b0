import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { expandVariables, legendName, parseDashboard, queryStep, rateInterval, type DashboardData, type Panel } from '../../src/monitoring/dashboard.js';
import { dashboardSvg, formatValue, mapValue, niceStep, seriesConfig, thresholdColour, timeTicks, yTicks } from '../../src/report/dashboard.js';

const bundled = parseDashboard(JSON.parse(readFileSync(new URL('../../monitoring/grafana/dashboards/cifar-api.json', import.meta.url), 'utf8')), 'cifar-api.json');
const panel = (title: string): Panel => bundled.panels.find((p) => p.title === title)!;

describe('Grafana units, as its panels show them', () => {
  it.each([
    [2810, 'reqps', '2.81K req/s'],
    [0.5, 'reqps', '0.5 req/s'],
    [0.0123, 'percentunit', '1.23%'],
    [1, 'percentunit', '100%'],
    [0.000042, 's', '42 µs'],
    [0.0485, 's', '48.5 ms'],
    [2.5, 's', '2.5 s'],
    [90, 's', '1.5 min'],
    [450 * 1024 * 1024, 'bytes', '450 MiB'],
    [1536, 'bytes', '1.5 KiB'],
    [7.5, 'short', '7.5'],
    [12500, 'short', '12.5 K'],
    [3, undefined, '3'],
    [3, 'widgets', '3 widgets'],
  ])('%s in %s is %s', (v, unit, shown) => {
    expect(formatValue(v, unit)).toBe(shown);
  });
});

describe('field config', () => {
  it('applies overrides by name (the cache panel puts errors / s on a right axis in its own unit)', () => {
    const cache = panel('Cache hit ratio and cache errors');
    expect(seriesConfig(cache, { name: 'hit ratio', refId: 'A' })).toMatchObject({ unit: 'percentunit' });
    const errors = seriesConfig(cache, { name: 'errors / s', refId: 'B' });
    expect(errors.unit).toBe('short');
    expect(errors.custom?.axisPlacement).toBe('right');
  });

  it('colours by thresholds, with Grafana\'s default (red from 80) when a panel sets none', () => {
    expect(thresholdColour(79, {})).toBe('#73bf69');
    expect(thresholdColour(80, {})).toBe('#f2495c');
    const errors = panel('5xx ratio').fieldConfig.defaults;
    expect([0, 0.02, 0.05].map((v) => thresholdColour(v, errors))).toEqual(['#73bf69', '#ff9830', '#f2495c']);
  });

  it('keeps the bundled stats out of the default thresholds: a busy server is not red, no target up is', () => {
    expect(thresholdColour(5000, panel('Requests / s').fieldConfig.defaults)).not.toBe('#f2495c');
    expect(thresholdColour(0, panel('API targets up').fieldConfig.defaults)).toBe('#f2495c');
    expect(thresholdColour(1, panel('API targets up').fieldConfig.defaults)).toBe('#73bf69');
  });

  it('maps values and ranges to text and colour', () => {
    const loaded = panel('Model loaded').fieldConfig.defaults;
    expect(mapValue(1, loaded)).toEqual({ text: 'UP', color: 'green' });
    expect(mapValue(0, loaded)).toEqual({ text: 'DOWN', color: 'red' });
    expect(mapValue(0.5, loaded)).toBeUndefined();
    expect(mapValue(7, { mappings: [{ type: 'range', options: { from: 5, to: 10, result: { text: 'busy' } } }] })).toEqual({ text: 'busy' });
    expect(mapValue(null, { mappings: [{ type: 'special', options: { match: 'null', result: { text: 'none' } } }] })).toEqual({ text: 'none' });
  });
});

describe('axes', () => {
  it('steps by 1, 2 or 5 times a power of ten, the nearest to a quarter of the span', () => {
    expect([niceStep(10), niceStep(7), niceStep(0.9), niceStep(2500), niceStep(40)]).toEqual([2, 2, 0.2, 500, 10]);
  });

  it('ticks cover the data from zero, bytes in powers of 1024', () => {
    expect(yTicks(0, 9, 's')).toEqual([0, 2, 4, 6, 8, 10]);
    expect(yTicks(0, 0, undefined)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    const mib = 1024 * 1024;
    expect(yTicks(0, 450 * mib, 'bytes')).toEqual([0, 100, 200, 300, 400, 500].map((n) => n * mib));
  });

  it('puts time ticks on round times, no closer than the spacing allows', () => {
    const ticks = timeTicks(1000, 1000 + 600, 900, 90);
    expect(ticks.every((t) => t % 60 === 0)).toBe(true);
    expect(ticks.length).toBeLessThanOrEqual(10);
    expect(ticks[0]).toBe(1020);
  });
});

describe('queries', () => {
  it('has Grafana\'s $__rate_interval: four scrapes, or the step plus one', () => {
    expect(rateInterval(15, 15)).toBe(60);
    expect(rateInterval(120, 15)).toBe(135);
    expect(queryStep(3600, 15)).toBe(15);
    expect(queryStep(86400, 15)).toBe(216);
  });

  it('expands Grafana\'s and the dashboard\'s variables, leaving unknown ones to Prometheus', () => {
    const vars = { stepSeconds: 5, rangeSeconds: 900, rateIntervalSeconds: 60 };
    const dash = parseDashboard({ panels: [], templating: { list: [{ name: 'job', current: { value: 'cifar-api' } }, { name: 'inst', current: { value: ['a', 'b'] } }] } }, 't');
    expect(expandVariables('rate(x{job="$job", i=~"${inst}"}[$__rate_interval]) [${__interval}] $__range $nope', vars, dash)).toBe(
      'rate(x{job="cifar-api", i=~"(a|b)"}[60s]) [5s] 900s $nope',
    );
  });

  it('names series by the legend format, or by their labels', () => {
    expect(legendName('{{route}} {{status}}', { route: '/predict', status: '200' }, 'e')).toBe('/predict 200');
    expect(legendName('', { __name__: 'up', job: 'cifar-api' }, 'e')).toBe('up{job="cifar-api"}');
    expect(legendName(undefined, {}, 'sum(up)')).toBe('sum(up)');
  });

  it('refuses JSON that is not a dashboard with one line, and unwraps the API\'s {dashboard: …}', () => {
    expect(() => parseDashboard({ panels: [{ type: 'stat' }] }, 'x.json')).toThrow(/^x\.json: not a Grafana dashboard \(panels\.0\.gridPos: /);
    expect(parseDashboard({ dashboard: { title: 'T', panels: [] } }, 'x').title).toBe('T');
  });
});

describe('the picture', () => {
  const from = 1_700_000_000;
  const to = from + 300;
  const ramp = (f: (i: number) => number): Array<[number, number]> => Array.from({ length: 61 }, (_, i) => [from + i * 5, f(i)]);
  const data = (panels: DashboardData['panels']): DashboardData => ({ title: 'T & <x>', prometheus: 'http://p', from, to, step: 5, scrapeInterval: 5, rateInterval: 20, panels });

  it('draws a stat\'s mapped value on its colour, the no-value text, and a query error, each in its panel', () => {
    const svg = dashboardSvg(
      data([
        { panel: panel('Model loaded'), series: [{ name: 'm', refId: 'A', points: ramp(() => 1) }] },
        { panel: panel('Redis up'), series: [] },
        { panel: panel('Requests / s'), series: [], error: 'A: parse error: unexpected "}"' },
      ]),
    );
    expect(svg).toMatch(/<rect [^>]*fill="#73bf69"[^>]*\/><text[^>]*>Model loaded<\/text>/);
    expect(svg).toMatch(/class="stat-value">UP<\/text>/);
    expect(svg).toMatch(/class="stat-value">not configured<\/text>/);
    expect(svg).toContain('class="panel-error">A: parse error: unexpected &quot;}&quot;</text>');
    expect(svg).toContain('T &amp; &lt;x&gt;');
  });

  it('stacks a stacked panel\'s series: the top line is their sum', () => {
    const stacked = panel('Predictions by class');
    const svg = dashboardSvg(
      data([
        {
          panel: stacked,
          series: [
            { name: 'cat', refId: 'A', points: ramp(() => 30) },
            { name: 'dog', refId: 'A', points: ramp(() => 50) },
          ],
        },
      ]),
    );
    const lines = [...svg.matchAll(/<path d="M[\d.]+,([\d.]+)[^"]*" fill="none"[^>]*class="series"/g)].map((m) => Number(m[1]));
    expect(lines).toHaveLength(2);
    // The axis starts at 0: the first line at 30, the second at 30 + 50, not 50.
    const [cat, dog] = lines as [number, number];
    const plotBottom = Number(/<line x1="[\d.]+" x2="[\d.]+" y1="([\d.]+)"/.exec(svg)![1]);
    expect((plotBottom - dog) / (plotBottom - cat)).toBeCloseTo(80 / 30, 1);
    expect(svg).toContain('class="legend">cat</text>');
  });

  it('says No data for a time series without points, and breaks lines where samples are missing', () => {
    const gappy = ramp((i) => i).filter(([t]) => t < from + 100 || t > from + 200);
    const svg = dashboardSvg(
      data([
        { panel: panel('Process CPU'), series: [] },
        { panel: panel('Event loop lag p99'), series: [{ name: 'lag', refId: 'A', points: gappy }] },
      ]),
    );
    expect(svg).toContain('class="no-data">No data</text>');
    expect(svg.match(/class="series"/g)).toHaveLength(2);
  });

  it('lays the bundled dashboard out on the 24-column grid: 1,800 px wide, every panel inside', () => {
    const svg = dashboardSvg(data(bundled.panels.map((p) => ({ panel: p, series: [] }))));
    expect(svg).toMatch(/^<svg [^>]*width="1800" height="(\d+)"/);
    const height = Number(/height="(\d+)"/.exec(svg)![1]);
    const lowest = Math.max(...bundled.panels.map((p) => p.gridPos.y + p.gridPos.h));
    expect(height).toBe(56 + lowest * 38 + 8);
    for (const p of bundled.panels) expect(svg, p.title).toContain(`>${p.title.replace(/&/g, '&amp;')}</text>`);
  });
});
