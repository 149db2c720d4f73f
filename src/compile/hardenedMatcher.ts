// The hardened listener's filter_chain_matcher: all the policy data, none in the chains.
//
//   destination_port (exact) ── the listener's own port → reject_loop
//     └ otherwise: source_ip (IPMatcher: each source range a policy names; else "any source")
//         └ destination_ip (IPMatcher: ranges allowed by address, grouped by port set)
//             ├ every port, or destination_port (exact) in the group's ports → original_dst|SOURCE
//             └ otherwise: server_name (ServerNameMatcher) → name|SOURCE or original_dst|SOURCE
//                 └ otherwise → reject
//
// Each source's subtree is complete (it holds the policies of every range around it and of
// the source-less ones) and every nested matcher has its own on_no_match, so Envoy never
// needs to fall back from one branch to another, whatever its release does there.
// Size: per source, its rules; a shared policy is repeated in each source it selects.
//
// Subtrees are memoised by (source, listener port, the exact policies selecting it): a
// compile after one policy's edit rebuilds only the sources that policy selects.
import type { MatcherJson, OnMatchJson, TypedExtensionJson } from '../envoy/resources.js';
import { markImmutable } from '../envoy/fastEncode.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import type { Policy } from '../policy/model.js';
import { refusalChainName } from './audit.js';
import { chainAction, nameChainName, originalDstChainName } from './chains.js';
import { plainHttpBranch } from './httpPath.js';
import { ANY_SOURCE, cidrRangeOf } from './cidrKeys.js';
import { ANY_SOURCE_LABEL, IP_MATCHER_NAME, LOOP_REJECT_FILTER_CHAIN, REJECT_FILTER_CHAIN, SERVER_NAME_MATCHER_NAME } from './names.js';
import { sortServerNames } from './serverNames.js';
import { policiesBySource, sourcePlan, type SourcePlan } from './sourcePlans.js';

const input = (typeUrl: string, name: string): TypedExtensionJson => ({ name, typedConfig: { '@type': typeUrl } });
const DESTINATION_PORT = input(TypeUrl.DestinationPortInput, 'envoy.matching.inputs.destination_port');
const DESTINATION_IP = input(TypeUrl.DestinationIpInput, 'envoy.matching.inputs.destination_ip');
const SOURCE_IP = input(TypeUrl.SourceIpInput, 'envoy.matching.inputs.source_ip');
const SERVER_NAME = input(TypeUrl.ServerNameInput, 'envoy.matching.inputs.server_name');

const to = (chain: string): OnMatchJson => ({ action: chainAction(chain) });

/** What a source label looks like in chain names: its CIDR, or "*" for sources no policy names. */
export const sourceLabelOf = (key: string): string => (key === ANY_SOURCE ? ANY_SOURCE_LABEL : key);

export interface SourceFragment {
  readonly onMatch: OnMatchJson;
  /** The per-source chains the fragment's actions name. */
  readonly usesNameChain: boolean;
  readonly usesOriginalDstChain: boolean;
  /** Refusals go to the source's would-deny chain (an audit policy selects it). */
  readonly usesAuditChain: boolean;
  /** Plain HTTP to port 80 goes to the source's HTTP chain. */
  readonly usesHttpChain: boolean;
}

function ipMatcher(rangeMatchers: { ranges: { addressPrefix: string; prefixLen: number }[]; onMatch: OnMatchJson }[]): TypedExtensionJson {
  return { name: IP_MATCHER_NAME, typedConfig: { '@type': TypeUrl.IpMatcher, rangeMatchers } };
}

/** A source's subtree from its plan. */
export function sourceFragment(plan: SourcePlan): SourceFragment {
  const label = sourceLabelOf(plan.key);
  const refusal = refusalChainName(label, plan.policies);
  // Where the source's policies refuse: plain HTTP to port 80 is still matched by Host (httpPath.ts).
  const refused = plainHttpBranch(label, refusal);
  const nameDomains: string[] = [];
  const originalDomains: string[] = [];
  for (const [pattern, upstream] of plan.serverNames) (upstream === 'name' ? nameDomains : originalDomains).push(pattern);
  const domainMatchers = [
    ...(nameDomains.length > 0 ? [{ domains: sortServerNames(nameDomains), onMatch: to(nameChainName(label)) }] : []),
    ...(originalDomains.length > 0 ? [{ domains: sortServerNames(originalDomains), onMatch: to(originalDstChainName(label)) }] : []),
  ];
  const byName: OnMatchJson =
    domainMatchers.length === 0
      ? refused
      : {
          matcher: {
            matcherTree: { input: SERVER_NAME, customMatch: { name: SERVER_NAME_MATCHER_NAME, typedConfig: { '@type': TypeUrl.ServerNameMatcher, domainMatchers } } },
            onNoMatch: refused,
          },
        };
  const toOriginal = to(originalDstChainName(label));
  const onMatch: OnMatchJson =
    plan.cidrGroups.length === 0
      ? byName
      : {
          matcher: {
            matcherTree: {
              input: DESTINATION_IP,
              customMatch: ipMatcher(
                plan.cidrGroups.map((group) => ({
                  ranges: group.cidrs.map(cidrRangeOf),
                  onMatch:
                    group.ports === undefined
                      ? toOriginal
                      : {
                          matcher: {
                            matcherTree: { input: DESTINATION_PORT, exactMatchMap: { map: Object.fromEntries(group.ports.map((p) => [String(p), toOriginal])) } },
                            onNoMatch: byName,
                          },
                        },
                })),
              ),
            },
            onNoMatch: byName,
          },
        };
  return {
    onMatch,
    usesNameChain: nameDomains.length > 0,
    usesOriginalDstChain: originalDomains.length > 0 || plan.cidrGroups.length > 0,
    usesAuditChain: refusal !== REJECT_FILTER_CHAIN,
    usesHttpChain: true,
  };
}

