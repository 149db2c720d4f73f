// Envoy's Listener.filter_chain_matcher (the unified matcher, xds.type.matcher.v3.Matcher)
// as a pure function, and the checks Envoy makes when it builds one.
//
// Modelled on envoyproxy/envoy:
//   source/common/listener_manager/filter_chain_manager_impl.cc  FilterChainNameAction: the
//     action is a google.protobuf.StringValue naming a filter chain; no match (or a name no
//     chain has) → default_filter_chain, else the connection is closed.
//   source/common/matcher/matcher.h, map_matcher.h, exact_map_matcher.h, prefix_map_matcher.h:
//     a tree's input is read, the map looked up; a found OnMatch is an action or a nested
//     matcher; a nested matcher that does not match is not a match here either, and the
//     map's on_no_match is taken instead (newer releases; older ones returned no-match);
//     prefix_match_map tries the matching prefixes longest first.
//   source/extensions/common/matcher/trie_matcher.h (ip_range_matcher): the IPMatcher's
//     ranges holding the address, longest prefix first, then declaration order; a
//     candidate whose nested matcher does not match hands over to the next one, except
//     that exclusive candidates are only tried when they are the first; then on_no_match.
//   source/extensions/common/matcher/domain_matcher.h (ServerNameMatcher): the exact name,
//     then "*.suffix" entries by longest suffix ("*.b.c" matches any depth below b.c, never
//     b.c itself), then "*"; then on_no_match. An empty or absent server name → on_no_match.
//   source/common/network/matching/inputs.cc: destination/source IP as text, ports as
//     decimal text, server name (absent when empty), transport protocol, ALPN joined by ",".
//
// A map matcher's "nested no-match → on_no_match" differs across Envoy releases, so the
// egress compiler never relies on it: evaluateMatcher reports it (`fellThrough`) and tests
// assert no generated tree depends on one. The IP range matcher's hand-over (a nested
// no-match → the next, less specific range → its on_no_match) is the same in every release
// since 1.22 (trie_matcher.h, now ip_range_matcher.h: evaluateMatch of the nested tree then, handleRecursionAndSkips
// now, both going on to the next node and then on_no_match), so the compiler may rely on
// it; it is reported apart (`backtracked`). Inputs, custom matchers and actions are told
// apart by their typed_config's type URL, as Envoy's factories are found
// (source/common/matcher/matcher.h, Config::Utility::getAndCheckFactory): never by name.
import { cidrContainsIp, familyBits, parseIp, type Cidr } from '../net/ip.js';
import type { FilterChainMatchInput } from './filterChainMatch.js';
import type { CidrRangeJson, FilterChainJson, ListenerJson, MatcherJson, OnMatchJson, TypedExtensionJson } from './resources.js';
import { TypeUrl } from './typeUrls.js';

export interface MatcherEvaluation {
  /** The action reached, or undefined when the tree did not match. */
  readonly action?: TypedExtensionJson;
  /** One line per decision, root first: what was read and which branch it took. */
  readonly path: readonly string[];
  /** True when a map's or server-name matcher's nested no-match was handed to a less specific branch or an outer on_no_match. */
  readonly fellThrough: boolean;
  /** True when an IP range matcher handed a nested no-match to a less specific range or its on_no_match (stable since 1.22). */
  readonly backtracked: boolean;
}

interface Walk {
  readonly path: string[];
  fellThrough: boolean;
  backtracked: boolean;
}

/** A DataInput's value: a string, or undefined for Envoy's monostate (no value). */
function readInput(input: TypedExtensionJson, connection: FilterChainMatchInput): string | undefined {
  const type = input.typedConfig['@type'];
  switch (type) {
    case TypeUrl.DestinationIpInput:
      return connection.destinationIp;
    case TypeUrl.DestinationPortInput:
      return String(connection.destinationPort);
    case TypeUrl.SourceIpInput:
      return connection.sourceIp;
    case TypeUrl.DirectSourceIpInput:
      return connection.directSourceIp ?? connection.sourceIp;
    case TypeUrl.SourcePortInput:
      return String(connection.sourcePort ?? 0);
    case TypeUrl.ServerNameInput: {
      const name = (connection.serverName ?? '').toLowerCase();
      return name === '' ? undefined : name;
    }
    case TypeUrl.TransportProtocolInput:
      return connection.transportProtocol ?? ((connection.serverName ?? '') !== '' ? 'tls' : 'raw_buffer');
    case TypeUrl.ApplicationProtocolInput: {
      const alpn = connection.applicationProtocols ?? [];
      return alpn.length === 0 ? undefined : alpn.join(',');
    }
    default:
      throw new Error(`filter_chain_matcher: input ${String(type)} is not modelled`);
  }
}

