// The allocator settings this process started with, for one log line at serve
// start. bin/egress-xds sets them before node starts (glibc reads them at the
// first malloc, so they cannot be changed from here); an operator who runs
// dist/src/cli/main.js directly, or opts out, sees that in the log instead of
// wondering why pushes of large listeners cost more CPU than BENCHMARKS.md says.

/** The glibc variables bin/egress-xds may set; the order of the log line. */
export const MALLOC_VARIABLES = ['MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_ARENA_MAX'] as const;

export interface MallocSettings {
  readonly message: string;
  /** Each variable's value as glibc read it, or 'glibc default'; nodeFlags: the node/V8 flags (the wrapper's --max-semi-space-size), or 'none'. */
  readonly fields: Record<string, string>;
}

export function mallocSettings(env: NodeJS.ProcessEnv = process.env, execArgv: readonly string[] = process.execArgv): MallocSettings {
  const fields: Record<string, string> = {};
  let anySet = false;
  for (const name of MALLOC_VARIABLES) {
    const value = env[name];
    const set = value !== undefined && value !== '';
    anySet ||= set;
    fields[name] = set ? value : 'glibc default';
  }
  // Beside them, since the wrapper sets both: a young generation sized by hand shows here.
  fields['nodeFlags'] = execArgv.length === 0 ? 'none' : execArgv.join(' ');
  const message = env['EGRESS_XDS_MALLOC'] === 'system'
    ? anySet ? 'allocator settings (EGRESS_XDS_MALLOC=system: only those set by hand)' : 'allocator: glibc defaults (EGRESS_XDS_MALLOC=system)'
    : anySet
      ? 'allocator settings'
      : 'allocator: glibc defaults (started without bin/egress-xds: large buffers are page-faulted in again on every push)';
  return { message, fields };
}
