import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SERVE_DEFAULTS } from '../../src/serve/config.js';
import { loadYaml, parseServeArgs, repoPath, runTool } from './helpers.js';

/** Dockerfile instructions, continuation lines joined, comments dropped, grouped by stage. */
function dockerStages(text: string): Array<{ from: string; lines: Array<[string, string]> }> {
  const stages: Array<{ from: string; lines: Array<[string, string]> }> = [];
  const joined = text.replace(/\\\n\s*/g, ' ');
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [, op, rest] = /^(\S+)\s+(.*)$/.exec(line)!;
    if (op!.toUpperCase() === 'FROM') stages.push({ from: rest!, lines: [] });
    else if (stages.length > 0) stages.at(-1)!.lines.push([op!.toUpperCase(), rest!]);
  }
  return stages;
}

describe('Dockerfile', () => {
  const stages = dockerStages(readFileSync(repoPath('Dockerfile'), 'utf8'));
  const runtime = stages.at(-1)!;
  const all = (op: string) => runtime.lines.filter(([o]) => o === op).map(([, r]) => r);

  it('builds in one stage and runs from another with production dependencies only', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const build = stages[0]!.lines.map(([o, r]) => `${o} ${r}`).join('\n');
    expect(build).toMatch(/npm ci\b/);
    expect(build).toMatch(/npm run build/);
    expect(all('RUN').join('\n')).toMatch(/npm ci --omit=dev --ignore-scripts/);
    expect(all('COPY')).toContain('--from=build /app/dist ./dist');
    // The bundled model goes in the image: `cifar serve` defaults to models/default.
    expect(all('COPY')).toContain('models ./models');
    // And the dashboard, which `cifar dashboard` draws by default (cli/dashboard.ts's BUNDLED_DASHBOARD).
    expect(all('COPY')).toContain('monitoring/grafana/dashboards/cifar-api.json ./monitoring/grafana/dashboards/cifar-api.json');
  });

  it('runs as a non-root user, checks /health and serves on 0.0.0.0 with valid flags', () => {
    const user = all('USER').at(-1);
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user!.split(':')[0]);
    const entry = JSON.parse(all('ENTRYPOINT').at(-1)!) as string[];
    expect(entry).toEqual(['node', 'bin/cifar']);
    const config = parseServeArgs(JSON.parse(all('CMD').at(-1)!));
    expect(config.host).toBe('0.0.0.0');
    expect(all('EXPOSE')).toEqual([String(config.port)]);
    expect(all('HEALTHCHECK').join('\n')).toContain(`http://127.0.0.1:${config.port}/health`);
  });

  it('.dockerignore keeps the build context small but keeps what the image needs', () => {
    const ignored = readFileSync(repoPath('.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const p of ['node_modules', 'dist', 'data', '.git']) expect(ignored).toContain(p);
    for (const p of ['src', 'bin', 'models', 'configs', 'package.json', 'package-lock.json', 'tsconfig.json']) expect(ignored).not.toContain(p);
    // monitoring/ stays out but for the dashboard, re-included after it (later lines win).
    expect(ignored.indexOf('!monitoring/grafana/dashboards/cifar-api.json')).toBeGreaterThan(ignored.indexOf('monitoring'));
  });
});

