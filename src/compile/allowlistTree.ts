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
import { cidrContains, compareCidrs, formatCidr, mustParseCidr, type Cidr } from '../net/ip.js';
import type { Policy } from '../policy/model.js';
import { ANY_SOURCE, cidrKeysOf, splitDefaultRoute, sortCidrKeys } from './cidrKeys.js';
import { coveringPatterns, wildcardAncestors } from './serverNames.js';
import { NO_SOURCES, addsSources, beyond, coverForm, coverOf, unionCovers, type SourceCover } from './sourceCover.js';

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

/** The sources a policy set allows. */
type SourcesOf = (set: PolicySet) => SourceCover;

const byName = (a: Policy, b: Policy): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
const ascending = (a: number, b: number): number => a - b;

/** Source keys of a policy: absent sources mean every source. */
function sourceKeysOf(policy: Policy): string[] {
  return policy.sources === undefined ? [ANY_SOURCE] : cidrKeysOf(policy.sources);
}

/**
 * Keeps the values whose allowed sources differ from those of the value Envoy would
 * fall back to without them (their parent, else the catch-all allowing `rootSources`).
 * A parent never allows more than its child, so "differ" is "allow a source the parent does not".
 */
function keepDistinct<T>(
  values: readonly T[],
  parentOf: (value: T) => T | undefined,
  sourcesOf: (value: T) => SourceCover,
  rootSources: SourceCover,
): T[] {
  return values.filter((value) => {
    const parent = parentOf(value);
    return addsSources(sourcesOf(value), parent === undefined ? rootSources : sourcesOf(parent));
  });
}

