// What each source may do, as the hardened matcher needs it: every source range a policy
// names, with the union of the policies that select it (its own, those naming a range
// around it, and those naming no sources), reduced to
//   - destination ranges allowed by address, each with the complete set of ports allowed
//     there (its own rules' and those of every range around it), grouped by that set;
//   - server-name patterns, each with where it goes (the name, or the original destination).
// Envoy's IP matcher takes the longest range first, so each entry carries its whole verdict;
// the less specific ranges it may hand a no-match to allow a subset of it (hardenedMatcher.ts).
import { cidrContains, compareCidrs, formatCidr, mustParseCidr, type Cidr } from '../net/ip.js';
import type { Policy, PolicyUpstream } from '../policy/model.js';
import { ANY_SOURCE, cidrKeysOf, cidrOfKey, splitDefaultRoute } from './cidrKeys.js';
import { compareKeyed, compareServerNames, coveringPatterns, serverNameSortKey, sortServerNames } from './serverNames.js';

/** Allowed destination ranges sharing one port set. */
export interface CidrGroup {
  /** Canonical destination CIDRs (a /0 as its two /1 halves), sorted. */
  readonly cidrs: readonly string[];
  /** Sorted ports, or undefined for every port. */
  readonly ports: readonly number[] | undefined;
}

export interface SourcePlan {
  /** The canonical source CIDR, or ANY_SOURCE for sources no policy names. */
  readonly key: string;
  /** The policies selecting the source, sorted by name. */
  readonly policies: readonly Policy[];
  readonly cidrGroups: readonly CidrGroup[];
  /** The patterns allowed, by where their connections go. */
  readonly serverNames: ServerNameLists;
}

const byName = (a: Policy, b: Policy): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** The source keys each policy names; undefined for a policy without sources (every source). */
function sourceKeys(policy: Policy): string[] | undefined {
  if (policy.sources === undefined) return undefined;
  // Policies are immutable values: parse each one's sources once.
  let keys = sourceKeysOf.get(policy);
  if (!keys) sourceKeysOf.set(policy, (keys = cidrKeysOf(policy.sources)));
  return keys;
}
const sourceKeysOf = new WeakMap<Policy, string[]>();

/** Which policies select each key, as indices into the name-sorted policy list. */
interface Layout {
  /** Per policy (name-sorted): its name and source keys; a new layout when any differs. */
  readonly tokens: readonly string[];
  readonly keys: readonly string[];
  readonly indices: readonly (readonly number[])[];
}

function layoutOf(policies: readonly Policy[], tokens: readonly string[]): Layout {
  const everywhere: number[] = [];
  const named = new Map<string, number[]>();
  policies.forEach((policy, i) => {
    const keys = sourceKeys(policy);
    if (keys === undefined) everywhere.push(i);
    for (const key of keys ?? []) {
      let list = named.get(key);
      if (!list) named.set(key, (list = []));
      if (list[list.length - 1] !== i) list.push(i);
    }
  });
  const keys: string[] = [ANY_SOURCE];
  const indices: number[][] = [everywhere];
  const stack: { cidr: Cidr; policies: Set<number> }[] = [];
  const sorted = [...named.keys()].map((key) => ({ key, cidr: cidrOfKey(key) })).sort((a, b) => compareCidrs(a.cidr, b.cidr));
  for (const { key, cidr } of sorted) {
    while (stack.length > 0 && !cidrContains(stack[stack.length - 1]!.cidr, cidr)) stack.pop();
    const inherited = new Set([...(stack[stack.length - 1]?.policies ?? []), ...named.get(key)!]);
    stack.push({ cidr, policies: inherited });
    keys.push(key);
    // Indices into the name-sorted list: numeric order is name order.
    indices.push([...new Set([...everywhere, ...inherited])].sort((a, b) => a - b));
  }
  return { tokens, keys, indices };
}

/** What of a policy decides where it sits in policiesBySource: its name and sources. */
const tokenOf = (policy: Policy): string => {
  let token = tokens.get(policy);
  if (token === undefined) tokens.set(policy, (token = `${policy.name}\u0000${sourceKeys(policy)?.join(',') ?? '*'}`));
  return token;
};
const tokens = new WeakMap<Policy, string>();

