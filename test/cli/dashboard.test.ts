import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseTime } from '../../src/cli/dashboard.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/fixtures.js';
import { startFileServer } from '../helpers/server.js';
import { freePort } from '../serve/helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(() => cleanup());

/** (The drawing itself, against a real Prometheus, is in test/monitoring/live.test.ts.) */
describe('cifar dashboard (CLI)', () => {
  it('exits 2 with one line on usage errors, before asking Prometheus anything', async () => {
    const cases: Array<[string[], string]> = [
      [['--out', 'x.jpg'], 'error: --out x.jpg: use a .png or .svg file name'],
      [['--since', 'soon'], 'error: --since soon: expected a duration such as 15s, 5m or 1h30m'],
      [['--since', '5m', '--from', 'now-1h'], 'error: --since is a range of its own: give it or --from/--to, not both'],
      [['--from', 'yesterday'], 'error: --from yesterday: expected now, now-DURATION (now-15m), unix seconds or an ISO 8601 time'],
      [['--from', 'now', '--to', 'now-5m'], ''],
      [['--prometheus', 'localhost:9090'], 'error: --prometheus localhost:9090: expected an http(s) URL'],
      [['--since', '24h', '--step', '1s'], "error: --step 1s: 86,400 points a series over this range, and Prometheus answers at most 11,000: use --step 8s or more"],
    ];
    for (const [args, line] of cases) {
      const res = await runCli(['dashboard', '--out', join(dir, 'd.png'), ...args]);
      expect(res.code, args.join(' ')).toBe(2);
      expect(res.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      if (line) expect(res.stderr.trim()).toBe(line);
      else expect(res.stderr).toMatch(/^error: --from must come before --to/);
    }
  });

  it('names a Prometheus that is not there, or a server that is not Prometheus, in one line (exit 2), writing nothing', async () => {
    const port = await freePort();
    const gone = await runCli(['dashboard', '--prometheus', `http://127.0.0.1:${port}`, '--out', join(dir, 'd.png')]);
    expect(gone.code).toBe(2);
    expect(gone.stderr.trim()).toMatch(new RegExp(`^error: --prometheus http://127\\.0\\.0\\.1:${port}: cannot connect \\(ECONNREFUSED\\) — give the URL of a running Prometheus`));
    const web = await startFileServer({});
    try {
      const other = await runCli(['dashboard', '--prometheus', web.url, '--out', join(dir, 'd.png')]);
      expect(other.code).toBe(2);
      expect(other.stderr.trim()).toMatch(/^error: --prometheus .*: HTTP 404 from .*\/api\/v1\/query_range is not Prometheus' JSON — give the base URL/);
    } finally {
      await web.close();
    }
    const { readdir } = await import('node:fs/promises');
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses a file that is not a dashboard with one line (exit 2)', async () => {
    await writeFile(join(dir, 'not.json'), JSON.stringify({ title: 'x', panels: [{ type: 'stat', title: 'no grid' }] }));
    const res = await runCli(['dashboard', '--dashboard', join(dir, 'not.json'), '--out', join(dir, 'd.png')]);
    expect(res.code).toBe(2);
    expect(res.stderr.trim()).toBe(`error: ${join(dir, 'not.json')}: not a Grafana dashboard (panels.0.gridPos: Invalid input: expected object, received undefined)`);
  });

  it('reads times as now, now-DURATION, unix seconds or ISO 8601', () => {
    const now = 1_800_000_000;
    expect(parseTime('--from', 'now', now)).toBe(now);
    expect(parseTime('--from', 'now-1h30m', now)).toBe(now - 5400);
    expect(parseTime('--from', '1799990000', now)).toBe(1_799_990_000);
    expect(parseTime('--from', '2027-01-15T10:00:00Z', now)).toBe(Date.parse('2027-01-15T10:00:00Z') / 1000);
    expect(() => parseTime('--from', 'now-', now)).toThrow(/expected now/);
  });
});
