// TypeScript shapes for the ProtoJSON subset of Envoy's v3 API that egress-xds
// writes. They give the compiler types; the strict ProtoJSON parse in codec.ts
// checks them against Envoy's real protos.

export interface SocketAddressJson {
  address: string;
  portValue: number;
  protocol?: 'TCP' | 'UDP';
}

export interface AddressJson {
  socketAddress: SocketAddressJson;
}

/** An internal listener as an endpoint (envoy.config.core.v3.EnvoyInternalAddress). */
export interface InternalAddressJson {
  envoyInternalAddress: { serverListenerName: string };
}

export interface CidrRangeJson {
  addressPrefix: string;
  prefixLen: number;
}

export interface TypedExtensionJson {
  name: string;
  typedConfig: { '@type': string; [field: string]: unknown };
}

/** envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, the fields egress-xds writes. */
export interface TcpProxyJson {
  '@type': string;
  statPrefix: string;
  cluster: string;
}

/** envoy.config.listener.v3.FilterChainMatch; matching order is documented in src/envoy/filterChainMatch.ts. */
export interface FilterChainMatchJson {
  destinationPort?: number;
  prefixRanges?: CidrRangeJson[];
  directSourcePrefixRanges?: CidrRangeJson[];
  serverNames?: string[];
  transportProtocol?: string;
  applicationProtocols?: string[];
  sourceType?: 'ANY' | 'SAME_IP_OR_LOOPBACK' | 'EXTERNAL';
  sourcePrefixRanges?: CidrRangeJson[];
  sourcePorts?: number[];
}

export interface FilterChainJson {
  name?: string;
  filterChainMatch?: FilterChainMatchJson;
  filters: TypedExtensionJson[];
}

export interface ListenerJson {
  name: string;
  /** Absent on an internal listener (Envoy ≥ 1.25), reached by name from a cluster only. */
  address?: AddressJson;
  internalListener?: Record<string, never>;
  transparent?: boolean;
  trafficDirection?: 'UNSPECIFIED' | 'INBOUND' | 'OUTBOUND';
  listenerFilters?: TypedExtensionJson[];
  listenerFiltersTimeout?: string;
  continueOnListenerFiltersTimeout?: boolean;
  filterChains: FilterChainJson[];
  defaultFilterChain?: FilterChainJson;
  /** Envoy's unified matcher (xds.type.matcher.v3.Matcher); when set, filter_chain_match is ignored (filterChainMatcher.ts). */
  filterChainMatcher?: MatcherJson;
  additionalAddresses?: { address: AddressJson }[];
}

export interface ClusterJson {
  name: string;
  /** Absent when clusterType (an extension cluster such as the dynamic forward proxy) is set. */
  type?: 'STATIC' | 'STRICT_DNS' | 'LOGICAL_DNS' | 'EDS' | 'ORIGINAL_DST';
  clusterType?: TypedExtensionJson;
  lbPolicy?: 'ROUND_ROBIN' | 'CLUSTER_PROVIDED';
  connectTimeout: string;
  dnsLookupFamily?: 'AUTO' | 'V4_ONLY' | 'V6_ONLY' | 'V4_PREFERRED' | 'ALL';
  circuitBreakers?: { thresholds: CircuitBreakerThresholdsJson[] };
  upstreamBindConfig?: { sourceAddress: SocketAddressJson; socketOptions?: SocketOptionJson[] };
  loadAssignment?: {
    clusterName: string;
    endpoints: { lbEndpoints: { endpoint: { address: AddressJson | InternalAddressJson } }[] }[];
  };
}

/** envoy.config.cluster.v3.CircuitBreakers.Thresholds, the fields egress-xds writes. */
export interface CircuitBreakerThresholdsJson {
  priority?: 'DEFAULT' | 'HIGH';
  maxConnections?: number;
  maxPendingRequests?: number;
  maxRequests?: number;
  maxRetries?: number;
}

/** envoy.config.core.v3.SocketOption, the int form. */
export interface SocketOptionJson {
  description?: string;
  level: string;
  name: string;
  intValue: string;
  state: 'STATE_PREBIND' | 'STATE_BOUND' | 'STATE_LISTENING';
}

/** xds.type.matcher.v3.Matcher (ProtoJSON); only matcher_tree is generated, matcher_list is modelled too. */
export interface MatcherJson {
  matcherTree?: MatcherTreeJson;
  matcherList?: { matchers: { predicate: unknown; onMatch: OnMatchJson }[] };
  onNoMatch?: OnMatchJson;
}

export interface MatcherTreeJson {
  input: TypedExtensionJson;
  exactMatchMap?: { map: Record<string, OnMatchJson> };
  prefixMatchMap?: { map: Record<string, OnMatchJson> };
  customMatch?: TypedExtensionJson;
}

/** xds.type.matcher.v3.Matcher.OnMatch: exactly one of the two. */
export interface OnMatchJson {
  matcher?: MatcherJson;
  action?: TypedExtensionJson;
}
