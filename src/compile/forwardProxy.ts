// The explicit forward proxy of seed 000, on the node's policies: two listeners beside
// (or instead of) the transparent one, both choosing the client's allowlist by its
// source address the way the transparent listener does (policiesBySource: the most
// specific source range a policy names, with every policy around it and the source-less
// ones; other clients get the source-less policies only), each source with its own chain
// and so its own connection cap.
//
//   forward_http (10000): an HTTP connection manager for CONNECT and absolute-form
//     requests, routed per source (forwardRoutes.ts): allowed hosts through the dynamic
//     forward proxy filter and cluster, CONNECT terminated and its bytes carried as TCP;
//     the rest 403 with a body naming the host and the policy field.
//   forward_tls (10001): tls_inspector, then per source a server-name matcher: an allowed
//     SNI is dialled on 443 by sni_dynamic_forward_proxy; no SNI, or another: closed.
//
// Both share the node's one DNS cache and dynamic_forward_proxy_cluster with the
// transparent listener's name upstream (nameUpstream.ts): Envoy requires every user of
// a cache name to carry the identical configuration, so it is built in one place.
import type { ClusterJson, FilterChainJson, ListenerJson, MatcherJson, OnMatchJson, TypedExtensionJson } from '../envoy/resources.js';
import type { RouteConfigurationJson } from '../envoy/routeConfig.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import type { Policy } from '../policy/model.js';
import { chainAction, sniDynamicForwardProxyFilter } from './chains.js';
import { ANY_SOURCE, cidrRangeOf } from './cidrKeys.js';
import { rejectCluster } from './clusters.js';
import {
  FORWARD_ADDRESS,
  FORWARD_HTTP_CHAIN_PREFIX,
  FORWARD_HTTP_LISTENER_NAME,
  FORWARD_HTTP_PORT,
  FORWARD_HTTP_STAT_PREFIX,
  FORWARD_TLS_CHAIN_PREFIX,
  FORWARD_TLS_LISTENER_NAME,
  FORWARD_TLS_PORT,
  FORWARD_TLS_REJECT_CHAIN,
  FORWARD_TLS_REJECTED_STAT_PREFIX,
  FORWARD_TLS_STAT_PREFIX,
  HTTP_CONNECTION_MANAGER_FILTER,
  HTTP_DYNAMIC_FORWARD_PROXY_FILTER,
  HTTP_ROUTER_FILTER,
} from './forwardNames.js';
import { DEFAULT_NAME_PORTS, type NamePorts } from './forwardRoute.js';
import { forwardRouteConfig } from './forwardRoutes.js';
import { connectionLimitFilter, withRaisedCircuitBreakers, withUpstreamMark } from './guards.js';
import { sourceLabelOf } from './hardenedMatcher.js';
import { dnsCacheConfig, nameUpstreamCluster, type DnsCacheOptions } from './nameUpstream.js';
import { IP_MATCHER_NAME, NAME_UPSTREAM_CLUSTER, REJECT_CLUSTER, SERVER_NAME_MATCHER_NAME, TLS_INSPECTOR_LISTENER_FILTER } from './names.js';
import { sortServerNames } from './serverNames.js';
import { policiesBySource, serverNamesOf } from './sourcePlans.js';
import { tcpProxyFilter } from './tcpProxy.js';

export interface ForwardProxyOptions {
  /** Default "0.0.0.0". */
  readonly address?: string;
  /** Default 10000. */
  readonly httpPort?: number;
  /** Default 10001. */
  readonly tlsPort?: number;
  /** Ports an allowed name may be reached on (CONNECT: 443; plain HTTP: 80 by default). */
  readonly namePorts?: NamePorts;
}

/** What the forward listeners need from the node's compile options. */
export interface ForwardCompileContext {
  readonly dnsCache: DnsCacheOptions;
  readonly maxConnectionsPerSource: number;
  readonly upstreamMark: number;
}