// The last call's answer: a compile after an edit gets the same array objects for every key
// whose policies are the same objects, so later steps can tell unchanged sources by identity.
let last: { layout: Layout; policies: readonly Policy[]; lists: readonly Policy[][] } | undefined;

/** Forgets the last answer (benchmarks measure cold compiles with it). */
export function resetSourcePlanCache(): void {
  last = undefined;
}

const sortedByName = (policies: readonly Policy[]): readonly Policy[] => {
  for (let i = 1; i < policies.length; i++) if (byName(policies[i - 1]!, policies[i]!) > 0) return [...policies].sort(byName);
  return policies;
};

/**
 * Every named source key with the policies that select all of its addresses: a key's own
 * policies and those of every key holding it (keys nest or are disjoint), plus the
 * source-less ones. ANY_SOURCE gets the source-less ones alone. Keys in address order
 * (ANY_SOURCE first), each list sorted by name. The lists may be shared with the previous
 * call's answer: never change them.
 */
export function policiesBySource(unsorted: readonly Policy[]): Map<string, Policy[]> {
  const policies = sortedByName(unsorted);
  const policyTokens = policies.map(tokenOf);
  const previous = last;
  const sameLayout =
    previous !== undefined && previous.layout.tokens.length === policyTokens.length && policyTokens.every((token, i) => token === previous.layout.tokens[i]);
  const layout = sameLayout ? previous.layout : layoutOf(policies, policyTokens);
  const changed = sameLayout ? policies.map((policy, i) => policy !== previous.policies[i]) : undefined;
  const lists = layout.indices.map((indices, k) =>
    changed && !indices.some((i) => changed[i]) ? previous!.lists[k]! : indices.map((i) => policies[i]!),
  );
  last = { layout, policies, lists };
  const result = new Map<string, Policy[]>();
  layout.keys.forEach((key, k) => result.set(key, lists[k]!));
  return result;
}

/**
 * The destination ranges the policies allow by address, each with every port allowed there
 * (ports of the rules on it and on every range holding it; undefined = all ports), the
 * listener's own port left out (the loop guard refuses it first anyway).
 */
export function cidrGroupsOf(policies: readonly Policy[], listenerPort: number): CidrGroup[] {
  const rules = new Map<string, { cidr: Cidr; ports: Set<number> | undefined }>();
  for (const policy of policies) {
    for (const rule of policy.allow.cidrs ?? []) {
      for (const cidr of splitDefaultRoute(mustParseCidr(rule.cidr))) {
        const key = formatCidr(cidr);
        let entry = rules.get(key);
        if (!entry) rules.set(key, (entry = { cidr, ports: new Set() }));
        if (rule.ports === undefined) entry.ports = undefined;
        else if (entry.ports) for (const port of rule.ports) if (port !== listenerPort) entry.ports.add(port);
      }
    }
  }
  const stack: { cidr: Cidr; ports: Set<number> | undefined }[] = [];
  const groups = new Map<string, { cidrs: string[]; ports: number[] | undefined }>();
  for (const [key, { cidr, ports }] of [...rules].sort((a, b) => compareCidrs(a[1].cidr, b[1].cidr))) {
    while (stack.length > 0 && !cidrContains(stack[stack.length - 1]!.cidr, cidr)) stack.pop();
    const outer = stack[stack.length - 1];
    const all = outer === undefined ? ports : outer.ports === undefined || ports === undefined ? undefined : new Set([...outer.ports, ...ports]);
    stack.push({ cidr, ports: all });
    const list = all === undefined ? undefined : [...all].sort((a, b) => a - b);
    // A range whose every port is the listener's allows nothing the loop guard lets through.
    if (list !== undefined && list.length === 0) continue;
    const id = list === undefined ? '*' : list.join(',');
    let group = groups.get(id);
    if (!group) groups.set(id, (group = { cidrs: [], ports: list }));
    group.cidrs.push(key);
  }
  return [...groups.values()];
}