const INPUT_LABELS: Record<string, string> = {
  [TypeUrl.DestinationIpInput]: 'destination_ip',
  [TypeUrl.DestinationPortInput]: 'destination_port',
  [TypeUrl.SourceIpInput]: 'source_ip',
  [TypeUrl.DirectSourceIpInput]: 'direct_source_ip',
  [TypeUrl.SourcePortInput]: 'source_port',
  [TypeUrl.ServerNameInput]: 'server_name',
  [TypeUrl.TransportProtocolInput]: 'transport_protocol',
  [TypeUrl.ApplicationProtocolInput]: 'application_protocol',
};
const inputLabel = (input: TypedExtensionJson): string => INPUT_LABELS[String(input.typedConfig['@type'])] ?? 'input';

/** xds.core.v3.CidrRange → Cidr, host bits cleared as CidrRange::create does; undefined when invalid. */
export function cidrOfRange(range: CidrRangeJson): Cidr | undefined {
  const ip = parseIp(range.addressPrefix);
  const length = range.prefixLen ?? 0;
  if (!ip || !Number.isInteger(length) || length < 0 || length > familyBits(ip.family)) return undefined;
  const bits = BigInt(familyBits(ip.family));
  const hostMask = (1n << (bits - BigInt(length))) - 1n;
  return { family: ip.family, network: ip.value & ~hostMask & ((1n << bits) - 1n), prefixLength: length };
}

/** Result of one OnMatch: an action, or undefined when its nested matcher did not match. */
function onMatch(on: OnMatchJson, connection: FilterChainMatchInput, walk: Walk): TypedExtensionJson | undefined {
  if (on.action) return on.action;
  if (on.matcher) return matchTree(on.matcher, connection, walk);
  throw new Error('filter_chain_matcher: an OnMatch with neither matcher nor action');
}

/** Tries candidates in order; the first that matches wins, a later try after a miss is a fall-through. */
function firstMatch(
  candidates: readonly { label: string; on: OnMatchJson }[],
  connection: FilterChainMatchInput,
  walk: Walk,
  ipRanges = false,
): TypedExtensionJson | undefined {
  let tried = false;
  for (const { label, on } of candidates) {
    if (tried) {
      if (ipRanges) walk.backtracked = true;
      else walk.fellThrough = true;
    }
    walk.path.push(label);
    const action = onMatch(on, connection, walk);
    if (action) return action;
    tried = true;
  }
  return undefined;
}

interface IpRangeMatcherJson {
  ranges: CidrRangeJson[];
  onMatch: OnMatchJson;
  exclusive?: boolean;
}

function matchIp(config: Record<string, unknown>, value: string | undefined, connection: FilterChainMatchInput, walk: Walk, label: string): TypedExtensionJson | undefined {
  const ip = value === undefined ? undefined : parseIp(value);
  if (!ip) return undefined;
  const candidates: { length: number; order: number; exclusive: boolean; range: string; on: OnMatchJson }[] = [];
  ((config['rangeMatchers'] ?? []) as IpRangeMatcherJson[]).forEach((matcher, order) => {
    for (const range of matcher.ranges) {
      const cidr = cidrOfRange(range);
      if (cidr && cidrContainsIp(cidr, ip)) {
        candidates.push({ length: cidr.prefixLength, order, exclusive: matcher.exclusive === true, range: `${range.addressPrefix}/${range.prefixLen}`, on: matcher.onMatch });
      }
    }
  });
  candidates.sort((a, b) => b.length - a.length || a.order - b.order);
  // trie_matcher.h: an exclusive candidate is skipped unless it is the most specific one.
  const eligible = candidates.filter((c, i) => i === 0 || !c.exclusive);
  return firstMatch(eligible.map((c) => ({ label: `${label} ${value} in ${c.range}`, on: c.on })), connection, walk, true);
}

interface DomainMatcherJson {
  domains: string[];
  onMatch: OnMatchJson;
}