describe('docker-compose.yml', async () => {
  const compose = await loadYaml('docker-compose.yml');
  const services: Record<string, any> = compose.services;

  it('runs the API on 0.0.0.0 with the Redis service as its cache, published on the port it listens on', () => {
    const api = services.api;
    const config = parseServeArgs(api.command, {});
    expect(config.host).toBe('0.0.0.0');
    const redis = new URL(config.redisUrl!);
    expect(services).toHaveProperty(redis.hostname);
    expect(Number(redis.port)).toBe(6379);
    expect(api.ports).toContain(`127.0.0.1:${config.port}:${config.port}`);
    expect(api.healthcheck.test.join(' ')).toContain(`http://127.0.0.1:${config.port}/health`);
    // The drain after SIGTERM fits before Docker's SIGKILL.
    expect(parseInt(api.stop_grace_period, 10)).toBeGreaterThan(SERVE_DEFAULTS.drainMs / 1000);
    expect(api.depends_on.redis.condition).toBe('service_healthy');
  });

  it('gives every service a health check, a restart policy and resource limits', () => {
    for (const [name, s] of Object.entries(services)) {
      expect(s.healthcheck?.test, name).toBeDefined();
      expect(s.restart, name).toBe('unless-stopped');
      expect(s.deploy?.resources?.limits?.cpus, name).toBeDefined();
      expect(s.deploy?.resources?.limits?.memory, name).toBeDefined();
    }
  });

  it('runs every target prometheus.yml scrapes, on the port it scrapes', async () => {
    const prom = await loadYaml('monitoring/prometheus.yml');
    const listens: Record<string, number> = {
      api: parseServeArgs(services.api.command).port,
      'redis-exporter': 9121, // redis_exporter's default port
      'node-exporter': 9100, // node-exporter's default port
    };
    const targets: string[] = prom.scrape_configs.flatMap((j: any) => j.static_configs.flatMap((c: any) => c.targets));
    expect(targets.length).toBeGreaterThan(0);
    for (const t of targets) {
      const [host, port] = t.split(':');
      if (host === 'localhost') continue; // Prometheus itself
      expect(services, `scrape target ${t}`).toHaveProperty(host!);
      expect(Number(port), `scrape target ${t}`).toBe(listens[host!]);
    }
    expect(services['redis-exporter'].environment.REDIS_ADDR).toBe('redis://redis:6379');
  });

  it('mounts our Prometheus config and rules where prometheus.yml looks for them', async () => {
    const prom = await loadYaml('monitoring/prometheus.yml');
    const p = services.prometheus;
    expect(p.command).toContain('--config.file=/etc/prometheus/prometheus.yml');
    expect(p.volumes).toContain('./monitoring/prometheus.yml:/etc/prometheus/prometheus.yml:ro');
    // rule_files are relative to the config file's folder.
    for (const f of prom.rule_files) expect(p.volumes).toContain(`./monitoring/${f}:/etc/prometheus/${f}:ro`);
  });

  it('provisions Grafana without admin/admin: password from the environment, anonymous viewers', () => {
    const env = services.grafana.environment;
    expect(env.GF_SECURITY_ADMIN_PASSWORD).toMatch(/^\$\{GRAFANA_ADMIN_PASSWORD:\?/);
    expect(env.GF_AUTH_ANONYMOUS_ENABLED).toBe('true');
    expect(env.GF_AUTH_ANONYMOUS_ORG_ROLE).toBe('Viewer');
  });

  // The Docker CLI is optional on developer machines and CI; where it (or docker-compose 1.x)
  // exists, let it validate the file too.
  const composeCli = ['docker compose', 'docker-compose'].find((c) => {
    const [bin, ...args] = c.split(' ');
    return spawnSync(bin!, [...args, 'version'], { stdio: 'ignore' }).status === 0;
  });
  it.skipIf(!composeCli)(`${composeCli ?? 'docker compose'} config accepts it, and refuses it without a Grafana password`, () => {
    const [bin, ...args] = composeCli!.split(' ');
    const env = { ...process.env, GRAFANA_ADMIN_PASSWORD: 'test-only' };
    const ok = runTool(bin!, [...args, '-f', 'docker-compose.yml', 'config', '-q'], env);
    expect(ok.code, ok.output).toBe(0);
    const { GRAFANA_ADMIN_PASSWORD: _, ...without } = env;
    const refused = runTool(bin!, [...args, '-f', 'docker-compose.yml', 'config', '-q'], without);
    expect(refused.code).not.toBe(0);
    expect(refused.output).toMatch(/GRAFANA_ADMIN_PASSWORD/);
  });
});
