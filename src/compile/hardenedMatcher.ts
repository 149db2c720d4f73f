// The hardened listener's filter_chain_matcher: all the policy data, none in the chains.
//
//   destination_port (exact) ── the listener's own port → reject_loop
//     └ otherwise: transport_protocol (exact)
//         ├ "tls": server_name (ServerNameMatcher: the names of the policies shared by every
//         │   source that dial by name, "shared names")
//         │    ├ a shared name → source_ip (IPMatcher: each source range a policy names; else "any")
//         │    │    └ destination_ip (the source's address rules) → original_dst|SOURCE, else → name|SOURCE
//         │    └ otherwise: source_ip (IPMatcher: each source range a policy names; else "any source")
//         │        └ destination_ip (IPMatcher: ranges allowed by address, grouped by port set)
//         │            ├ every port, or destination_port (exact) in the group's ports → original_dst|SOURCE
//         │            └ otherwise: server_name (ServerNameMatcher) → name|SOURCE or original_dst|SOURCE
//         │                └ otherwise → the source's refusal (reject, or would_deny|SOURCE)
//         └ otherwise (no TLS, hence no server name):
//             destination_port 80 and application_protocol from http_inspector (plain HTTP):
//               source_ip → destination_ip (the source's address rules for port 80) → original_dst|SOURCE
//                          else → http|SOURCE (routed by Host, httpPath.ts)
//             anything else: source_ip (only the sources with address rules or an audit)
//               → destination_ip → original_dst|SOURCE, else → the source's refusal
//
// Each source's subtree is complete (it holds the policies of every range around it and of
// the source-less ones). Every map matcher's nested matchers end in an action, so Envoy never
// needs a map to fall back (that changed across releases); the one hand-over relied on is the
// IP range matcher's, the same in every release since 1.22 (cidrBranch, sourceFragment): a
// port map without on_no_match, and a server-name matcher without one for a source refused
// outright.
//
// Why the shared names come first: a source-less policy that dials by name allows its names
// to every source, by name, whatever else allows them (route.ts: the name wins unless every
// allowing policy chose the original destination), so only the source's address rules can
// still come first. Matching them once at the root, instead of in every source's subtree,
// makes the listener cost (sources + shared names) rather than (sources × shared names), and
// an edit of the shared names rebuilds the root alone.
//
// Why plain TCP has its own branch: without TLS there is no server name, so only the address
// rules and plain HTTP on port 80 can decide there; deciding "port 80, plain HTTP" once at
// that branch's root costs each source one range entry (about 60 bytes) where a test in
// every source's refusal cost about 1 KB. A source whose plain TCP is refused outright (no
// address rule, no audit) needs no entry in the "anything else" trie: every range around it
// and "any source" then refuse too (a containing range's policies are a subset of its own).
// Size: per source, its own rules, its address rules twice more (under the shared branch and
// in plain TCP), and three range entries (two for a source without address rules or audit).
//
// Which source's chains an action names (SOURCE above) is chainSources.ts's decision: the
// source's own, or with --max-connections-per-source 0 the shared "*" chains.
//
// Subtrees are memoised by (source, listener port, the chain layout, the exact policies
// selecting it, with the shared names taken out): a compile after one policy's edit rebuilds
// only the sources that policy selects; after an edit of the shared names, none.
import type { MatcherJson, OnMatchJson, TypedExtensionJson } from '../envoy/resources.js';
import { markImmutable } from '../envoy/fastEncode.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import type { Policy } from '../policy/model.js';
import { refusalChainName } from './audit.js';
import { chainAction, nameChainName, originalDstChainName } from './chains.js';
import { HTTP_PORT, httpChainName } from './httpPath.js';
import { ANY_SOURCE, cidrRangeOf } from './cidrKeys.js';
import { chainLabels, sourceLabelOf, type ChainLabels } from './chainSources.js';
import { IP_MATCHER_NAME, LOOP_REJECT_FILTER_CHAIN, MatcherInputName, REJECT_FILTER_CHAIN, SERVER_NAME_MATCHER_NAME } from './names.js';
import { sortServerNames } from './serverNames.js';
import { policiesBySource, resetSourcePlanCache, sourcePlan, type SourcePlan } from './sourcePlans.js';
import { policiesKey } from './policyIds.js';
import { BoundedMemo } from './boundedMemo.js';