function matchServerName(config: Record<string, unknown>, value: string | undefined, connection: FilterChainMatchInput, walk: Walk, label: string): TypedExtensionJson | undefined {
  if (value === undefined) return undefined;
  const exact = new Map<string, OnMatchJson>();
  const wildcard = new Map<string, OnMatchJson>();
  let global: OnMatchJson | undefined;
  for (const matcher of (config['domainMatchers'] ?? []) as DomainMatcherJson[]) {
    for (const domain of matcher.domains) {
      // buildDomainMatcherConfig: the first "*" wins; map inserts keep the first entry.
      if (domain === '*') global ??= matcher.onMatch;
      else if (domain.startsWith('*.')) wildcard.has(domain.slice(2)) || wildcard.set(domain.slice(2), matcher.onMatch);
      else exact.has(domain) || exact.set(domain, matcher.onMatch);
    }
  }
  const candidates: { label: string; on: OnMatchJson }[] = [];
  const hit = exact.get(value);
  if (hit) candidates.push({ label: `${label} ${value} = ${value}`, on: hit });
  // findAllWildcardMatches: the suffix after each dot, longest first.
  for (let dot = value.indexOf('.'); dot >= 0; dot = value.indexOf('.', dot + 1)) {
    const suffix = value.slice(dot + 1);
    const on = wildcard.get(suffix);
    if (on) candidates.push({ label: `${label} ${value} ~ *.${suffix}`, on });
  }
  if (global) candidates.push({ label: `${label} ${value} ~ *`, on: global });
  return firstMatch(candidates, connection, walk);
}

function matchTree(matcher: MatcherJson, connection: FilterChainMatchInput, walk: Walk): TypedExtensionJson | undefined {
  let action: TypedExtensionJson | undefined;
  let triedSomething = false;
  let ipRanges = false;
  const tree = matcher.matcherTree;
  if (tree) {
    const value = readInput(tree.input, connection);
    const label = inputLabel(tree.input);
    const before = walk.path.length;
    if (tree.exactMatchMap) {
      const on = value === undefined ? undefined : tree.exactMatchMap.map[value];
      if (on) action = firstMatch([{ label: `${label}=${value}`, on }], connection, walk);
    } else if (tree.prefixMatchMap) {
      const keys = value === undefined ? [] : Object.keys(tree.prefixMatchMap.map).filter((k) => value.startsWith(k));
      keys.sort((a, b) => b.length - a.length);
      action = firstMatch(keys.map((k) => ({ label: `${label} ${value} starts with "${k}"`, on: tree.prefixMatchMap!.map[k]! })), connection, walk);
    } else if (tree.customMatch) {
      const type = tree.customMatch.typedConfig['@type'];
      ipRanges = type === TypeUrl.IpMatcher;
      if (type === TypeUrl.IpMatcher) action = matchIp(tree.customMatch.typedConfig, value, connection, walk, label);
      else if (type === TypeUrl.ServerNameMatcher) action = matchServerName(tree.customMatch.typedConfig, value, connection, walk, label);
      else throw new Error(`filter_chain_matcher: custom matcher ${String(type)} is not modelled`);
    } else {
      throw new Error('filter_chain_matcher: a matcher_tree without a tree type');
    }
    triedSomething = walk.path.length > before;
    if (!action && !triedSomething) walk.path.push(`${label}=${value ?? '(none)'}: no entry`);
  } else if (matcher.matcherList) {
    throw new Error('filter_chain_matcher: matcher_list is not modelled (the compiler writes matcher_tree only)');
  }
  if (action) return action;
  if (!matcher.onNoMatch) return undefined;
  // A branch was taken and did not match: Envoy's newer map matchers then take on_no_match.
  if (triedSomething) {
    if (ipRanges) {
      walk.backtracked = true;
      // Say so in /v1/check's path: the ranges' subtrees did not match, on_no_match decides.
      walk.path.push(`${tree ? inputLabel(tree.input) : 'input'}: no range's subtree matched → on_no_match`);
    } else walk.fellThrough = true;
  }
  return onMatch(matcher.onNoMatch, connection, walk);
}

/** Walks a filter_chain_matcher for one connection. */
export function evaluateMatcher(matcher: MatcherJson, connection: FilterChainMatchInput): MatcherEvaluation {
  const walk: Walk = { path: [], fellThrough: false, backtracked: false };
  const action = matchTree(matcher, connection, walk);
  return { ...(action && { action }), path: walk.path, fellThrough: walk.fellThrough, backtracked: walk.backtracked };
}

/** The filter chain name a filter-chain-name action carries; undefined for any other action. */
export function actionChainName(action: TypedExtensionJson | undefined): string | undefined {
  if (!action || action.typedConfig['@type'] !== TypeUrl.StringValue) return undefined;
  const value = action.typedConfig['value'];
  return typeof value === 'string' ? value : undefined;
}

export interface MatcherSelection {
  readonly chain: FilterChainJson | undefined;
  readonly path: readonly string[];
  readonly fellThrough: boolean;
  readonly backtracked: boolean;
}

/**
 * The chain Envoy uses under filter_chain_matcher: the named chain, else (no match, or a name
 * no chain carries) the default chain; undefined when there is none (the connection is closed).
 */
