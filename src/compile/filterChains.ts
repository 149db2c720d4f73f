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
import { intersects, type AllowlistTree, type PolicySet, type ServerNameBranch } from './allowlistTree.js';
import { ANY_SOURCE, cidrRangeOf, compareCidrKeys, sortCidrKeys } from './cidrKeys.js';
import { ALLOW_FILTER_CHAIN_PREFIX, ALLOWED_STAT_PREFIX, ORIGINAL_DST_CLUSTER } from './names.js';
import { compareServerNames } from './serverNames.js';
import { tcpProxyFilter } from './tcpProxy.js';

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

const sortNames = (names: Iterable<string>): string[] => [...new Set(names)].sort(compareServerNames);

function unionSources(a: readonly string[], b: readonly string[]): string[] {
  const all = sortCidrKeys([...a, ...b]);
  // Every chain allows, so "every source" makes the other ranges of the cell redundant.
  return all.includes(ANY_SOURCE) ? [ANY_SOURCE] : all;
}

function policyNames(tree: AllowlistTree, set: PolicySet): Set<string> {
  return new Set([...set].map((i) => tree.policies[i]?.name ?? `#${i}`));
}

function specsFor(tree: AllowlistTree): ChainSpec[] {
  const specs: ChainSpec[] = [];
  for (const branch of tree.ports) {
    for (const group of tree.sourceGroups) {
      const mine = (set: PolicySet): boolean => intersects(set, group.policies);
      // The group's policies whose allows a chain carries: those in any of `sets`.
      const named = (sets: readonly PolicySet[]): Set<string> =>
        policyNames(tree, new Set([...group.policies].filter((i) => sets.some((set) => set.has(i)))));
      const base = { port: branch.port, sources: group.keys };

      // Prefix rows where this group has the same cells share chains.
      const rows = new Map<string, { prefixes: string[]; names: readonly ServerNameBranch[]; byCidr: boolean; policies: Set<number> }>();
      for (const prefix of branch.prefixes) {
        const byCidr = mine(prefix.policies);
        // Under a prefix its cidr rules allow, every name kept in the row carries the group.
        const names = byCidr ? prefix.serverNames : prefix.serverNames.filter((n) => mine(n.policies));
        if (!byCidr && names.length === 0) continue;
        const signature = `${byCidr}|${names.map((n) => n.pattern).join(',')}`;
        let row = rows.get(signature);
        if (!row) rows.set(signature, (row = { prefixes: [], names, byCidr, policies: new Set() }));
        row.prefixes.push(prefix.key);
        for (const i of prefix.policies) row.policies.add(i);
      }
      for (const row of rows.values()) {
        const cidrPolicies: PolicySet[] = row.byCidr ? [row.policies] : [];
        if (row.names.length > 0) {
          const policies = named([...cidrPolicies, ...row.names.map((n) => n.policies)]);
          specs.push({ ...base, prefixes: row.prefixes, serverNames: row.names.map((n) => n.pattern), policies });
        }
        if (row.byCidr) specs.push({ ...base, prefixes: row.prefixes, serverNames: undefined, policies: named(cidrPolicies) });
      }

      // Any other destination: the names this group's patterns cover.
      const names = tree.serverNames.filter((n) => mine(n.policies));
      if (names.length > 0) {
        const policies = named(names.map((n) => n.policies));
        specs.push({ ...base, prefixes: undefined, serverNames: names.map((n) => n.pattern), policies });
      }
    }
  }
  return specs;
}

const listKey = (list: readonly string[] | undefined): string => (list === undefined ? '*' : list.join(','));

/** Merges the specs that share `key`, keeping first-seen order; true when anything merged. */
function mergeBy(
  specs: ChainSpec[],
  eligible: (s: ChainSpec) => boolean,
  key: (s: ChainSpec) => string,
  combine: (a: ChainSpec, b: ChainSpec) => ChainSpec,
): { specs: ChainSpec[]; merged: boolean } {
  const out: ChainSpec[] = [];
  const at = new Map<string, number>();
  let merged = false;
  for (const spec of specs) {
    if (!eligible(spec)) {
      out.push(spec);
      continue;
    }
    const k = key(spec);
    const index = at.get(k);
    if (index === undefined) {
      at.set(k, out.length);
      out.push(spec);
    } else {
      out[index] = combine(out[index]!, spec);
      merged = true;
    }
  }
  return { specs: out, merged };
}

function mergeSpecs(initial: ChainSpec[]): ChainSpec[] {
  let specs = initial;
  const policies = (a: ChainSpec, b: ChainSpec): Set<string> => new Set([...a.policies, ...b.policies]);
  for (let changed = true; changed; ) {
    changed = false;
    // Same cells: one chain with both groups' source ranges.
    let step = mergeBy(specs, () => true, (s) => `${s.port}|${listKey(s.prefixes)}|${listKey(s.serverNames)}`, (a, b) => ({
      ...a,
      sources: unionSources(a.sources, b.sources),
      policies: policies(a, b),
    }));
    changed ||= step.merged;
    // Same prefixes and sources, different names: one chain with all the names.
    step = mergeBy(step.specs, (s) => s.serverNames !== undefined, (s) => `${s.port}|${listKey(s.prefixes)}|${s.sources.join(',')}`, (a, b) => ({
      ...a,
      serverNames: sortNames([...(a.serverNames ?? []), ...(b.serverNames ?? [])]),
      policies: policies(a, b),
    }));
    changed ||= step.merged;
    // Same names and sources, different prefixes: one chain with all the prefixes.
    step = mergeBy(step.specs, (s) => s.prefixes !== undefined, (s) => `${s.port}|${listKey(s.serverNames)}|${s.sources.join(',')}`, (a, b) => ({
      ...a,
      prefixes: sortCidrKeys([...(a.prefixes ?? []), ...(b.prefixes ?? [])]),
      policies: policies(a, b),
    }));
    changed ||= step.merged;
    specs = step.specs;
  }
  return specs.map((s) => ({
    ...s,
    prefixes: s.prefixes && sortCidrKeys(s.prefixes),
    serverNames: s.serverNames && sortNames(s.serverNames),
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
