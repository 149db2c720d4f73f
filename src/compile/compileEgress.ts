// Policies selecting a node → the Envoy resources of its egress allowlist. Pure:
// the same policies (in any order) give byte-identical resources, so versions are stable.
// (The hardened layout memoises per-source fragments; that changes speed, never output.)
import type { ClusterJson, ListenerJson } from '../envoy/resources.js';
import type { RouteConfigurationJson } from '../envoy/routeConfig.js';
import type { Policy } from '../policy/model.js';
import { buildAllowlistTree } from './allowlistTree.js';
import { loopRejectChain } from './chains.js';
import { originalDstCluster, rejectCluster } from './clusters.js';
import { allowFilterChains } from './filterChains.js';
import type { AccessLogOptions } from './accessLog.js';
import { withAuditCluster } from './audit.js';
import { dnsAnswerClusters, dnsListener, dnsPlan, dnsServerNames, type DnsListenerOptions } from './dns.js';
import { withRaisedCircuitBreakers } from './guards.js';
import { hardenedClusters, hardenedListenerAndRoutes } from './hardenedListener.js';
import { withForwardProxy, type ForwardProxyOptions } from './forwardProxy.js';
import { egressListener, type EgressListenerOptions } from './listener.js';
import { DEFAULT_MAX_CONNECTIONS_PER_SOURCE, EGRESS_LISTENER_PORT, TCP_PROXY_FILTER } from './names.js';
import type { DnsCacheOptions } from './nameUpstream.js';
import { DEFAULT_UPSTREAM_MARK } from './specialAddresses.js';

/**
 * "hardened" (the default): filter_chain_matcher, names dialled by name, per-source caps.
 * "seed": seed 002 §6.6's SNI filter-chain tree to original_dst_cluster, plus the guards that
 * fit it (the loop guard, raised circuit breakers).
 */
export type CompileProfile = 'hardened' | 'seed';
export const COMPILE_PROFILES: readonly CompileProfile[] = ['hardened', 'seed'];

export interface CompileOptions {
  /** Default "egress_tproxy". */
  readonly listenerName?: string;
  /** Default 15001, the TPROXY --on-port. */
  readonly port?: number;
  /** Default "0.0.0.0". */
  readonly address?: string;
  /** Also listen on [::]:port. */
  readonly ipv6?: boolean;
  /** Default "10s". */
  readonly originalDstConnectTimeout?: string;
  /** Default "1s". */
  readonly rejectConnectTimeout?: string;
  /** Default "hardened". */
  readonly profile?: CompileProfile;
  /**
   * Hardened: concurrent connections per source range and forwarding chain; default 512.
   * 0: no connection_limit, and the forwarding chains shared by the sources (chainSources.ts):
   * the host agent's kernel cap is the only one.
   */
  readonly maxConnectionsPerSource?: number;
  /** Hardened: SO_MARK of sockets dialling a name (default 0x20000); 0: no mark. */
  readonly upstreamMark?: number;
  /** Hardened: the DNS cache names are resolved through (shared with the forward proxy). */
  readonly dnsCache?: DnsCacheOptions;
  /** Hardened: Envoy's gRPC access logs to the control plane's ALS (default on, through "xds_cluster"); false: none. */
  readonly accessLog?: AccessLogOptions | false;
  /** The DNS listener (dns.ts); absent or port 0: none. `serve --dns-port` sets it (default 15053). */
  readonly dns?: DnsListenerOptions;
  /** Seed 000's explicit forward proxy listeners (forwardProxy.ts), when set. */
  readonly forwardProxy?: ForwardProxyOptions;
  /** false: no transparent listener (only the forward proxy's). Default true. */
  readonly transparent?: boolean;
}

export interface CompiledEgress {
  readonly listeners: ListenerJson[];
  /** Sorted by name. */
  readonly clusters: ClusterJson[];
  /** The route tables the listeners' HTTP connection managers name (RDS), sorted by name; none in profile seed. */
  readonly routes?: RouteConfigurationJson[];
}

/** Seed 002's cidr rules minus the listener's own port: the loop chain owns that port branch. */
function withoutListenerPort(policies: readonly Policy[], port: number): Policy[] {
  return policies.map((policy) => {
    const cidrs = policy.allow.cidrs;
    if (!cidrs?.some((rule) => rule.ports?.includes(port))) return policy;
    const kept = cidrs.flatMap((rule) => {
      if (rule.ports === undefined || !rule.ports.includes(port)) return [rule];
      const ports = rule.ports.filter((p) => p !== port);
      return ports.length > 0 ? [{ ...rule, ports }] : [];
    });
    return { ...policy, allow: { ...policy.allow, cidrs: kept } };
  });
}

