// The node's allowlist as the decision tree Envoy walks: destination port →
// destination prefix → server name → source prefix (filterChainMatch.ts).
//
// Envoy takes the most specific branch at each level and never backtracks, so a
// branch must carry the whole verdict for the traffic it catches: a prefix branch
// for 10.0.0.0/8 must also hold the server names allowed to other sources than its
// cidr rules', a port-443 branch all the SNI allows, and a branch for api.github.com
// the sources of "*.github.com". Here every branch gets the complete set of policies
// that allow its traffic, and a branch that would decide exactly like the one Envoy
// falls to without it is dropped.
//
// Allowed sources only grow toward the specific end (a port branch has the any-port
// rules too; a longer prefix is inside every range holding the shorter one; a name is
// under every wildcard its parent is), so a kept branch never allows less than its
// fallback. Hence no branch is all-deny and no explicit deny chain is needed: what
// no chain allows gets no match and goes to the listener's default (reject) chain.
import { cidrContains, formatCidr, mustParseCidr, type Cidr } from '../net/ip.js';
import type { Policy } from '../policy/model.js';
import { ANY_SOURCE, NO_SOURCES_FORM, cidrKeysOf, coverForm, splitDefaultRoute, sortCidrKeys } from './cidrKeys.js';
import { patternCovers, wildcardAncestors } from './serverNames.js';

/** Policies by index into AllowlistTree.policies. */
export type PolicySet = ReadonlySet<number>;

export interface PrefixBranch {
  /** Canonical destination CIDR. */
  readonly key: string;
  readonly cidr: Cidr;
  /** Policies with a cidr rule (for this port branch) covering this prefix. */
  readonly policies: PolicySet;
  /**
   * The server-name branches kept under this prefix: those adding sources to what the
   * cidr rules already allow here (the rest decide like their fallback in this row).
   */
  readonly serverNames: readonly ServerNameBranch[];
}

export interface PortBranch {
  /** 0 for the branch of every port no cidr rule names. */
  readonly port: number;
  /** The destination prefixes kept in this branch, all specific (the catch-all is implicit). */
  readonly prefixes: readonly PrefixBranch[];
}

export interface ServerNameBranch {
  /** An SNI pattern as written in a policy ("a.b.c" or "*.b.c"). */
  readonly pattern: string;
  /** Policies with a pattern covering this one: allowed wherever the connection reaches this branch. */
  readonly policies: PolicySet;
}

/** Source keys allowed by the same set of policies; they always travel together. */
export interface SourceGroup {
  readonly policies: PolicySet;
  /** Canonical source CIDRs, or [ANY_SOURCE]. */
  readonly keys: readonly string[];
}

export interface AllowlistTree {
  /** The policies, sorted by name; PolicySet indexes point here. */
  readonly policies: readonly Policy[];
  /** Port branches with something to allow; port 0 (any port) first when present. */
  readonly ports: readonly PortBranch[];
  /** Server-name branches kept under the catch-all destination; each prefix keeps a subset (PrefixBranch.serverNames). */
  readonly serverNames: readonly ServerNameBranch[];
  readonly sourceGroups: readonly SourceGroup[];
}

const byName = (a: Policy, b: Policy): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Source keys of a policy: absent sources mean every source. */
function sourceKeysOf(policy: Policy): string[] {
  return policy.sources === undefined ? [ANY_SOURCE] : cidrKeysOf(policy.sources);
}

export function intersects(a: PolicySet, b: PolicySet): boolean {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  for (const i of small) if (large.has(i)) return true;
  return false;
}

/**
 * Walks values from least to most specific and keeps a value only when its allowed
 * sources differ from those of the nearest kept value Envoy would fall back to.
 */
function keepDistinct<T>(
  values: readonly T[],
  parentOf: (value: T) => T | undefined,
  sourcesOf: (value: T) => string,
  rootSources: string,
): T[] {
  const effective = new Map<T, string>();
  const kept = new Set<T>();
  const resolve = (value: T): string => {
    const known = effective.get(value);
    if (known !== undefined) return known;
    const parent = parentOf(value);
    const fallback = parent === undefined ? rootSources : resolve(parent);
    const own = sourcesOf(value);
    if (own !== fallback) kept.add(value);
    effective.set(value, own);
    return own;
  };
  values.forEach(resolve);
  return values.filter((v) => kept.has(v));
}

function serverNameBranches(policies: readonly Policy[], sourcesOf: (set: PolicySet) => string): ServerNameBranch[] {
  const patterns = [...new Set(policies.flatMap((p) => p.allow.sni))].sort();
  const branches = new Map<string, ServerNameBranch>();
  for (const pattern of patterns) {
    const covering = new Set<number>();
    policies.forEach((policy, i) => {
      if (policy.allow.sni.some((by) => patternCovers(by, pattern))) covering.add(i);
    });
    branches.set(pattern, { pattern, policies: covering });
  }
  // The catch-all server-name branch carries no SNI allows.
  return keepDistinct([...branches.values()], serverNameParents([...branches.values()]), (b) => sourcesOf(b.policies), NO_SOURCES_FORM);
}