// Envoy builds each input from its type URL; the names are opaque and short (names.ts).
const input = (typeUrl: string, name: string): TypedExtensionJson => ({ name, typedConfig: { '@type': typeUrl } });
const DESTINATION_PORT = input(TypeUrl.DestinationPortInput, MatcherInputName.destinationPort);
const DESTINATION_IP = input(TypeUrl.DestinationIpInput, MatcherInputName.destinationIp);
const SOURCE_IP = input(TypeUrl.SourceIpInput, MatcherInputName.sourceIp);
const SERVER_NAME = input(TypeUrl.ServerNameInput, MatcherInputName.serverName);
const TRANSPORT_PROTOCOL = input(TypeUrl.TransportProtocolInput, MatcherInputName.transportProtocol);
const APPLICATION_PROTOCOL = input(TypeUrl.ApplicationProtocolInput, MatcherInputName.applicationProtocol);
/**
 * Without TLS, only http_inspector sets an application protocol, and only to "http/1.0",
 * "http/1.1" or "h2c" (http_inspector.cc): one prefix, "h", recognises them all with one
 * entry (an exact map would hold the plain-HTTP subtree once per protocol).
 */
const PLAIN_HTTP_PREFIX = 'h';

// One action object per chain name, shared by every branch that ends there (a source's
// name chain is reached from two branches, "reject" from most sources): a cold compile of a
// host built some ten thousand of them. Never changed after they are built.
const actions = new Map<string, OnMatchJson>();
const to = (chain: string): OnMatchJson => {
  let action = actions.get(chain);
  if (action === undefined) {
    if (actions.size >= 100_000) actions.clear();
    actions.set(chain, (action = { action: chainAction(chain) }));
  }
  return action;
};

export { sourceLabelOf };

export interface SourceFragment {
  /** TLS: address rules, then server names, then the refusal. */
  readonly onMatch: OnMatchJson;
  /** Plain HTTP to port 80: address rules for port 80, else the source's HTTP chain. */
  readonly httpOnMatch: OnMatchJson;
  /** Other plain TCP: address rules, else the refusal; undefined when that is "reject" outright. */
  readonly rawOnMatch: OnMatchJson | undefined;
  /** Under a shared name: the source's address rules, else its name chain. */
  readonly sharedOnMatch: OnMatchJson;
  /** The source labels of the name / original_dst / would_deny chains the fragment's actions name; undefined: none. */
  readonly nameChain: string | undefined;
  readonly originalDstChain: string | undefined;
  /** Refusals go to a would-deny chain (an audit policy selects the source). */
  readonly auditChain: string | undefined;
  /** The label of the source's forwarding chains, which sharedOnMatch ends in. */
  readonly forwardLabel: string;
}

function ipMatcher(rangeMatchers: { ranges: { addressPrefix: string; prefixLen: number }[]; onMatch: OnMatchJson }[]): TypedExtensionJson {
  return { name: IP_MATCHER_NAME, typedConfig: { '@type': TypeUrl.IpMatcher, rangeMatchers } };
}

/**
 * The source's address rules (→ original_dst|SOURCE), else `otherwise`.
 *
 * `otherwise` (for TLS, the source's whole server-name matcher) is written once, as the
 * destination-IP matcher's on_no_match; a range's port map has none. When the port is not
 * in the map, the map does not match, and Envoy's IP range matcher then tries the less
 * specific ranges holding the address and, after them, its own on_no_match:
 * source/extensions/common/matcher/trie_matcher.h (ip_range_matcher.h since its rename) has
 * done so in every release since the matcher came (1.22: "Resume any subtree matching to
 * preserve backtracking progress", evaluateMatch of the nested tree; today
 * handleRecursionAndSkips: "No-match isn't definitive, so continue checking nodes"),
 * unlike a map matcher, whose nested no-match went to its own on_no_match only in newer
 * releases. The less specific ranges cannot match either: each range's group carries the
 * ports of every range around it (sourcePlans.ts cidrGroupsOf), so their port sets are
 * subsets of this one's and none of them allows every port. The model reports this
 * hand-over as `backtracked`, not `fellThrough` (filterChainMatcher.ts).
 */
function cidrBranch(plan: SourcePlan, label: string, otherwise: OnMatchJson): OnMatchJson {
  if (plan.cidrGroups.length === 0) return otherwise;
  const toOriginal = to(originalDstChainName(label));
  return {
    matcher: {
      matcherTree: {
        input: DESTINATION_IP,
        customMatch: ipMatcher(
          plan.cidrGroups.map((group) => ({
            ranges: group.cidrs.map(cidrRangeOf),
            onMatch:
              group.ports === undefined
                ? toOriginal
                : { matcher: { matcherTree: { input: DESTINATION_PORT, exactMatchMap: { map: Object.fromEntries(group.ports.map((p) => [String(p), toOriginal])) } } } },
          })),
        ),
      },
      onNoMatch: otherwise,
    },
  };
}

