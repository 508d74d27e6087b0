import { describe, expect, it } from 'vitest';
import { SERVE_DEFAULTS } from '../../src/serve/config.js';
import { listFiles, loadYaml, loadYamlAll, parseServeArgs } from './helpers.js';

/** Every manifest in k8s/, each document with the file it came from. */
async function manifests(): Promise<Array<{ file: string; doc: any }>> {
  const out: Array<{ file: string; doc: any }> = [];
  for (const file of listFiles('k8s', ['.yaml', '.yml'])) {
    if (file.startsWith('kustomization.')) continue;
    for (const doc of await loadYamlAll(`k8s/${file}`)) out.push({ file, doc });
  }
  return out;
}

/** Kubernetes' $(VAR) expansion in args, from the container's env and envFrom ConfigMaps. */
function expand(args: string[], vars: Record<string, string>): string[] {
  return args.map((a) =>
    a.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (_, name: string) => {
      if (!(name in vars)) throw new Error(`$(${name}) is not defined in the ConfigMap or env`);
      return vars[name]!;
    }),
  );
}

const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);

describe('Kubernetes manifests (k8s/)', async () => {
  const docs = await manifests();
  const find = (kind: string, name: string) => {
    const hit = docs.find((d) => d.doc.kind === kind && d.doc.metadata.name === name);
    if (!hit) throw new Error(`no ${kind} ${name} in k8s/`);
    return hit.doc;
  };
  const deployment = find('Deployment', 'cifar-api');
  const pod = deployment.spec.template;
  const container = pod.spec.containers.find((c: any) => c.name === 'api');
  const configMap = find('ConfigMap', container.envFrom[0].configMapRef.name);
  const vars: Record<string, string> = { ...configMap.data };
  const config = parseServeArgs(expand(container.args, vars), vars);
  const portNamed = (name: string | number) => container.ports.find((p: any) => p.name === name || p.containerPort === name)?.containerPort;

  it('every document is a named Kubernetes object, and kustomization.yaml lists every file', async () => {
    for (const { file, doc } of docs) {
      expect(doc.apiVersion, file).toBeTruthy();
      expect(doc.kind, file).toBeTruthy();
      expect(doc.metadata?.name, file).toMatch(/^[a-z0-9-]+$/);
    }
    const kustomization = await loadYaml('k8s/kustomization.yaml');
    expect([...kustomization.resources].sort()).toEqual([...new Set(docs.map((d) => d.file))].sort());
  });

  it('runs cifar serve with flags the CLI accepts, on 0.0.0.0 and the port the container declares', () => {
    expect(container.args[0]).toBe('serve');
    expect(config.host).toBe('0.0.0.0');
    expect(portNamed('http')).toBe(config.port);
    expect(pod.metadata.annotations['prometheus.io/port']).toBe(String(config.port));
    expect(pod.metadata.annotations['prometheus.io/path']).toBe('/metrics');
  });

  it('is ready on /ready and alive on /health, on the server port', () => {
    expect(container.readinessProbe.httpGet.path).toBe('/ready');
    expect(container.livenessProbe.httpGet.path).toBe('/health');
    for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
      expect(portNamed(container[probe].httpGet.port), probe).toBe(config.port);
    }
  });

  it('sets resource requests and limits, one worker per CPU of the limit', () => {
    const { requests, limits } = container.resources;
    for (const r of [requests, limits]) {
      expect(r.cpu).toBeDefined();
      expect(r.memory).toBeDefined();
    }
    const cpus = (q: string) => (q.endsWith('m') ? Number(q.slice(0, -1)) / 1000 : Number(q));
    expect(config.workers).toBeLessThanOrEqual(Math.max(1, cpus(String(limits.cpu))));
  });

  it('gives SIGTERM time to drain: preStop sleep plus the server drain fit in the grace period', () => {
    const sleep = Number(container.lifecycle.preStop.exec.command.at(-1));
    expect(pod.spec.terminationGracePeriodSeconds).toBeGreaterThan(sleep + SERVE_DEFAULTS.drainMs / 1000);
    expect(deployment.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
    expect(pod.spec.securityContext.runAsNonRoot).toBe(true);
  });

  it('the Service routes to the container port of the pods it selects', () => {
    const service = find('Service', 'cifar-api');
    expect(matches(service.spec.selector, pod.metadata.labels)).toBe(true);
    expect(matches(deployment.spec.selector.matchLabels, pod.metadata.labels)).toBe(true);
    for (const p of service.spec.ports) expect(portNamed(p.targetPort)).toBe(config.port);
  });

  it('the HPA scales this Deployment on CPU, which the pods request', () => {
    const hpa = find('HorizontalPodAutoscaler', 'cifar-api');
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpa.spec.maxReplicas).toBeGreaterThan(hpa.spec.minReplicas);
    expect(deployment.spec.replicas).toBe(hpa.spec.minReplicas);
    expect(hpa.spec.metrics.some((m: any) => m.resource?.name === 'cpu')).toBe(true);
    expect(container.resources.requests.cpu).toBeDefined();
    const pdb = find('PodDisruptionBudget', 'cifar-api');
    expect(matches(pdb.spec.selector.matchLabels, pod.metadata.labels)).toBe(true);
    expect(pdb.spec.minAvailable).toBeLessThan(hpa.spec.minReplicas);
  });

  it('every replica shares the one Redis: REDIS_URL names the Redis Service and its port', () => {
    const url = new URL(config.redisUrl!);
    const service = find('Service', url.hostname);
    expect(service.spec.ports.map((p: any) => p.port)).toContain(Number(url.port));
    const redis = docs.find((d) => d.doc.kind === 'Deployment' && matches(service.spec.selector, d.doc.spec.template.metadata.labels))?.doc;
    expect(redis, 'a Deployment behind the Redis Service').toBeDefined();
    const ports = redis.spec.template.spec.containers[0].ports;
    for (const p of service.spec.ports) expect(ports.some((c: any) => c.name === p.targetPort || c.containerPort === p.targetPort)).toBe(true);
  });
});
