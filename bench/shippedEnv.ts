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

/** The node/V8 flags the wrapper puts before the script: EGRESS_XDS_NODE_FLAGS if set (empty: none), else its default. */
export function shippedNodeFlags(base: NodeJS.ProcessEnv = process.env, wrapper = WRAPPER): string[] {
  const own = base['EGRESS_XDS_NODE_FLAGS'];
  const line = /^\s*: "\$\{EGRESS_XDS_NODE_FLAGS=([^}"]*)\}"\s*$/m.exec(readFileSync(wrapper, 'utf8'));
  if (!line && own === undefined) throw new Error(`${wrapper}: no ': "\${EGRESS_XDS_NODE_FLAGS=...}"' line`);
  return (own ?? line![1]!).split(' ').filter(Boolean);
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
  const flags = shippedNodeFlags(env);
  const alloc = set.length === 0 ? 'allocator: glibc defaults (EGRESS_XDS_MALLOC=system)' : `allocator: ${set.join(' ')}`;
  return `${alloc}; node flags: ${flags.length === 0 ? 'none' : flags.join(' ')}`;
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
  const run = spawnSync(process.execPath, [...shippedNodeFlags(env), ...process.execArgv, ...process.argv.slice(1)], { env, stdio: 'inherit' });
  if (run.error) throw run.error;
  process.exit(run.status ?? 1);
}