export function selectByMatcher(listener: ListenerJson, connection: FilterChainMatchInput): MatcherSelection {
  const matcher = listener.filterChainMatcher;
  if (!matcher) throw new Error('selectByMatcher: the listener has no filter_chain_matcher');
  const evaluation = evaluateMatcher(matcher, connection);
  const name = actionChainName(evaluation.action);
  const named = name === undefined ? undefined : listener.filterChains.find((c) => c.name === name);
  const chain = named ?? listener.defaultFilterChain;
  const path = [...evaluation.path, named ? `→ ${name}` : `→ default filter chain${chain ? ` ${chain.name ?? ''}` : ': none, closed'}`];
  return { chain, path, fellThrough: evaluation.fellThrough, backtracked: evaluation.backtracked };
}

export interface MatcherProblem {
  readonly message: string;
}

/** What Envoy refuses when it builds the listener's matcher (and what would make an action dangle). */
export function findMatcherProblems(listener: ListenerJson): MatcherProblem[] {
  const problems: MatcherProblem[] = [];
  const names = new Set<string>();
  for (const chain of listener.filterChains) {
    // filter_chain_manager_impl.cc: with a matcher, every chain needs a unique non-empty name.
    if (!chain.name) problems.push({ message: 'a filter chain without a name (the matcher selects chains by name)' });
    else if (names.has(chain.name)) problems.push({ message: `filter chain name "${chain.name}" is used twice` });
    else names.add(chain.name);
  }
  if (listener.filterChains.length === 0) {
    problems.push({ message: 'no filter_chains: Envoy cannot update the listener in place (supportUpdateFilterChain)' });
  }
  const visit = (m: MatcherJson | undefined, at: string): void => {
    if (!m) return;
    const tree = m.matcherTree;
    const on = (o: OnMatchJson | undefined, where: string): void => {
      if (!o) return;
      if ((o.action === undefined) === (o.matcher === undefined)) problems.push({ message: `${where}: OnMatch needs exactly one of matcher and action` });
      if (o.action) {
        const name = actionChainName(o.action);
        if (name === undefined) problems.push({ message: `${where}: action is not a filter chain name` });
        else if (!names.has(name)) problems.push({ message: `${where}: action names "${name}", which no filter chain has` });
      }
      visit(o.matcher, where);
    };
    if (tree) {
      readInput(tree.input, { sourceIp: '0.0.0.0', destinationIp: '0.0.0.0', destinationPort: 1 });
      for (const map of [tree.exactMatchMap, tree.prefixMatchMap]) {
        if (!map) continue;
        if (Object.keys(map.map).length === 0) problems.push({ message: `${at}: an empty match map (min_pairs 1)` });
        for (const [key, o] of Object.entries(map.map)) on(o, `${at}[${key}]`);
      }
      const custom = tree.customMatch?.typedConfig;
      if (custom?.['@type'] === TypeUrl.IpMatcher) {
        for (const [i, r] of ((custom['rangeMatchers'] ?? []) as IpRangeMatcherJson[]).entries()) {
          if (r.ranges.length === 0) problems.push({ message: `${at}.rangeMatchers[${i}]: no ranges` });
          for (const range of r.ranges) if (!cidrOfRange(range)) problems.push({ message: `${at}: invalid range ${range.addressPrefix}/${range.prefixLen}` });
          on(r.onMatch, `${at}.rangeMatchers[${i}]`);
        }
      } else if (custom?.['@type'] === TypeUrl.ServerNameMatcher) {
        const seen = new Set<string>();
        for (const [i, d] of ((custom['domainMatchers'] ?? []) as DomainMatcherJson[]).entries()) {
          if (d.domains.length === 0) problems.push({ message: `${at}.domainMatchers[${i}]: no domains` });
          for (const domain of d.domains) {
            // DomainTrieMatcherFactoryBase::validateConfiguration.
            if (seen.has(domain)) problems.push({ message: `${at}: duplicate domain in ServerNameMatcher: ${domain}` });
            seen.add(domain);
            const star = domain.indexOf('*');
            if (domain === '') problems.push({ message: `${at}: empty domain` });
            else if (domain !== '*' && star >= 0 && (star !== 0 || domain.length < 3 || domain[1] !== '.' || domain.indexOf('*', 1) >= 0)) {
              problems.push({ message: `${at}: invalid wildcard domain ${domain}` });
            }
          }
          on(d.onMatch, `${at}.domainMatchers[${i}]`);
        }
      }
    }
    on(m.onNoMatch, `${at}.onNoMatch`);
  };
  visit(listener.filterChainMatcher, 'filterChainMatcher');
  return problems;
}