/** A source's subtree from its plan; `labels`: whose chains it ends in (chainSources.ts). */
export function sourceFragment(plan: SourcePlan, labels: ChainLabels): SourceFragment {
  const label = labels.forward;
  const refusal = refusalChainName(labels.audit, plan.policies);
  const refused = to(refusal);
  const nameDomains = plan.serverNames.byName;
  const originalDomains = plan.serverNames.byOriginal;
  const domainMatchers = [
    ...(nameDomains.length > 0 ? [{ domains: sortServerNames(nameDomains), onMatch: to(nameChainName(label)) }] : []),
    ...(originalDomains.length > 0 ? [{ domains: sortServerNames(originalDomains), onMatch: to(originalDstChainName(label)) }] : []),
  ];
  // A named source refused outright ("reject", no audit) leaves its server-name matcher
  // without on_no_match (about 70 bytes a source): a name it does not allow is then no match,
  // and the source-IP range matcher hands the connection to the ranges around the source and
  // at last to "any source", whose subtree refuses explicitly. Those hold a subset of the
  // source's policies (sourcePlans.ts: a source's list includes every policy of a range
  // around it and the source-less ones), so none of them allows the name or the address
  // either, and none of them audits (an audit policy there would select this source too).
  // The hand-over is the IP range matcher's (trie_matcher.h, see cidrBranch), never a map's.
  const implicitRefusal = plan.key !== ANY_SOURCE && refusal === REJECT_FILTER_CHAIN;
  const byName: OnMatchJson =
    domainMatchers.length === 0
      ? refused
      : {
          matcher: {
            matcherTree: { input: SERVER_NAME, customMatch: { name: SERVER_NAME_MATCHER_NAME, typedConfig: { '@type': TypeUrl.ServerNameMatcher, domainMatchers } } },
            ...(!implicitRefusal && { onNoMatch: refused }),
          },
        };
  const onMatch = cidrBranch(plan, label, byName);
  const port80 = { ...plan, cidrGroups: plan.cidrGroups.filter((g) => g.ports === undefined || g.ports.includes(HTTP_PORT)) };
  return {
    onMatch,
    httpOnMatch: cidrBranch(port80, label, to(httpChainName(labels.http))),
    rawOnMatch: plan.cidrGroups.length === 0 && refusal === REJECT_FILTER_CHAIN ? undefined : cidrBranch(plan, label, refused),
    sharedOnMatch: cidrBranch(plan, label, to(nameChainName(label))),
    nameChain: nameDomains.length > 0 ? label : undefined,
    originalDstChain: originalDomains.length > 0 || plan.cidrGroups.length > 0 ? label : undefined,
    auditChain: refusal !== REJECT_FILTER_CHAIN ? labels.audit : undefined,
    forwardLabel: label,
  };
}

interface CachedFragment extends SourceFragment {
  /** The source's entries of the source_ip matchers (unused for ANY_SOURCE). */
  readonly rangeEntry: RangeEntry;
  readonly sharedRangeEntry: RangeEntry;
  readonly httpRangeEntry: RangeEntry;
  readonly rawRangeEntry: RangeEntry | undefined;
}
type RangeEntry = { ranges: { addressPrefix: string; prefixLen: number }[]; onMatch: OnMatchJson };

const MAX_FRAGMENTS = 50_000;
const fragments = new BoundedMemo<CachedFragment>(MAX_FRAGMENTS);

/** The source's fragment, rebuilt only when the policies selecting it (or the port, or the chain layout) changed. */
let fragmentsByList = new WeakMap<readonly Policy[], { key: string; port: number; perSource: boolean; fragment: CachedFragment }>();
export function cachedSourceFragment(key: string, policies: readonly Policy[], listenerPort: number, perSource = true): CachedFragment {
  // The same list object as last time: no key to build (policiesBySource keeps lists).
  const known = fragmentsByList.get(policies);
  if (known && known.key === key && known.port === listenerPort && known.perSource === perSource) return known.fragment;
  const fragment = cachedSourceFragmentByContent(key, policies, listenerPort, perSource);
  fragmentsByList.set(policies, { key, port: listenerPort, perSource, fragment });
  return fragment;
}

