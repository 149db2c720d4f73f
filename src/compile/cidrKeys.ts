// CIDRs as the canonical text keys Envoy's filter-chain index uses, and sets of them.
import { cidrContains, compareCidrs, formatCidr, mustParseCidr, type Cidr } from '../net/ip.js';

/** A chain without source ranges: every source, both families. */
export const ANY_SOURCE = '';

/**
 * A /0 becomes its two /1 halves. A chain without ranges already stands for 0.0.0.0/0
 * and ::/0 in Envoy's trie; an explicit /0 next to it would be the same prefix twice.
 */
export function splitDefaultRoute(cidr: Cidr): Cidr[] {
  if (cidr.prefixLength > 0) return [cidr];
  const half = 1n << BigInt(cidr.family === 4 ? 31 : 127);
  return [
    { family: cidr.family, network: 0n, prefixLength: 1 },
    { family: cidr.family, network: half, prefixLength: 1 },
  ];
}

// Sorting parses the same few keys over and over; keep them (bounded, keys come from policies).
const parsed = new Map<string, Cidr>();
function parseKey(key: string): Cidr {
  let cidr = parsed.get(key);
  if (!cidr) {
    if (parsed.size > 50_000) parsed.clear();
    parsed.set(key, (cidr = mustParseCidr(key)));
  }
  return cidr;
}

export function compareCidrKeys(a: string, b: string): number {
  if (a === b) return 0;
  if (a === ANY_SOURCE) return -1;
  if (b === ANY_SOURCE) return 1;
  return compareCidrs(parseKey(a), parseKey(b));
}

export const sortCidrKeys = (keys: Iterable<string>): string[] => [...new Set(keys)].sort(compareCidrKeys);

/** The canonical keys of a list of CIDR texts (deduplicated, /0 split, sorted). */
export function cidrKeysOf(cidrs: readonly string[]): string[] {
  return sortCidrKeys(cidrs.flatMap((text) => splitDefaultRoute(mustParseCidr(text)).map(formatCidr)));
}

/** coverForm of the empty set: nothing allowed. */
export const NO_SOURCES_FORM = '';
const ALL_SOURCES_FORM = '*';

/**
 * A comparable form of the set of addresses a key set covers: ANY_SOURCE absorbs all,
 * ranges inside other ranges are dropped. Equal forms mean equal sets (the converse
 * does not always hold, which only costs a redundant branch).
 */
export function coverForm(keys: Iterable<string>): string {
  const unique = sortCidrKeys(keys);
  if (unique.includes(ANY_SOURCE)) return ALL_SOURCES_FORM;
  const cidrs = unique.map(parseKey);
  const kept = cidrs.filter((c, i) => !cidrs.some((o, j) => j !== i && cidrContains(o, c)));
  return kept.map(formatCidr).join(',');
}

/** The CidrRange ProtoJSON of a key. */
export function cidrRangeOf(key: string): { addressPrefix: string; prefixLen: number } {
  const slash = key.lastIndexOf('/');
  return { addressPrefix: key.slice(0, slash), prefixLen: Number(key.slice(slash + 1)) };
}
