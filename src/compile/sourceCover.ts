// The sources a set of policies allows, as comparable ranges: every source, or the
// source ranges not inside another one (two CIDRs nest or are disjoint, so these
// are disjoint and, sorted, findable by binary search). The compiler asks "does
// this branch allow a source its fallback does not?" for every (prefix, name) cell,
// so the answer is a few lookups, not a rebuilt and compared text form.
import { cidrContains, compareCidrs, formatCidr, type Cidr } from '../net/ip.js';
import { ANY_SOURCE, cidrOfKey } from './cidrKeys.js';

export interface SourceCover {
  /** Some key was ANY_SOURCE: every source, whatever the ranges. */
  readonly everySource: boolean;
  /** Sorted (compareCidrs), none inside another. */
  readonly ranges: readonly Cidr[];
}

export const NO_SOURCES: SourceCover = { everySource: false, ranges: [] };
const EVERY_SOURCE: SourceCover = { everySource: true, ranges: [] };

/** The sorted CIDRs no other one holds (duplicates dropped): one pass, as whatever holds a CIDR is the last one kept before it. */
function outermost(sorted: readonly Cidr[]): Cidr[] {
  const kept: Cidr[] = [];
  for (const cidr of sorted) {
    const last = kept[kept.length - 1];
    if (!last || !cidrContains(last, cidr)) kept.push(cidr);
  }
  return kept;
}

/** The cover of source keys (canonical CIDR texts or ANY_SOURCE). */
export function coverOf(keys: Iterable<string>): SourceCover {
  const unique = new Set(keys);
  if (unique.has(ANY_SOURCE)) return EVERY_SOURCE;
  return { everySource: false, ranges: outermost([...unique].map(cidrOfKey).sort(compareCidrs)) };
}

/** The sources either cover allows. */
export function unionCovers(a: SourceCover, b: SourceCover): SourceCover {
  if (a.everySource || b.everySource) return EVERY_SOURCE;
  return { everySource: false, ranges: outermost([...a.ranges, ...b.ranges].sort(compareCidrs)) };
}

/** True when every address of `cidr` is a source `cover` allows. */
export function coverHolds(cover: SourceCover, cidr: Cidr): boolean {
  if (cover.everySource) return true;
  // The only range that can hold `cidr` is the last one sorting at or before it.
  const ranges = cover.ranges;
  let low = 0;
  let high = ranges.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (compareCidrs(ranges[mid]!, cidr) <= 0) low = mid + 1;
    else high = mid;
  }
  const candidate = ranges[low - 1];
  return candidate !== undefined && cidrContains(candidate, cidr);
}

/**
 * True when `cover` allows a source `fallback` does not hold in one of its ranges. For
 * covers of nested policy sets this is exactly "their text forms differ" (coverForm).
 */
export function addsSources(cover: SourceCover, fallback: SourceCover): boolean {
  if (fallback.everySource) return false;
  return cover.everySource || cover.ranges.some((range) => !coverHolds(fallback, range));
}

/** What `cover` allows beyond `fallback`: what remains to test against any third cover (addsSources). */
export function beyond(cover: SourceCover, fallback: SourceCover): SourceCover {
  if (fallback.everySource) return NO_SOURCES;
  if (cover.everySource) return EVERY_SOURCE;
  return { everySource: false, ranges: cover.ranges.filter((range) => !coverHolds(fallback, range)) };
}

/** A comparable text: equal for equal covers ("" for none, "*" for every source). */
export function coverForm(cover: SourceCover): string {
  return cover.everySource ? '*' : cover.ranges.map(formatCidr).join(',');
}
