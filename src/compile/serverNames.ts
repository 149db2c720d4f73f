// SNI patterns as Envoy orders them: "a.b.c" is tried, then "*.b.c", then "*.c",
// then chains without server_names. A wildcard matches any depth below, never the apex.

export const isWildcard = (pattern: string): boolean => pattern.startsWith('*.');

/**
 * The wildcard patterns Envoy would try for a value, most specific first: for "a.b.c"
 * and for "*.a.b.c" alike, "*.b.c" then "*.c" ("*.a.b.c" itself is not its own ancestor).
 */
export function wildcardAncestors(pattern: string): string[] {
  const name = isWildcard(pattern) ? pattern.slice(2) : pattern;
  const ancestors: string[] = [];
  // Envoy's findFilterChainForServerName: every dot from index 1, short of the last character.
  for (let pos = name.indexOf('.', isWildcard(pattern) ? 0 : 1); pos >= 0 && pos < name.length - 1; pos = name.indexOf('.', pos + 1)) {
    ancestors.push(`*${name.slice(pos)}`);
  }
  return ancestors;
}

/** True when every name `pattern` matches is matched by `by` (equal patterns included). */
export function patternCovers(by: string, pattern: string): boolean {
  return by === pattern || (isWildcard(by) && wildcardAncestors(pattern).includes(by));
}

/** Names sorted for output: by DNS labels from the right, so related names sit together. */
export function compareServerNames(a: string, b: string): number {
  const ka = a.split('.').reverse().join('.');
  const kb = b.split('.').reverse().join('.');
  return ka < kb ? -1 : ka > kb ? 1 : a < b ? -1 : a > b ? 1 : 0;
}