// Memo: a policy's content → a small id (policies are immutable values, so identity finds it fast).
// Ids only grow, so a forgotten content gets a new id and can never alias an old fragment.
const policyIds = new WeakMap<Policy, number>();
const idsByContent = new Map<string, number>();
let nextId = 1;
function policyId(policy: Policy): number {
  let id = policyIds.get(policy);
  if (id === undefined) {
    const content = JSON.stringify(policy);
    id = idsByContent.get(content);
    if (id === undefined) {
      // Bounded: forgetting costs a rebuild, never a wrong answer.
      if (idsByContent.size >= 200_000) idsByContent.clear();
      idsByContent.set(content, (id = nextId++));
    }
    policyIds.set(policy, id);
  }
  return id;
}

const MAX_FRAGMENTS = 50_000;
const fragments = new Map<string, SourceFragment>();

/** The source's fragment, rebuilt only when the policies selecting it (or the port) changed. */
export function cachedSourceFragment(key: string, policies: readonly Policy[], listenerPort: number): SourceFragment {
  const memoKey = `${key}|${listenerPort}|${policies.map(policyId).join(',')}`;
  let fragment = fragments.get(memoKey);
  if (fragment) {
    // Refresh its place: the map's order is the eviction order.
    fragments.delete(memoKey);
  } else {
    fragment = sourceFragment(sourcePlan(key, policies, listenerPort));
    // Never changed after this: the encoder may keep its bytes.
    markImmutable(fragment.onMatch);
  }
  fragments.set(memoKey, fragment);
  if (fragments.size > MAX_FRAGMENTS) fragments.delete(fragments.keys().next().value!);
  return fragment;
}

export interface HardenedMatcher {
  readonly matcher: MatcherJson;
  /** Source labels needing a name chain / an original-destination chain, sorted as emitted. */
  readonly nameChainSources: readonly string[];
  readonly originalDstChainSources: readonly string[];
  readonly auditChainSources: readonly string[];
  readonly httpChainSources: readonly string[];
}

export function hardenedMatcher(policies: readonly Policy[], listenerPort: number): HardenedMatcher {
  const bySource = policiesBySource(policies);
  const nameChainSources: string[] = [];
  const originalDstChainSources: string[] = [];
  const auditChainSources: string[] = [];
  const httpChainSources: string[] = [];
  const fragmentOf = (key: string): OnMatchJson => {
    const fragment = cachedSourceFragment(key, bySource.get(key) ?? [], listenerPort);
    if (fragment.usesNameChain) nameChainSources.push(sourceLabelOf(key));
    if (fragment.usesOriginalDstChain) originalDstChainSources.push(sourceLabelOf(key));
    if (fragment.usesAuditChain) auditChainSources.push(sourceLabelOf(key));
    if (fragment.usesHttpChain) httpChainSources.push(sourceLabelOf(key));
    return fragment.onMatch;
  };
  const anySource = fragmentOf(ANY_SOURCE);
  // policiesBySource lists keys in address order after ANY_SOURCE.
  const rangeMatchers = [...bySource.keys()]
    .filter((key) => key !== ANY_SOURCE)
    .map((key) => ({ ranges: [cidrRangeOf(key)], onMatch: fragmentOf(key) }));
  const bySourceIp: OnMatchJson =
    rangeMatchers.length === 0
      ? anySource
      : { matcher: { matcherTree: { input: SOURCE_IP, customMatch: ipMatcher(rangeMatchers) }, onNoMatch: anySource } };
  const matcher: MatcherJson = {
    matcherTree: { input: DESTINATION_PORT, exactMatchMap: { map: { [String(listenerPort)]: to(LOOP_REJECT_FILTER_CHAIN) } } },
    onNoMatch: bySourceIp,
  };
  return { matcher, nameChainSources, originalDstChainSources, auditChainSources, httpChainSources };
}

/** Forgets every memoised fragment (benchmarks measure cold compiles with it). */
export function resetCompileCaches(): void {
  fragments.clear();
}
