// DNS only for allowed names: a UDP listener with Envoy's DNS filter
// (envoy.filters.udp.dns_filter) that the agent sends the microVMs' DNS to
// (`agent install --udp-port 15053`).
//
// What the DNS filter can do (source/extensions/filters/udp/dns_filter/dns_filter.cc):
//   - answer from an inline table: exact names, and "*.x" wildcards (the lookup tries the
//     name, then each ".suffix" of it, so "*.x" answers every depth below x, not x itself);
//   - answer a name with the hosts of a cluster (endpoint.cluster_name);
//   - forward to external resolvers (client_config) — but then EVERY name not in the table
//     is resolved upstream (known_suffixes is deprecated and ignored), which is exactly the
//     side door this closes, so client_config is never set;
//   - it cannot tell sources apart: one table per listener.
// What egress-xds does with it:
//   - names allowed by name ("upstream": "name", the default) resolve to one synthetic
//     address (--dns-answer-address, default 198.18.0.1 from the benchmarking range
//     198.18.0.0/15). The hardened listener dials such connections by their SNI / Host,
//     never by the address the guest chose, so no real resolution is needed and no query
//     ever leaves the host: DNS cannot carry data out. Wildcards resolve their subdomains.
//   - exact names allowed only with "upstream": "original-destination" need their real
//     addresses (the connection goes where the guest dials): each gets a STRICT_DNS
//     cluster that Envoy resolves itself, and the table answers with its hosts. Wildcards of
//     such policies cannot be resolved without forwarding and get no answer.
//   - everything else: no answer; the filter replies NXDOMAIN (name error) at once.
//   - one listener per node, answering the union of the names allowed to any source of
//     that node: a microVM can learn that a name another microVM may reach exists, never
//     reach it (the TCP listener still decides per source), and never make Envoy send a
//     query for a name of its choosing.
// The listener is transparent (TPROXY delivers queries addressed to any resolver) and
// Envoy answers from the address the query was sent to.
import type { ClusterJson, ListenerJson } from '../envoy/resources.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import type { Policy, PolicyUpstream } from '../policy/model.js';
import { sortServerNames } from './serverNames.js';
import { serverNamesOf } from './sourcePlans.js';

export const DNS_LISTENER_NAME = 'egress_dns';
export const DEFAULT_DNS_PORT = 15053;
export const DNS_FILTER = 'envoy.filters.udp.dns_filter';
export const DNS_STAT_PREFIX = 'egress_dns';
/** RFC 2544 benchmarking range: never a real destination, and not one of the special ranges the host refuses. */
export const DEFAULT_DNS_ANSWER_ADDRESS = '198.18.0.1';
/** The DNS table's minimum answer TTL is 30 s (DnsVirtualDomain.answer_ttl); short, so policy edits take effect soon. */
export const DNS_ANSWER_TTL = '30s';
export const DNS_ANSWER_CLUSTER_PREFIX = 'dns_answer';
export const DNS_ANSWER_CLUSTER_TIMEOUT = '5s';

export interface DnsListenerOptions {
  /** UDP port; 0 means no DNS listener. */
  readonly port: number;
  /** Default "0.0.0.0". */
  readonly address?: string;
  /** What names allowed by name resolve to; default 198.18.0.1. */
  readonly answerAddress?: string;
  /** Also listen on [::]:port. */
  readonly ipv6?: boolean;
}

export const dnsAnswerClusterName = (name: string): string => `${DNS_ANSWER_CLUSTER_PREFIX}|${name}`;

/** How each allowed pattern is answered. */
export interface DnsPlan {
  /** Patterns answered with the synthetic address, sorted. */
  readonly synthetic: readonly string[];
  /** Exact names answered with their real addresses (a cluster each), sorted. */
  readonly resolved: readonly string[];
  /** Patterns left unanswered (original-destination wildcards), sorted. */
  readonly unanswerable: readonly string[];
}

/**
 * `upstreamOf`: where connections to each pattern go. The hardened profile dials names
 * unless every allowing policy chose the original destination (serverNamesOf); the seed
 * profile always goes to the original destination.
 */
export function dnsPlan(serverNames: ReadonlyMap<string, PolicyUpstream>): DnsPlan {
  const synthetic: string[] = [];
  const resolved: string[] = [];
  const unanswerable: string[] = [];
  for (const [pattern, upstream] of serverNames) {
    if (upstream === 'name') synthetic.push(pattern);
    else if (pattern.startsWith('*.')) unanswerable.push(pattern);
    else resolved.push(pattern);
  }
  return { synthetic: sortServerNames(synthetic), resolved: sortServerNames(resolved), unanswerable: sortServerNames(unanswerable) };
}

/** The node's allowed patterns with where they go, as the DNS listener needs them. */
export function dnsServerNames(policies: readonly Policy[], profile: 'hardened' | 'seed'): Map<string, PolicyUpstream> {
  const names = serverNamesOf(policies);
  if (profile === 'seed') for (const key of names.keys()) names.set(key, 'original-destination');
  return names;
}

export function dnsListener(plan: DnsPlan, options: DnsListenerOptions): ListenerJson {
  const answer = options.answerAddress ?? DEFAULT_DNS_ANSWER_ADDRESS;
  const virtualDomains = [
    ...plan.synthetic.map((name) => ({ name, endpoint: { addressList: { address: [answer] } }, answerTtl: DNS_ANSWER_TTL })),
    ...plan.resolved.map((name) => ({ name, endpoint: { clusterName: dnsAnswerClusterName(name) }, answerTtl: DNS_ANSWER_TTL })),
  ];
  const listener: ListenerJson & Record<string, unknown> = {
    name: DNS_LISTENER_NAME,
    address: { socketAddress: { protocol: 'UDP', address: options.address ?? '0.0.0.0', portValue: options.port } },
    transparent: true,
    trafficDirection: 'OUTBOUND',
    listenerFilters: [
      {
        name: DNS_FILTER,
        typedConfig: {
          '@type': TypeUrl.DnsFilterConfig,
          statPrefix: DNS_STAT_PREFIX,
          // No client_config: nothing is ever resolved for the guest (see above).
          serverConfig: { inlineDnsTable: { virtualDomains } },
        },
      },
    ],
    filterChains: [],
  };
  if (options.ipv6) listener.additionalAddresses = [{ address: { socketAddress: { protocol: 'UDP', address: '::', portValue: options.port } } }];
  return listener;
}

/** A STRICT_DNS cluster per exact name answered with its real addresses. */
export function dnsAnswerClusters(plan: DnsPlan): ClusterJson[] {
  return plan.resolved.map((name) => ({
    name: dnsAnswerClusterName(name),
    type: 'STRICT_DNS',
    connectTimeout: DNS_ANSWER_CLUSTER_TIMEOUT,
    // As the name cache: IPv4 (an AAAA query gets an empty answer, and the client uses A).
    dnsLookupFamily: 'V4_ONLY',
    loadAssignment: {
      clusterName: dnsAnswerClusterName(name),
      endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: name, portValue: 443 } } } }] }],
    },
  }));
}