/** The node's allowlist is the union of `policies` (those that already select the node). */
export function compileEgress(policies: readonly Policy[], options: CompileOptions = {}): CompiledEgress {
  const egress = compileEgressListeners(policies, options);
  return withDnsListener(egress, policies, options);
}

/** Adds the DNS listener (after the egress listener) and the clusters its answers need. */
function withDnsListener(egress: CompiledEgress, policies: readonly Policy[], options: CompileOptions): CompiledEgress {
  if (!options.dns || options.dns.port === 0) return egress;
  const plan = dnsPlan(dnsServerNames(policies, options.profile ?? 'hardened'));
  const clusters = [...egress.clusters, ...dnsAnswerClusters(plan)].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { ...egress, listeners: [...egress.listeners, dnsListener(plan, { ...(options.ipv6 !== undefined && { ipv6: options.ipv6 }), ...options.dns })], clusters };
}

function compileEgressListeners(policies: readonly Policy[], options: CompileOptions): CompiledEgress {
  const transparent: CompiledEgress = options.transparent === false ? { listeners: [], clusters: [] } : compileTransparent(policies, options);
  if (!options.forwardProxy) return transparent;
  // The DNS listener's port is one the forward proxy's loop guard refuses.
  const forward = options.forwardProxy.dnsPort === undefined && options.dns ? { ...options.forwardProxy, dnsPort: options.dns.port } : options.forwardProxy;
  const withForward = withForwardProxy(transparent, policies, forward, {
    dnsCache: options.dnsCache ?? {},
    maxConnectionsPerSource: options.maxConnectionsPerSource ?? DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
    upstreamMark: options.upstreamMark ?? DEFAULT_UPSTREAM_MARK,
    ...(options.transparent !== false && { transparentPort: options.port ?? EGRESS_LISTENER_PORT }),
    ...(options.accessLog !== undefined && { accessLog: options.accessLog }),
  });
  return transparent.routes ? { ...withForward, routes: transparent.routes } : withForward;
}

function compileTransparent(policies: readonly Policy[], options: CompileOptions): CompiledEgress {
  const port = options.port ?? EGRESS_LISTENER_PORT;
  const listenerOptions: EgressListenerOptions = {
    ...(options.listenerName !== undefined && { name: options.listenerName }),
    ...(options.address !== undefined && { address: options.address }),
    ...(options.port !== undefined && { port: options.port }),
    ...(options.ipv6 !== undefined && { ipv6: options.ipv6 }),
  };
  if ((options.profile ?? 'hardened') === 'seed') {
    const chains = allowFilterChains(buildAllowlistTree(withoutListenerPort(policies, port)));
    // The loop guard as a chain: a destination_port branch is final in Envoy's filter-chain index.
    const loop = { ...loopRejectChain(TCP_PROXY_FILTER), filterChainMatch: { destinationPort: port } };
    return {
      listeners: [egressListener([loop, ...chains], listenerOptions)],
      clusters: [withRaisedCircuitBreakers(originalDstCluster(options.originalDstConnectTimeout)), rejectCluster(options.rejectConnectTimeout)],
    };
  }
  const shared = {
    dnsCache: options.dnsCache ?? {},
    upstreamMark: options.upstreamMark ?? DEFAULT_UPSTREAM_MARK,
    ...(options.originalDstConnectTimeout !== undefined && { originalDstConnectTimeout: options.originalDstConnectTimeout }),
    ...(options.rejectConnectTimeout !== undefined && { rejectConnectTimeout: options.rejectConnectTimeout }),
  };
  const { listener, routes } = hardenedListenerAndRoutes(policies, {
    ...shared,
    listener: listenerOptions,
    port,
    maxConnectionsPerSource: options.maxConnectionsPerSource ?? DEFAULT_MAX_CONNECTIONS_PER_SOURCE,
    ...(options.accessLog !== undefined && { accessLog: options.accessLog }),
  });
  const clusters = withAuditCluster(hardenedClusters(shared), listener.filterChains, shared.upstreamMark, options.originalDstConnectTimeout);
  return { listeners: [listener], clusters, routes };
}