/** Envoy's fallback among these branches: the longest wildcard suffix present. */
function serverNameParents(branches: readonly ServerNameBranch[]): (b: ServerNameBranch) => ServerNameBranch | undefined {
  const byPattern = new Map(branches.map((b) => [b.pattern, b]));
  return (b) => {
    const ancestor = wildcardAncestors(b.pattern).find((w) => byPattern.has(w));
    return ancestor === undefined ? undefined : byPattern.get(ancestor);
  };
}

interface CidrRule {
  readonly policy: number;
  readonly cidr: Cidr;
}

function prefixBranches(
  rules: readonly CidrRule[],
  serverNames: readonly ServerNameBranch[],
  sourcesOf: (set: PolicySet) => string,
): PrefixBranch[] {
  const values = new Map<string, Cidr>();
  for (const rule of rules) for (const cidr of splitDefaultRoute(rule.cidr)) values.set(formatCidr(cidr), cidr);
  const all = [...values].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([key, cidr]) => ({
    key,
    cidr,
    policies: new Set(rules.filter((r) => cidrContains(r.cidr, cidr)).map((r) => r.policy)),
  }));
  // Envoy's longest-prefix match: the fallback of a prefix is the longest other value holding it.
  // A prefix's whole subtree follows from its cidr sources, so comparing those decides it.
  const parentOf = (b: (typeof all)[number]): (typeof all)[number] | undefined => {
    let best: (typeof all)[number] | undefined;
    for (const other of all) {
      if (other !== b && cidrContains(other.cidr, b.cidr) && other.cidr.prefixLength < b.cidr.prefixLength) {
        if (!best || other.cidr.prefixLength > best.cidr.prefixLength) best = other;
      }
    }
    return best;
  };
  // The catch-all destination branch carries no cidr allows.
  const kept = keepDistinct(all, parentOf, (b) => sourcesOf(b.policies), NO_SOURCES_FORM);
  const nameParents = serverNameParents(serverNames);
  return kept.map((prefix) => ({
    ...prefix,
    // In this row a name's cell allows the cidr sources plus its own; the row's catch-all cell, the cidr sources.
    serverNames: keepDistinct(
      serverNames,
      nameParents,
      (name) => sourcesOf(new Set([...prefix.policies, ...name.policies])),
      sourcesOf(prefix.policies),
    ),
  }));
}

/** Cidr rules that apply to connections on `port` (0: any port no rule names). */
function rulesForPort(policies: readonly Policy[], port: number): CidrRule[] {
  const rules: CidrRule[] = [];
  policies.forEach((policy, i) => {
    for (const rule of policy.allow.cidrs ?? []) {
      const applies = rule.ports === undefined || (port !== 0 && rule.ports.includes(port));
      if (applies) rules.push({ policy: i, cidr: mustParseCidr(rule.cidr) });
    }
  });
  return rules;
}

const portSignature = (prefixes: readonly PrefixBranch[], sourcesOf: (set: PolicySet) => string): string =>
  prefixes.map((b) => `${b.key}=${sourcesOf(b.policies)}`).join(';');

export function buildAllowlistTree(unsorted: readonly Policy[]): AllowlistTree {
  const policies = [...unsorted].sort(byName);
  const keysByPolicy = policies.map(sourceKeysOf);

  const coverCache = new Map<string, string>();
  const sourcesOf = (set: PolicySet): string => {
    const id = [...set].sort((a, b) => a - b).join(',');
    let form = coverCache.get(id);
    if (form === undefined) {
      form = coverForm([...set].flatMap((i) => keysByPolicy[i] ?? []));
      coverCache.set(id, form);
    }
    return form;
  };

  const serverNames = serverNameBranches(policies, sourcesOf);

  const anyPort: PortBranch = { port: 0, prefixes: prefixBranches(rulesForPort(policies, 0), serverNames, sourcesOf) };
  const anySignature = portSignature(anyPort.prefixes, sourcesOf);
  const namedPorts = [...new Set(policies.flatMap((p) => (p.allow.cidrs ?? []).flatMap((r) => r.ports ?? [])))]
    .filter((port) => port > 0)
    .sort((a, b) => a - b);
  const ports: PortBranch[] = [];
  const hasServerNames = serverNames.length > 0;
  if (hasServerNames || anyPort.prefixes.length > 0) ports.push(anyPort);
  for (const port of namedPorts) {
    const branch: PortBranch = { port, prefixes: prefixBranches(rulesForPort(policies, port), serverNames, sourcesOf) };
    // Same prefixes deciding the same way as the any-port branch: Envoy may fall through to it.
    if (portSignature(branch.prefixes, sourcesOf) !== anySignature) ports.push(branch);
  }

  // Group source keys by the exact set of policies that name them.
  const policiesByKey = new Map<string, Set<number>>();
  keysByPolicy.forEach((keys, i) => {
    for (const key of keys) {
      let set = policiesByKey.get(key);
      if (!set) policiesByKey.set(key, (set = new Set()));
      set.add(i);
    }
  });
  const groups = new Map<string, { policies: Set<number>; keys: string[] }>();
  for (const [key, set] of policiesByKey) {
    const id = [...set].sort((a, b) => a - b).join(',');
    let group = groups.get(id);
    if (!group) groups.set(id, (group = { policies: set, keys: [] }));
    group.keys.push(key);
  }
  const sourceGroups = [...groups.entries()]
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([, g]) => ({ policies: g.policies, keys: sortCidrKeys(g.keys) }));

  return { policies, ports, serverNames, sourceGroups };
}
