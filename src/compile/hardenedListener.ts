// The hardened egress listener (profile "hardened", the default): the seed's transparent
// listener (original_dst, tls_inspector) whose chains are chosen by filter_chain_matcher.
import type { ClusterJson, FilterChainJson, ListenerJson } from '../envoy/resources.js';
import { withEgressAccessLogs, type AccessLogOptions } from './accessLog.js';
import { auditChain } from './audit.js';
import { loopRejectChain, nameChain, noPolicyRejectChain, originalDstChain, type ChainOptions } from './chains.js';
import { originalDstCluster, rejectCluster } from './clusters.js';
import { withRaisedCircuitBreakers, withUpstreamMark } from './guards.js';
import { hardenedMatcher } from './hardenedMatcher.js';
import { egressListener, type EgressListenerOptions } from './listener.js';
import { EGRESS_LISTENER_NAME } from './names.js';
import { nameUpstreamCluster, type DnsCacheOptions } from './nameUpstream.js';
import type { Policy } from '../policy/model.js';

export interface HardenedOptions extends ChainOptions {
  readonly listener: EgressListenerOptions;
  readonly port: number;
  readonly upstreamMark: number;
  readonly originalDstConnectTimeout?: string;
  readonly rejectConnectTimeout?: string;
  /** Envoy's gRPC access logs to the control plane (accessLog.ts); false: none. */
  readonly accessLog?: AccessLogOptions | false;
}

export function hardenedListener(policies: readonly Policy[], options: HardenedOptions): ListenerJson {
  const { matcher, nameChainSources, originalDstChainSources, auditChainSources } = hardenedMatcher(policies, options.port);
  const chains: FilterChainJson[] = [
    noPolicyRejectChain(),
    loopRejectChain(),
    ...nameChainSources.map((source) => nameChain(source, options)),
    ...originalDstChainSources.map((source) => originalDstChain(source, options)),
    ...auditChainSources.map((source) => auditChain(source, options.maxConnectionsPerSource)),
  ];
  const listenerName = options.listener.name ?? EGRESS_LISTENER_NAME;
  const logged = options.accessLog === false ? chains : withEgressAccessLogs(chains, policies, listenerName, options.accessLog ?? {});
  const listener = egressListener(logged, options.listener);
  // Every connection is routed by the matcher, which always ends in an action; no default chain is needed.
  delete listener.defaultFilterChain;
  listener.filterChainMatcher = matcher;
  return listener;
}

/** The clusters the hardened listener routes to, sorted by name. */
export function hardenedClusters(options: { dnsCache: DnsCacheOptions; upstreamMark: number; originalDstConnectTimeout?: string; rejectConnectTimeout?: string }): ClusterJson[] {
  return [
    withUpstreamMark(withRaisedCircuitBreakers(nameUpstreamCluster(options.dnsCache)), options.upstreamMark),
    withRaisedCircuitBreakers(originalDstCluster(options.originalDstConnectTimeout)),
    rejectCluster(options.rejectConnectTimeout),
  ];
}