function cachedSourceFragmentByContent(key: string, policies: readonly Policy[], listenerPort: number, perSource: boolean): CachedFragment {
  return fragments.get(`${key}|${listenerPort}|${perSource ? 1 : 0}|${policiesKey(policies)}`, () => {
    const built = sourceFragment(sourcePlan(key, policies, listenerPort), chainLabels(key, policies, perSource));
    // Never changed after this: the encoder may keep their bytes. Only what the matcher
    // holds directly is marked: a named source's range entries (their branches are inside),
    // "any source"'s branches (the matcher's on_no_match). Marking both kept every named
    // source's branches twice, as themselves and inside their entries.
    const any = key === ANY_SOURCE;
    const range = any ? [] : [cidrRangeOf(key)];
    const mark = <T extends object>(value: T, whenAny: boolean): T => (whenAny === any ? markImmutable(value) : value);
    return {
      ...built,
      onMatch: mark(built.onMatch, true),
      sharedOnMatch: mark(built.sharedOnMatch, true),
      httpOnMatch: mark(built.httpOnMatch, true),
      rawOnMatch: built.rawOnMatch && mark(built.rawOnMatch, true),
      rangeEntry: mark({ ranges: range, onMatch: built.onMatch }, false),
      sharedRangeEntry: mark({ ranges: range, onMatch: built.sharedOnMatch }, false),
      httpRangeEntry: mark({ ranges: range, onMatch: built.httpOnMatch }, false),
      rawRangeEntry: built.rawOnMatch && mark({ ranges: range, onMatch: built.rawOnMatch }, false),
    };
  });
}

export interface HardenedMatcher {
  readonly matcher: MatcherJson;
  /** Source labels needing a name chain / an original-destination chain, sorted as emitted. */
  readonly nameChainSources: readonly string[];
  readonly originalDstChainSources: readonly string[];
  readonly auditChainSources: readonly string[];
  /** The policies selecting each source key (ANY_SOURCE included), names of the shared policies taken out. */
  readonly bySource: ReadonlyMap<string, readonly Policy[]>;
  /** The policies selecting each source key, whole (shared names included). */
  readonly fullBySource: ReadonlyMap<string, readonly Policy[]>;
}

/** A source-less policy that dials by name: its names go first, for every source (see the top). */
const isSharedByName = (policy: Policy): boolean => policy.sources === undefined && policy.upstream !== 'original-destination' && policy.allow.sni.length > 0;

// The same policy without its names, kept per policy object so the memo's ids stay stable.
const withoutNames = new WeakMap<Policy, Policy>();
function namesTakenOut(policy: Policy): Policy {
  let stripped = withoutNames.get(policy);
  if (!stripped) withoutNames.set(policy, (stripped = { ...policy, allow: { ...policy.allow, sni: [] } }));
  return stripped;
}

// The lists without shared names, kept per list object (policiesBySource hands out the same
// list while a source's policies are unchanged) and, when a shared policy's names changed,
// by content, so the same stripped list object comes back and the steps after this one
// find their memo by identity.
let strippedLists = new WeakMap<readonly Policy[], readonly Policy[]>();
const strippedByContent = new Map<string, readonly Policy[]>();
function strippedList(selecting: readonly Policy[]): readonly Policy[] {
  let stripped = strippedLists.get(selecting);
  if (stripped) return stripped;
  if (!selecting.some(isSharedByName)) stripped = selecting;
  else {
    const fresh = selecting.map((p) => (isSharedByName(p) ? namesTakenOut(p) : p));
    const key = policiesKey(fresh);
    stripped = strippedByContent.get(key);
    if (!stripped) {
      if (strippedByContent.size >= MAX_FRAGMENTS) strippedByContent.clear();
      strippedByContent.set(key, (stripped = fresh));
    }
  }
  strippedLists.set(selecting, stripped);
  return stripped;
}

function serverNameMatcher(domains: readonly string[], onMatch: OnMatchJson, onNoMatch: OnMatchJson): OnMatchJson {
  return {
    matcher: {
      matcherTree: { input: SERVER_NAME, customMatch: { name: SERVER_NAME_MATCHER_NAME, typedConfig: { '@type': TypeUrl.ServerNameMatcher, domainMatchers: [{ domains: [...domains], onMatch }] } } },
      onNoMatch,
    },
  };
}

function bySourceIp(entries: RangeEntry[], anySource: OnMatchJson): OnMatchJson {
  return entries.length === 0 ? anySource : { matcher: { matcherTree: { input: SOURCE_IP, customMatch: ipMatcher(entries) }, onNoMatch: anySource } };
}

