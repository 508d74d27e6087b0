/**
 * The metric names a PromQL expression selects: enough of PromQL to find every name in our
 * rules and dashboard (selectors, functions, aggregations with by/without, binary operators,
 * offsets, Grafana's $variables), not a full parser.
 */
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan', 'atan2']);

export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ') // string literals
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // range and subquery durations
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // label lists
    .replace(/\boffset\s+-?[0-9a-z]+/g, ' ')
    .replace(/\$\{[^}]*\}|\$\w+/g, ' ') // Grafana variables
    .replace(/(?<![\w:])(?:0x[0-9a-f]+|\d+(?:\.\d*)?(?:e[+-]?\d+)?)/gi, ' '); // numbers
  const names = new Set<string>();
  for (const m of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*(?!\s*\()/g)) {
    // The regex backtracks into a function name's prefix ("rat" of "rate("): skip partial words.
    const end = m.index + m[0].length;
    if (/[a-zA-Z0-9_:]/.test(stripped[end] ?? '')) continue;
    if (!KEYWORDS.has(m[0].toLowerCase())) names.add(m[0]);
  }
  return [...names].sort();
}

/** Sample names in a Prometheus text exposition (histograms appear as _bucket, _sum, _count). */
export function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (m) names.add(m[1]!);
  }
  return names;
}

/** Every PromQL expression of a Grafana dashboard (panel targets, rows' nested panels, variables). */
export function dashboardExprs(dashboard: any): string[] {
  const exprs: string[] = [];
  const visit = (panels: any[] | undefined) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) if (typeof t.expr === 'string') exprs.push(t.expr);
      visit(p.panels);
    }
  };
  visit(dashboard.panels);
  for (const v of dashboard.templating?.list ?? []) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    if (v.type === 'query' && typeof q === 'string') exprs.push(q);
  }
  return exprs;
}

/** Every `expr` of a Prometheus rules file, with its alert or record name. */
export function ruleExprs(rules: any): Array<{ name: string; expr: string }> {
  return (rules.groups as any[]).flatMap((g) => (g.rules as any[]).map((r) => ({ name: String(r.alert ?? r.record), expr: String(r.expr) })));
}

/** Metrics that Prometheus makes up itself rather than scraping. */
export const SYNTHETIC_METRICS = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);