// Each policy's patterns in output order with their sort keys, kept per policy object
// (policies are immutable values): a source's names are then a merge of its few policies'
// lists, not a sort.
interface Sorted {
  readonly names: readonly string[];
  readonly keys: readonly string[];
}
const sortedPatterns = new WeakMap<Policy, Sorted>();
function patternsOf(policy: Policy): Sorted {
  let sorted = sortedPatterns.get(policy);
  if (!sorted) {
    const names = sortServerNames(policy.allow.sni);
    sortedPatterns.set(policy, (sorted = { names, keys: names.map(serverNameSortKey) }));
  }
  return sorted;
}

/** Two lists in compareServerNames order, merged, without duplicates. */
function mergePatterns(a: Sorted, b: Sorted): Sorted {
  if (a.names.length === 0) return b;
  if (b.names.length === 0) return a;
  const names: string[] = [];
  const keys: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.names.length && j < b.names.length) {
    const ka = a.keys[i]!;
    const kb = b.keys[j]!;
    const na = a.names[i]!;
    const nb = b.names[j]!;
    const order = compareKeyed(ka, na, kb, nb);
    if (order <= 0) {
      names.push(na);
      keys.push(ka);
      i++;
      if (order === 0) j++;
    } else {
      names.push(nb);
      keys.push(kb);
      j++;
    }
  }
  for (; i < a.names.length; i++) names.push(a.names[i]!), keys.push(a.keys[i]!);
  for (; j < b.names.length; j++) names.push(b.names[j]!), keys.push(b.keys[j]!);
  return { names, keys };
}

/** A source's allowed patterns by where their connections go, each list in compareServerNames order. */
export interface ServerNameLists {
  readonly byName: readonly string[];
  readonly byOriginal: readonly string[];
}

/**
 * Each pattern the policies allow, by where its connections go: the name, unless every
 * policy allowing them (those with the pattern or a wildcard above it) chose the original
 * destination. In compareServerNames order (DNS labels from the right), the order the
 * matcher and the route tables emit them in. Lists, not a Map: a cold compile of a host
 * asks twice per source, and growing a Map per answer was a sixth of what it allocated.
 * The lists may be shared (a policy's own): never change them.
 */
export function serverNameLists(policies: readonly Policy[]): ServerNameLists {
  let merged: Sorted = { names: [], keys: [] };
  for (const policy of policies) if (policy.allow.sni.length > 0) merged = mergePatterns(merged, patternsOf(policy));
  const patterns = merged.names;
  // The usual case: no policy chose the original destination, so every pattern goes to the
  // name (each pattern is allowed at least by its own policy); no wildcard walk needed.
  if (!policies.some((p) => p.upstream === 'original-destination')) return { byName: patterns, byOriginal: [] };
  const writers = new Map<string, Policy[]>();
  for (const policy of policies) {
    for (const pattern of policy.allow.sni) {
      const list = writers.get(pattern);
      if (list) list.push(policy);
      else writers.set(pattern, [policy]);
    }
  }
  const byName: string[] = [];
  const byOriginal: string[] = [];
  for (const pattern of patterns) {
    const allowing = coveringPatterns(pattern).flatMap((p) => writers.get(p) ?? []);
    (allowing.every((p) => p.upstream === 'original-destination') ? byOriginal : byName).push(pattern);
  }
  return { byName, byOriginal };
}

/** serverNameLists as one map, pattern → where it goes, in the same order. */
export function serverNamesOf(policies: readonly Policy[]): Map<string, PolicyUpstream> {
  const { byName, byOriginal } = serverNameLists(policies);
  const result = new Map<string, PolicyUpstream>();
  let i = 0;
  let j = 0;
  // Merged back into one compareServerNames order.
  while (i < byName.length || j < byOriginal.length) {
    if (j >= byOriginal.length || (i < byName.length && compareServerNames(byName[i]!, byOriginal[j]!) < 0)) result.set(byName[i++]!, 'name');
    else result.set(byOriginal[j++]!, 'original-destination');
  }
  return result;
}

export function sourcePlan(key: string, policies: readonly Policy[], listenerPort: number): SourcePlan {
  return { key, policies, cidrGroups: cidrGroupsOf(policies, listenerPort), serverNames: serverNameLists(policies) };
}

export { ANY_SOURCE };