const SOURCE_IP: TypedExtensionJson = { name: 'envoy.matching.inputs.source_ip', typedConfig: { '@type': TypeUrl.SourceIpInput } };
const SERVER_NAME: TypedExtensionJson = { name: 'envoy.matching.inputs.server_name', typedConfig: { '@type': TypeUrl.ServerNameInput } };
const to = (chain: string): OnMatchJson => ({ action: chainAction(chain) });
const socket = (address: string, portValue: number) => ({ socketAddress: { address, portValue } });

/** A body that names the host and the client: %LOCAL_REPLY_BODY% is the route's text (forwardRoutes.ts REFUSAL_TEXT). */
export const LOCAL_REPLY_FORMAT = 'egress-xds: %REQ(:AUTHORITY)% refused for %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%: %LOCAL_REPLY_BODY%';

export function httpConnectionManager(routeConfig: RouteConfigurationJson, dnsCache: DnsCacheOptions): TypedExtensionJson {
  return {
    name: HTTP_CONNECTION_MANAGER_FILTER,
    typedConfig: {
      '@type': TypeUrl.HttpConnectionManager,
      statPrefix: FORWARD_HTTP_STAT_PREFIX,
      routeConfig,
      httpFilters: [
        { name: HTTP_DYNAMIC_FORWARD_PROXY_FILTER, typedConfig: { '@type': TypeUrl.HttpDynamicForwardProxy, dnsCacheConfig: dnsCacheConfig(dnsCache) } },
        { name: HTTP_ROUTER_FILTER, typedConfig: { '@type': TypeUrl.HttpRouter } },
      ],
      // CONNECT reaches routing at all only when enabled here (a refusal is a direct
      // response, which has no route-level upgrade entry); allowed routes terminate it.
      upgradeConfigs: [{ upgradeType: 'CONNECT' }],
      http2ProtocolOptions: { allowConnect: true },
      httpProtocolOptions: { allowAbsoluteUrl: true },
      // The client is the connection's peer, never an X-Forwarded-For it wrote.
      useRemoteAddress: true,
      localReplyConfig: { bodyFormat: { textFormatSource: { inlineString: LOCAL_REPLY_FORMAT } } },
    },
  };
}

function ipMatcher(rangeMatchers: { ranges: { addressPrefix: string; prefixLen: number }[]; onMatch: OnMatchJson }[]): TypedExtensionJson {
  return { name: IP_MATCHER_NAME, typedConfig: { '@type': TypeUrl.IpMatcher, rangeMatchers } };
}

/** source_ip over the named ranges (longest first, Envoy's IP matcher), else `other`. */
function bySourceIp(keys: readonly string[], onMatch: (key: string) => OnMatchJson, other: OnMatchJson): MatcherJson {
  return {
    matcherTree: { input: SOURCE_IP, customMatch: ipMatcher(keys.map((key) => ({ ranges: [cidrRangeOf(key)], onMatch: onMatch(key) }))) },
    onNoMatch: other,
  };
}

export function forwardHttpListener(policies: readonly Policy[], options: ForwardProxyOptions, context: ForwardCompileContext): ListenerJson {
  const bySource = policiesBySource(policies);
  const namePorts = options.namePorts ?? DEFAULT_NAME_PORTS;
  const chainOf = (key: string): FilterChainJson => {
    const label = sourceLabelOf(key);
    return {
      name: `${FORWARD_HTTP_CHAIN_PREFIX}|${label}`,
      filters: [connectionLimitFilter(label, context.maxConnectionsPerSource), httpConnectionManager(forwardRouteConfig(bySource.get(key) ?? [], namePorts), context.dnsCache)],
    };
  };
  const ranges = [...bySource.keys()].filter((key) => key !== ANY_SOURCE);
  const chainName = (key: string): string => `${FORWARD_HTTP_CHAIN_PREFIX}|${sourceLabelOf(key)}`;
  return {
    name: FORWARD_HTTP_LISTENER_NAME,
    address: socket(options.address ?? FORWARD_ADDRESS, options.httpPort ?? FORWARD_HTTP_PORT),
    trafficDirection: 'OUTBOUND',
    filterChains: [chainOf(ANY_SOURCE), ...ranges.map(chainOf)],
    // Always a matcher (an empty IP matcher when no policy names sources), so adding the
    // first source range changes only the matcher and the chains, never the listener's shape.
    // Clients from no range a policy names get the source-less policies.
    filterChainMatcher: bySourceIp(ranges, (key) => to(chainName(key)), to(chainName(ANY_SOURCE))),
  };
}

