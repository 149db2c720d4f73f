// The allowlist tree as Envoy filter chains.
//
// A chain is a rectangle: one destination port × a set of destination prefixes × a set
// of server names × a set of source prefixes. Every allowing chain goes to
// original_dst_cluster, so in a (port, prefix, name) cell of Envoy's index the
// connection is allowed iff its source matches any source range some chain put
// there. Each source group (the keys shared by one set of policies) therefore gets,
// per port branch, the cells its policies allow:
//   - under a prefix its cidr rules cover: the row's no-name cell and every name kept in the row;
//   - under another kept prefix: the row's names that its SNI patterns cover;
//   - under any other destination: the names its SNI patterns cover.
// Prefix rows where the group has the same cells share chains.
// Source groups never share a key, so no cell holds one key twice (which Envoy
// refuses as "overlapping matching rules"). Chains covering the same cells, or the
// same rows with the same sources, are then merged.
import type { FilterChainJson, FilterChainMatchJson } from '../envoy/resources.js';
import type { AllowlistTree, SourceGroup } from './allowlistTree.js';
import { ANY_SOURCE, cidrRangeOf, compareCidrKeys, sortCidrKeys } from './cidrKeys.js';
import { GroupRows } from './groupRows.js';
import { ALLOW_FILTER_CHAIN_PREFIX, ALLOWED_STAT_PREFIX, ORIGINAL_DST_CLUSTER } from './names.js';
import { compareServerNames, sortServerNames } from './serverNames.js';
import { tcpProxyFilter } from './tcpProxy.js';
import { indexTree, type TreeIndex } from './treeIndex.js';

interface ChainSpec {
  /** 0: any destination port. */
  readonly port: number;
  /** Destination prefix keys; undefined: any destination. */
  readonly prefixes: readonly string[] | undefined;
  /** Server names; undefined: no server_names (any or no SNI). */
  readonly serverNames: readonly string[] | undefined;
  /** Source keys; [ANY_SOURCE]: every source. */
  readonly sources: readonly string[];
  /** Names of the policies whose allows the chain carries, for its name. */
  readonly policies: ReadonlySet<string>;
}

function unionSources(lists: readonly (readonly string[])[]): string[] {
  const all = sortCidrKeys(lists.flat());
  // Every chain allows, so "every source" makes the other ranges of the cell redundant.
  return all.includes(ANY_SOURCE) ? [ANY_SOURCE] : all;
}

/** The tree's names a group's patterns cover (ascending), each with the group's policies covering it. */
function namesOfGroup(group: SourceGroup, index: TreeIndex): Map<number, number[]> {
  const holders = new Map<number, number[]>();
  for (const i of group.policies) {
    for (const n of index.namesByPolicy[i] ?? []) {
      const list = holders.get(n);
      if (list) list.push(i);
      else holders.set(n, [i]);
    }
  }
  return new Map([...holders].sort((a, b) => a[0] - b[0]));
}

function specsFor(tree: AllowlistTree): ChainSpec[] {
  const index = indexTree(tree);
  const groups = tree.sourceGroups.map((group) => ({ group, names: namesOfGroup(group, index) }));
  const policyNames = (set: Iterable<number>): Set<string> => new Set([...set].map((i) => tree.policies[i]?.name ?? `#${i}`));
  const patterns = (names: readonly number[]): string[] => names.map((n) => tree.serverNames[n]!.pattern);
  const specs: ChainSpec[] = [];
  tree.ports.forEach((branch, b) => {
    const at = index.ports[b]!;
    const groupRows = new GroupRows(branch, at, tree.serverNames.length);
    for (const { group, names } of groups) {
      const base = { port: branch.port, sources: group.keys };
      for (const row of groupRows.rowsOf(group.policies, names.keys())) {
        const byCidr = row.cidrPolicies.size > 0;
        // Under a prefix its cidr rules cover, every name kept in the row carries the group.
        const serverNames = byCidr ? at.patternsOf[row.first]! : patterns(row.names);
        if (serverNames.length > 0) {
          // The group's policies allowing the row's cells: by cidr, or by a name kept in the row.
          const policies = new Set(row.cidrPolicies);
          const kept = at.namesOf[row.first]!;
          for (const [n, holders] of names) if (kept.has(n)) for (const i of holders) policies.add(i);
          specs.push({ ...base, prefixes: row.prefixes, serverNames, policies: policyNames(policies) });
        }
        if (byCidr) specs.push({ ...base, prefixes: row.prefixes, serverNames: undefined, policies: policyNames(row.cidrPolicies) });
      }

      // Any other destination: the names this group's patterns cover.
      if (names.size > 0) {
        specs.push({ ...base, prefixes: undefined, serverNames: patterns([...names.keys()]), policies: policyNames([...names.values()].flat()) });
      }
    }
  });
  return specs;
}

/** Short ids standing for lists, equal iff the lists' texts are: merge keys stay short however long the lists. */
function listIds(): (list: readonly string[] | undefined) => string {
  const byText = new Map<string, string>();
  const byList = new WeakMap<readonly string[], string>();
  return (list) => {
    if (list === undefined) return '*';
    let id = byList.get(list);
    if (id === undefined) {
      const text = list.join(',');
      id = byText.get(text);
      if (id === undefined) byText.set(text, (id = String(byText.size)));
      byList.set(list, id);
    }
    return id;
  };
}