/**
 * `perSource` (chainSources.ts perSourceChains): every source its own forwarding chains
 * (Envoy's per-source cap); false: the sources whose chains would be byte-identical to "*"'s
 * share "*"'s.
 */
export function hardenedMatcher(policies: readonly Policy[], listenerPort: number, perSource = true): HardenedMatcher {
  const sharedNames = sortServerNames([...new Set(policies.filter(isSharedByName).flatMap((p) => p.allow.sni))]);
  // Stripping names changes neither a policy's name nor its sources, so the selection is the same.
  const fullBySource = policiesBySource(policies);
  const bySource = new Map<string, readonly Policy[]>();
  for (const [key, selecting] of fullBySource) bySource.set(key, strippedList(selecting));
  // policiesBySource lists ANY_SOURCE first, then the keys in address order.
  const keys = [...bySource.keys()];
  const fragments = keys.map((key) => cachedSourceFragment(key, bySource.get(key)!, listenerPort, perSource));
  const anyFragment = fragments[0]!;
  const named = fragments.slice(1);
  const bySource_ = bySourceIp(named.map((f) => f.rangeEntry), anyFragment.onMatch);
  // Under a shared name, a source whose branch is "any source"'s own action (the shared
  // name|* chain, no address rules: only with shared chains, where the action object is the
  // same) needs no entry: without it the IP range matcher hands the connection to the
  // ranges around the source and then to "any source". Those hold a subset of its policies
  // (sourcePlans.ts), so none has an address rule or a sourced "log": "all" policy either,
  // and each of them ends in the same name|* action.
  const sharedEntries = named.filter((f) => f.sharedOnMatch !== anyFragment.sharedOnMatch).map((f) => f.sharedRangeEntry);
  const tls = sharedNames.length === 0 ? bySource_ : serverNameMatcher(sharedNames, bySourceIp(sharedEntries, anyFragment.sharedOnMatch), bySource_);
  const rawEntries = named.flatMap((f) => (f.rawRangeEntry ? [f.rawRangeEntry] : []));
  const rawOther = bySourceIp(rawEntries, anyFragment.rawOnMatch ?? to(REJECT_FILTER_CHAIN));
  const plainHttp = bySourceIp(named.map((f) => f.httpRangeEntry), anyFragment.httpOnMatch);
  const raw: OnMatchJson = {
    matcher: {
      matcherTree: {
        input: DESTINATION_PORT,
        exactMatchMap: {
          map: {
            [String(HTTP_PORT)]: {
              matcher: { matcherTree: { input: APPLICATION_PROTOCOL, prefixMatchMap: { map: { [PLAIN_HTTP_PREFIX]: plainHttp } } }, onNoMatch: rawOther },
            },
          },
        },
      },
      onNoMatch: rawOther,
    },
  };
  const afterLoopGuard: OnMatchJson = { matcher: { matcherTree: { input: TRANSPORT_PROTOCOL, exactMatchMap: { map: { tls } } }, onNoMatch: raw } };
  // Sets: with shared chains many sources name the same "*" chain (first seen, first listed).
  const nameChainSources = new Set<string>();
  const originalDstChainSources = new Set<string>();
  const auditChainSources = new Set<string>();
  for (const fragment of fragments) {
    if (sharedNames.length > 0) nameChainSources.add(fragment.forwardLabel);
    else if (fragment.nameChain !== undefined) nameChainSources.add(fragment.nameChain);
    if (fragment.originalDstChain !== undefined) originalDstChainSources.add(fragment.originalDstChain);
    if (fragment.auditChain !== undefined) auditChainSources.add(fragment.auditChain);
  }
  const matcher: MatcherJson = {
    matcherTree: { input: DESTINATION_PORT, exactMatchMap: { map: { [String(listenerPort)]: to(LOOP_REJECT_FILTER_CHAIN) } } },
    onNoMatch: afterLoopGuard,
  };
  return { matcher, nameChainSources: [...nameChainSources], originalDstChainSources: [...originalDstChainSources], auditChainSources: [...auditChainSources], bySource, fullBySource };
}

/** Forgets every memoised fragment (benchmarks measure cold compiles with it). */
export function resetCompileCaches(): void {
  fragments.clear();
  fragmentsByList = new WeakMap();
  strippedLists = new WeakMap();
  strippedByContent.clear();
  resetSourcePlanCache();
}