export function forwardTlsListener(policies: readonly Policy[], options: ForwardProxyOptions, context: ForwardCompileContext): ListenerJson {
  const bySource = policiesBySource(policies);
  const chains: FilterChainJson[] = [];
  /** The source's server-name subtree, or a refusal when it allows no name. */
  const subtree = (key: string): OnMatchJson => {
    const names = sortServerNames([...serverNamesOf(bySource.get(key) ?? []).keys()]);
    if (names.length === 0) return to(FORWARD_TLS_REJECT_CHAIN);
    const label = sourceLabelOf(key);
    const chain = `${FORWARD_TLS_CHAIN_PREFIX}|${label}`;
    chains.push({
      name: chain,
      filters: [
        connectionLimitFilter(label, context.maxConnectionsPerSource),
        // No dynamic port here: seed 000 dials every allowed SNI on 443.
        sniDynamicForwardProxyFilter(context.dnsCache),
        tcpProxyFilter(NAME_UPSTREAM_CLUSTER, FORWARD_TLS_STAT_PREFIX),
      ],
    });
    return {
      matcher: {
        matcherTree: { input: SERVER_NAME, customMatch: { name: SERVER_NAME_MATCHER_NAME, typedConfig: { '@type': TypeUrl.ServerNameMatcher, domainMatchers: [{ domains: names, onMatch: to(chain) }] } } },
        onNoMatch: to(FORWARD_TLS_REJECT_CHAIN),
      },
    };
  };
  const anySource = subtree(ANY_SOURCE);
  const ranges = [...bySource.keys()].filter((key) => key !== ANY_SOURCE);
  const matcher = bySourceIp(ranges, subtree, anySource);
  const reject: FilterChainJson = { name: FORWARD_TLS_REJECT_CHAIN, filters: [tcpProxyFilter(REJECT_CLUSTER, FORWARD_TLS_REJECTED_STAT_PREFIX)] };
  return {
    name: FORWARD_TLS_LISTENER_NAME,
    address: socket(options.address ?? FORWARD_ADDRESS, options.tlsPort ?? FORWARD_TLS_PORT),
    trafficDirection: 'OUTBOUND',
    listenerFilters: [{ name: TLS_INSPECTOR_LISTENER_FILTER, typedConfig: { '@type': TypeUrl.TlsInspector } }],
    filterChains: [reject, ...chains],
    // Every branch ends in an action (no SNI, or a name no policy allows: the reject chain,
    // closed at reject_cluster), so no default chain is needed.
    filterChainMatcher: matcher,
  };
}

/**
 * The forward listeners added to a node's compiled resources: the listeners, and the
 * clusters they route to that are not there yet (the shared name cluster, reject_cluster),
 * clusters kept sorted by name.
 */
export function withForwardProxy(
  base: { listeners: ListenerJson[]; clusters: ClusterJson[] },
  policies: readonly Policy[],
  options: ForwardProxyOptions,
  context: ForwardCompileContext,
): { listeners: ListenerJson[]; clusters: ClusterJson[] } {
  const listeners = [...base.listeners, forwardHttpListener(policies, options, context), forwardTlsListener(policies, options, context)];
  const have = new Set(base.clusters.map((c) => c.name));
  const needed: ClusterJson[] = [
    withUpstreamMark(withRaisedCircuitBreakers(nameUpstreamCluster(context.dnsCache)), context.upstreamMark),
    rejectCluster(),
  ].filter((c) => !have.has(c.name));
  const clusters = [...base.clusters, ...needed].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { listeners, clusters };
}