/** Merges the specs that share `key` into the first one's place; true when anything merged. */
function mergeBy(
  specs: readonly ChainSpec[],
  eligible: (s: ChainSpec) => boolean,
  key: (s: ChainSpec) => string,
  combine: (alike: readonly ChainSpec[]) => ChainSpec,
): { specs: ChainSpec[]; merged: boolean } {
  // Collect each key's specs first and combine them once: folding pairwise re-sorts the growing lists every time.
  const out: (ChainSpec | ChainSpec[])[] = [];
  const alikeByKey = new Map<string, ChainSpec[]>();
  let merged = false;
  for (const spec of specs) {
    if (!eligible(spec)) {
      out.push(spec);
      continue;
    }
    const k = key(spec);
    const alike = alikeByKey.get(k);
    if (alike) {
      alike.push(spec);
      merged = true;
    } else {
      const fresh = [spec];
      alikeByKey.set(k, fresh);
      out.push(fresh);
    }
  }
  return { specs: out.map((x) => (!Array.isArray(x) ? x : x.length === 1 ? x[0]! : combine(x))), merged };
}

function mergeSpecs(initial: ChainSpec[]): ChainSpec[] {
  let specs = initial;
  const id = listIds();
  const policies = (alike: readonly ChainSpec[]): Set<string> => new Set(alike.flatMap((s) => [...s.policies]));
  for (let changed = true; changed; ) {
    changed = false;
    // Same cells: one chain with all the groups' source ranges.
    let step = mergeBy(specs, () => true, (s) => `${s.port}|${id(s.prefixes)}|${id(s.serverNames)}`, (alike) => ({
      ...alike[0]!,
      sources: unionSources(alike.map((s) => s.sources)),
      policies: policies(alike),
    }));
    changed ||= step.merged;
    // Same prefixes and sources, different names: one chain with all the names.
    step = mergeBy(step.specs, (s) => s.serverNames !== undefined, (s) => `${s.port}|${id(s.prefixes)}|${id(s.sources)}`, (alike) => ({
      ...alike[0]!,
      serverNames: sortServerNames(alike.flatMap((s) => s.serverNames ?? [])),
      policies: policies(alike),
    }));
    changed ||= step.merged;
    // Same names and sources, different prefixes: one chain with all the prefixes.
    step = mergeBy(step.specs, (s) => s.prefixes !== undefined, (s) => `${s.port}|${id(s.serverNames)}|${id(s.sources)}`, (alike) => ({
      ...alike[0]!,
      prefixes: sortCidrKeys(alike.flatMap((s) => s.prefixes ?? [])),
      policies: policies(alike),
    }));
    changed ||= step.merged;
    specs = step.specs;
  }
  return specs.map((s) => ({
    ...s,
    prefixes: s.prefixes && sortCidrKeys(s.prefixes),
    serverNames: s.serverNames && sortServerNames(s.serverNames),
  }));
}

function compareLists(a: readonly string[] | undefined, b: readonly string[] | undefined, compare: (x: string, y: string) => number): number {
  // Specific before catch-all, as Envoy prefers them.
  if (a === undefined || b === undefined) return a === b ? 0 : a === undefined ? 1 : -1;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = compare(a[i]!, b[i]!);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

function compareSpecs(a: ChainSpec, b: ChainSpec): number {
  if (a.port !== b.port) return a.port === 0 ? 1 : b.port === 0 ? -1 : a.port - b.port;
  return (
    compareLists(a.prefixes, b.prefixes, compareCidrKeys) ||
    compareLists(a.serverNames, b.serverNames, compareServerNames) ||
    compareLists(a.sources, b.sources, compareCidrKeys)
  );
}

/** The first `max` items, then "+N" for the rest; "*" for a catch-all. */
const abbreviate = (items: readonly string[] | undefined, max: number): string =>
  items === undefined || items.length === 0
    ? '*'
    : items.length <= max
      ? items.join(',')
      : `${items.slice(0, max).join(',')},+${items.length - max}`;

/** "allow|github,gitlab|port=*|dst=*|sni=github.com,+3": what the admin API reports as the chosen chain. */
function chainName(spec: ChainSpec): string {
  const policies = [...spec.policies].sort();
  return [
    ALLOW_FILTER_CHAIN_PREFIX,
    abbreviate(policies, 3),
    `port=${spec.port === 0 ? '*' : spec.port}`,
    `dst=${abbreviate(spec.prefixes, 1)}`,
    `sni=${abbreviate(spec.serverNames, 1)}`,
  ].join('|');
}

function toFilterChain(spec: ChainSpec, name: string): FilterChainJson {
  const match: FilterChainMatchJson = {};
  if (spec.port !== 0) match.destinationPort = spec.port;
  if (spec.prefixes) match.prefixRanges = spec.prefixes.map(cidrRangeOf);
  if (spec.serverNames) match.serverNames = [...spec.serverNames];
  if (!spec.sources.includes(ANY_SOURCE)) match.sourcePrefixRanges = spec.sources.map(cidrRangeOf);
  return { name, filterChainMatch: match, filters: [tcpProxyFilter(ORIGINAL_DST_CLUSTER, ALLOWED_STAT_PREFIX)] };
}

/** The allowing filter chains, sorted and uniquely named; everything else is left to the default chain. */
export function allowFilterChains(tree: AllowlistTree): FilterChainJson[] {
  const specs = mergeSpecs(specsFor(tree)).sort(compareSpecs);
  // Abbreviated names can coincide; number the later ones (the admin API reports chains by name).
  const used = new Set<string>();
  return specs.map((spec) => {
    const base = chainName(spec);
    let name = base;
    for (let n = 2; used.has(name); n++) name = `${base}#${n}`;
    used.add(name);
    return toFilterChain(spec, name);
  });
}
