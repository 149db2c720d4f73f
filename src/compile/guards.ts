// The guards every forwarding path carries: raised circuit breakers on the forwarding
// clusters (Envoy's defaults, 1,024 connections per cluster for the whole host, let one
// guest lock out all others), and a per-source cap on concurrent connections.
import type { CircuitBreakerThresholdsJson, ClusterJson, TypedExtensionJson } from '../envoy/resources.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import { HardenedFilterName } from './names.js';
import { upstreamMarkSocketOption } from './specialAddresses.js';

/**
 * Far beyond any host's needs: the per-source caps, not the cluster, bound what one guest
 * can hold. (Envoy's defaults: 1,024 connections, pending requests and requests, 3 retries.)
 */
export const RAISED_CIRCUIT_BREAKERS: CircuitBreakerThresholdsJson = {
  priority: 'DEFAULT',
  maxConnections: 1_000_000,
  maxPendingRequests: 1_000_000,
  maxRequests: 1_000_000,
  maxRetries: 1_000,
};

export function withRaisedCircuitBreakers(cluster: ClusterJson): ClusterJson {
  return { ...cluster, circuitBreakers: { thresholds: [{ ...RAISED_CIRCUIT_BREAKERS }] } };
}

/** Marks the cluster's upstream sockets (SO_MARK); mark 0 leaves the cluster as it is. */
export function withUpstreamMark(cluster: ClusterJson, mark: number): ClusterJson {
  if (mark === 0) return cluster;
  return { ...cluster, upstreamBindConfig: { ...cluster.upstreamBindConfig, socketOptions: [upstreamMarkSocketOption(mark)] } as ClusterJson['upstreamBindConfig'] };
}

/** A stat prefix Envoy's stat names accept, for one source range ("10.0.0.4/30" → "src_10_0_0_4_30"). */
export function sourceStatPrefix(sourceLabel: string): string {
  let prefix = statPrefixes.get(sourceLabel);
  if (prefix === undefined) {
    // Bounded: labels come from policies; forgetting costs a regex, never a wrong answer.
    if (statPrefixes.size >= 100_000) statPrefixes.clear();
    prefix = `src_${sourceLabel === '*' ? 'any' : sourceLabel.replace(/[^0-9A-Za-z]+/g, '_').replace(/_+$/, '')}`;
    statPrefixes.set(sourceLabel, prefix);
  }
  return prefix;
}
// A compile derives each source's prefix for three chains and their templates.
const statPrefixes = new Map<string, string>();

/**
 * envoy.filters.network.connection_limit: its counter belongs to the filter chain it sits in
 * (source/extensions/filters/network/connection_limit/connection_limit.cc: one Config per
 * chain), so a chain per source gives each source its own cap. At the cap Envoy closes the
 * new connection at once (after `delay`, none here) and counts it in
 * connection_limit.<stat_prefix>.limited_connections; connections already open are untouched.
 */
export function connectionLimitFilter(sourceLabel: string, maxConnections: number): TypedExtensionJson {
  return {
    name: HardenedFilterName.connectionLimit,
    typedConfig: { '@type': TypeUrl.ConnectionLimit, statPrefix: sourceStatPrefix(sourceLabel), maxConnections: String(maxConnections) },
  };
}

/**
 * The chain's connection_limit, or none with `maxConnections` 0 (serve
 * --max-connections-per-source 0): then Envoy caps no source and the host agent's kernel cap
 * (agent install --max-connections-per-source) is the only one. A kernel cap is also the
 * stronger one: it refuses the SYN, where connection_limit, a network filter, counts a
 * connection only once the listener filters (tls_inspector, http_inspector) are done.
 */
export function connectionLimitFilters(sourceLabel: string, maxConnections: number): TypedExtensionJson[] {
  return maxConnections === 0 ? [] : [connectionLimitFilter(sourceLabel, maxConnections)];
}

/** The chain carries Envoy's per-source cap (what its loggers' refusals may be: accessLog.ts). */
export const hasConnectionLimit = (filters: readonly TypedExtensionJson[]): boolean => filters.some((f) => f.typedConfig['@type'] === TypeUrl.ConnectionLimit);
