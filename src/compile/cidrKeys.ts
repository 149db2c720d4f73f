// CIDRs as the canonical text keys Envoy's filter-chain index uses, and sets of them.
import { compareCidrs, formatCidr, mustParseCidr, type Cidr } from '../net/ip.js';

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

// Sorting and covers parse the same few keys over and over; keep them (bounded, keys come from policies).
const parsed = new Map<string, Cidr>();
/** The Cidr of a canonical key (not ANY_SOURCE). */
export function cidrOfKey(key: string): Cidr {
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
  return compareCidrs(cidrOfKey(a), cidrOfKey(b));
}

/** Distinct keys in compareCidrKeys order, each parsed once rather than per comparison. */
export function sortCidrKeys(keys: Iterable<string>): string[] {
  const unique = new Set(keys);
  const any = unique.delete(ANY_SOURCE);
  const sorted = [...unique]
    .map((key) => ({ key, cidr: cidrOfKey(key) }))
    .sort((a, b) => compareCidrs(a.cidr, b.cidr))
    .map((x) => x.key);
  return any ? [ANY_SOURCE, ...sorted] : sorted;
}

/** The canonical keys of a list of CIDR texts (deduplicated, /0 split, sorted). */
export function cidrKeysOf(cidrs: readonly string[]): string[] {
  return sortCidrKeys(cidrs.flatMap((text) => splitDefaultRoute(mustParseCidr(text)).map(formatCidr)));
}

/** The CidrRange ProtoJSON of a key. */
export function cidrRangeOf(key: string): { addressPrefix: string; prefixLen: number } {
  const slash = key.lastIndexOf('/');
  return { addressPrefix: key.slice(0, slash), prefixLen: Number(key.slice(slash + 1)) };
}
