// The environment `egress-xds` runs in (bin/egress-xds), for the benchmark
// processes that stand in for the server: a figure measured under glibc's
// defaults would describe a server nobody runs. The defaults are read from the
// wrapper's own `: "${NAME:=VALUE}"` lines, so there is one copy of them.
// EGRESS_XDS_MALLOC=system measures without them (the before figures).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** bin/egress-xds, from dist/bench/ or bench/. */
export const WRAPPER = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../bin/egress-xds' : '../bin/egress-xds', import.meta.url));

/** NAME → VALUE of the wrapper's tuned defaults. */
export function wrapperDefaults(wrapper = WRAPPER): Record<string, string> {
  const defaults: Record<string, string> = {};
  for (const match of readFileSync(wrapper, 'utf8').matchAll(/^\s*: "\$\{([A-Z_]+):=([^}"]*)\}"\s*$/gm)) defaults[match[1]!] = match[2]!;
  if (Object.keys(defaults).length === 0) throw new Error(`${wrapper}: no ': "\${NAME:=VALUE}"' defaults found`);
  return defaults;
}

/** base with the wrapper's defaults where base has none, unless EGRESS_XDS_MALLOC=system (as the wrapper does). */
export function shippedEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const mode = base['EGRESS_XDS_MALLOC'] ?? 'tuned';
  if (mode === 'system') return { ...base };
  if (mode !== 'tuned' && mode !== '') throw new Error(`EGRESS_XDS_MALLOC must be tuned or system, not '${mode}'`);
  const env = { ...base };
  for (const [name, value] of Object.entries(wrapperDefaults())) if (!env[name]) env[name] = value;
  return env;
}

/** One line saying which allocator settings the benchmark's server processes get. */
export function shippedEnvLine(env: NodeJS.ProcessEnv = shippedEnv()): string {
  const names = Object.keys(wrapperDefaults());
  const set = names.filter((name) => env[name]).map((name) => `${name}=${env[name]}`);
  return set.length === 0 ? 'allocator: glibc defaults (EGRESS_XDS_MALLOC=system)' : `allocator: ${set.join(' ')}`;
}

/**
 * For benchmarks that measure in their own process: glibc read the allocator
 * settings before this code ran, so if they are missing the process runs
 * itself again, once, with them (same argv and node flags), and exits with
 * that run's status. Returns only in the process that has them.
 */
export function rerunWithShippedEnv(): void {
  const env = shippedEnv();
  const missing = Object.keys(wrapperDefaults()).some((name) => env[name] !== process.env[name]);
  if (!missing) return;
  const run = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { env, stdio: 'inherit' });
  if (run.error) throw run.error;
  process.exit(run.status ?? 1);
}
