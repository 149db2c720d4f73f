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

/** The patterns matching every name `pattern` matches: itself and its wildcard ancestors. */
export const coveringPatterns = (pattern: string): string[] => [pattern, ...wildcardAncestors(pattern)];

// A compile sorts the same names again and again; keep their keys (bounded, names come from policies).
const sortKeys = new Map<string, string>();
/** The sort key of a name: its DNS labels from the right, so related names sit together. */
function labelsFromRight(name: string): string {
  let key = sortKeys.get(name);
  if (key === undefined) {
    if (sortKeys.size > 100_000) sortKeys.clear();
    sortKeys.set(name, (key = name.split('.').reverse().join('.')));
  }
  return key;
}

/** The key compareServerNames orders by (ties broken by the name itself). */
export const serverNameSortKey = (name: string): string => labelsFromRight(name);

/** compareServerNames for names whose keys (serverNameSortKey) are already at hand. */
export const compareKeyed = (ka: string, a: string, kb: string, b: string): number =>
  ka < kb ? -1 : ka > kb ? 1 : a < b ? -1 : a > b ? 1 : 0;

/** Names sorted for output: by DNS labels from the right, so related names sit together. */
export function compareServerNames(a: string, b: string): number {
  return compareKeyed(labelsFromRight(a), a, labelsFromRight(b), b);
}

/** Distinct names in compareServerNames order, each name's key computed once rather than per comparison. */
export function sortServerNames(names: Iterable<string>): string[] {
  // Lists often arrive in order already (serverNamesOf emits this order): one pass tells.
  if (Array.isArray(names)) {
    const list = names as readonly string[];
    let key = list.length > 0 ? labelsFromRight(list[0]!) : '';
    let sorted = true;
    for (let i = 1; i < list.length && sorted; i++) {
      const next = labelsFromRight(list[i]!);
      sorted = compareKeyed(key, list[i - 1]!, next, list[i]!) < 0;
      key = next;
    }
    if (sorted) return [...list];
  }
  return [...new Set(names)]
    .map((name) => ({ name, key: labelsFromRight(name) }))
    .sort((x, y) => compareKeyed(x.key, x.name, y.key, y.name))
    .map((x) => x.name);
}