function serverNameBranches(policies: readonly Policy[], sourcesOfPolicies: (list: readonly number[]) => SourceCover): ServerNameBranch[] {
  const writers = new Map<string, number[]>();
  policies.forEach((policy, i) => {
    for (const pattern of policy.allow.sni) {
      const list = writers.get(pattern);
      if (!list) writers.set(pattern, [i]);
      else if (list[list.length - 1] !== i) list.push(i);
    }
  });
  // A pattern is allowed by its writers and, through Envoy's fallback (the longest wildcard
  // suffix written), by every wildcard above it. A wildcard in every policy puts every policy
  // under each name below it, so decide on the writers' sources and the fallback's, never on
  // the sets of all covering policies.
  const parentOf = (pattern: string): string | undefined => wildcardAncestors(pattern).find((w) => writers.has(w));
  const writtenSources = (pattern: string): SourceCover => sourcesOfPolicies(writers.get(pattern) ?? []);
  const allowed = new Map<string, SourceCover>();
  const allowedSources = (pattern: string): SourceCover => {
    let cover = allowed.get(pattern);
    if (!cover) {
      const parent = parentOf(pattern);
      cover = parent === undefined ? writtenSources(pattern) : unionCovers(writtenSources(pattern), allowedSources(parent));
      allowed.set(pattern, cover);
    }
    return cover;
  };
  // The catch-all server-name branch carries no SNI allows.
  const kept = [...writers.keys()].sort().filter((pattern) => {
    const parent = parentOf(pattern);
    return addsSources(writtenSources(pattern), parent === undefined ? NO_SOURCES : allowedSources(parent));
  });
  return kept.map((pattern) => {
    const covering = coveringPatterns(pattern).flatMap((by) => writers.get(by) ?? []);
    return { pattern, policies: new Set(covering.sort(ascending)) };
  });
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

type Prefix = Omit<PrefixBranch, 'serverNames'>;

/**
 * Each destination value with the policies of the rules covering it and its longest-prefix
 * fallback. In address order the values holding the current one form a stack (CIDRs nest
 * or are disjoint), so one sorted pass finds both.
 */
function prefixesWithParents(rules: readonly CidrRule[]): { prefixes: Prefix[]; parentOf: (p: Prefix) => Prefix | undefined } {
  const named = new Map<string, { cidr: Cidr; policies: number[] }>();
  for (const rule of rules) {
    for (const cidr of splitDefaultRoute(rule.cidr)) {
      const key = formatCidr(cidr);
      let value = named.get(key);
      if (!value) named.set(key, (value = { cidr, policies: [] }));
      value.policies.push(rule.policy);
    }
  }
  const parents = new Map<Prefix, Prefix | undefined>();
  const stack: Prefix[] = [];
  for (const [key, value] of [...named].sort((a, b) => compareCidrs(a[1].cidr, b[1].cidr))) {
    while (stack.length > 0 && !cidrContains(stack[stack.length - 1]!.cidr, value.cidr)) stack.pop();
    const parent = stack[stack.length - 1];
    const policies = new Set([...(parent?.policies ?? []), ...value.policies].sort(ascending));
    const prefix: Prefix = { key, cidr: value.cidr, policies };
    parents.set(prefix, parent);
    stack.push(prefix);
  }
  const prefixes = [...parents.keys()].sort((a, b) => (a.key < b.key ? -1 : 1));
  return { prefixes, parentOf: (p) => parents.get(p) };
}

/**
 * In a prefix's row a name's cell allows the cidr sources plus its own, and falls back to
 * its parent's cell (or, without one, to the row's catch-all: the cidr sources). What a name
 * adds to its parent does not depend on the row, so it is found once; a row keeps the names
 * whose addition its cidr sources do not already hold.
 */
function rowAdditions(serverNames: readonly ServerNameBranch[], sourcesOf: SourcesOf): Map<ServerNameBranch, SourceCover> {
  const parentOf = serverNameParents(serverNames);
  return new Map(
    serverNames.map((name) => {
      const parent = parentOf(name);
      return [name, beyond(sourcesOf(name.policies), parent === undefined ? NO_SOURCES : sourcesOf(parent.policies))];
    }),
  );
}

function prefixBranches(
  rules: readonly CidrRule[],
  serverNames: readonly ServerNameBranch[],
  additions: ReadonlyMap<ServerNameBranch, SourceCover>,
  sourcesOf: SourcesOf,
): PrefixBranch[] {
  const { prefixes, parentOf } = prefixesWithParents(rules);
  // A prefix's whole subtree follows from its cidr sources, so comparing those decides it.
  // The catch-all destination branch carries no cidr allows.
  const kept = keepDistinct(prefixes, parentOf, (p) => sourcesOf(p.policies), NO_SOURCES);
  return kept.map((prefix) => {
    const cidrSources = sourcesOf(prefix.policies);
    return { ...prefix, serverNames: serverNames.filter((name) => addsSources(additions.get(name)!, cidrSources)) };
  });
}

/** The cidr rules by the port they name (0: rules for every port), parsed once. */
function rulesByPort(policies: readonly Policy[]): Map<number, CidrRule[]> {
  const byPort = new Map<number, CidrRule[]>([[0, []]]);
  policies.forEach((policy, i) => {
    for (const rule of policy.allow.cidrs ?? []) {
      const parsed: CidrRule = { policy: i, cidr: mustParseCidr(rule.cidr) };
      for (const port of rule.ports ?? [0]) {
        if (rule.ports !== undefined && port <= 0) continue;
        let list = byPort.get(port);
        if (!list) byPort.set(port, (list = []));
        list.push(parsed);
      }
    }
  });
  return byPort;
}

export function buildAllowlistTree(unsorted: readonly Policy[]): AllowlistTree {
  const policies = [...unsorted].sort(byName);
  const keysByPolicy = policies.map(sourceKeysOf);

  const sourcesOfPolicies = (list: Iterable<number>): SourceCover => coverOf([...list].flatMap((i) => keysByPolicy[i] ?? []));
  // The tree's policy sets are built once and shared, so their sources are computed once each.
  const covers = new Map<PolicySet, SourceCover>();
  const sourcesOf: SourcesOf = (set) => {
    let cover = covers.get(set);
    if (!cover) covers.set(set, (cover = sourcesOfPolicies(set)));
    return cover;
  };
  const portSignature = (prefixes: readonly PrefixBranch[]): string =>
    prefixes.map((b) => `${b.key}=${coverForm(sourcesOf(b.policies))}`).join(';');

  const serverNames = serverNameBranches(policies, sourcesOfPolicies);
  const additions = rowAdditions(serverNames, sourcesOf);

  const rules = rulesByPort(policies);
  const anyPortRules = rules.get(0) ?? [];
  const anyPort: PortBranch = { port: 0, prefixes: prefixBranches(anyPortRules, serverNames, additions, sourcesOf) };
  const anySignature = portSignature(anyPort.prefixes);
  const namedPorts = [...rules.keys()].filter((port) => port > 0).sort(ascending);
  const ports: PortBranch[] = [];
  const hasServerNames = serverNames.length > 0;
  if (hasServerNames || anyPort.prefixes.length > 0) ports.push(anyPort);
  for (const port of namedPorts) {
    const portRules = [...anyPortRules, ...(rules.get(port) ?? [])];
    const branch: PortBranch = { port, prefixes: prefixBranches(portRules, serverNames, additions, sourcesOf) };
    // Same prefixes deciding the same way as the any-port branch: Envoy may fall through to it.
    if (portSignature(branch.prefixes) !== anySignature) ports.push(branch);
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
