import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { serveCommand } from '../../src/cli/serve.js';
import { parseServeOptions } from '../../src/cli/serve.js';
import type { ServeConfig } from '../../src/serve/config.js';

/** The repository root, for reading the files under test. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const repoPath = (rel: string) => fileURLToPath(new URL(`../../${rel}`, import.meta.url));

/** Every document of a YAML file (`---`-separated), as plain objects. */
export async function loadYamlAll(rel: string): Promise<unknown[]> {
  const docs = parseAllDocuments(readFileSync(repoPath(rel), 'utf8'));
  for (const d of docs) if (d.errors.length > 0) throw new Error(`${rel}: ${String(d.errors[0])}`);
  return docs.map((d) => d.toJS()).filter((d) => d !== null);
}

/** A single-document YAML file. */
export async function loadYaml<T = any>(rel: string): Promise<T> {
  const docs = await loadYamlAll(rel);
  if (docs.length !== 1) throw new Error(`${rel}: expected one YAML document, found ${docs.length}`);
  return docs[0] as T;
}

/**
 * Run a container's `cifar ...` argument list through the real CLI's option parser and
 * validation (the same code `cifar serve` runs), so a misspelt flag or a bad value fails here.
 */
export function parseServeArgs(args: readonly string[], env: NodeJS.ProcessEnv = {}): ServeConfig {
  const [command, ...rest] = args;
  if (command !== 'serve') throw new Error(`expected the serve command, got ${String(command)}`);
  const cmd = serveCommand(() => Promise.reject(new Error('not loading models in a manifest test')));
  const { operands, unknown } = cmd.parseOptions([...rest]);
  if (unknown.length > 0 || operands.length > 0) throw new Error(`unknown arguments to cifar serve: ${[...operands, ...unknown].join(' ')}`);
  return parseServeOptions(cmd.opts(), env);
}

/** The files of a folder with one of the extensions, sorted. */
export function listFiles(rel: string, exts: string[]): string[] {
  return readdirSync(repoPath(rel))
    .filter((f) => exts.some((e) => f.endsWith(e)))
    .sort();
}

/**
 * Fail with an install hint when a tool the tests need is missing: CI installs these, so a
 * silent skip would hide a broken CI image.
 */
export function requireTool(bin: string, debianPackage: string): void {
  const res = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  if (res.error) throw new Error(`\`${bin}\` not found on PATH: install the Debian package \`${debianPackage}\` (.ci/run does)`);
}

/** Run a tool, returning its exit code and its combined output (for assertion messages). */
export function runTool(bin: string, args: string[], env: NodeJS.ProcessEnv = process.env): { code: number; output: string } {
  try {
    const out = execFileSync(bin, args, { cwd: ROOT, encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });
    return { code: 0, output: out };
  } catch (err) {
    const e = err as { status?: number; stdout?: string; stderr?: string };
    return { code: e.status ?? 1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}
