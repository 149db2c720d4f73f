// Names Envoy and operators see: resource names, filter names, stat prefixes.
// The listener and cluster names are part of the external contract (INTERFACE.md).

export const EGRESS_LISTENER_NAME = 'egress_tproxy';
/** The TPROXY --on-port of the host agent. */
export const EGRESS_LISTENER_PORT = 15001;
export const EGRESS_LISTENER_ADDRESS = '0.0.0.0';

export const ORIGINAL_DST_CLUSTER = 'original_dst_cluster';
export const REJECT_CLUSTER = 'reject_cluster';
/** The dynamic forward proxy cluster: connections allowed by name are dialled by that name. */
export const NAME_UPSTREAM_CLUSTER = 'dynamic_forward_proxy_cluster';
/** The DNS cache shared by every dynamic forward proxy filter and cluster of a node. */
export const DNS_CACHE_NAME = 'egress_dns_cache';
export const NAME_UPSTREAM_CONNECT_TIMEOUT = '10s';

/** The listener's default filter chain: everything the allowlist does not name. */
export const REJECT_FILTER_CHAIN = 'reject';
/** Prefix of the allowing filter chains' names. */
export const ALLOW_FILTER_CHAIN_PREFIX = 'allow';

export const ORIGINAL_DST_LISTENER_FILTER = 'envoy.filters.listener.original_dst';
export const TLS_INSPECTOR_LISTENER_FILTER = 'envoy.filters.listener.tls_inspector';
export const TCP_PROXY_FILTER = 'envoy.filters.network.tcp_proxy';

/** tcp_proxy stat prefixes, as in seed 002 §6.6: tcp.allowed_original_dst.* and tcp.rejected.*. */
export const ALLOWED_STAT_PREFIX = 'allowed_original_dst';
export const REJECTED_STAT_PREFIX = 'rejected';

export const ORIGINAL_DST_CONNECT_TIMEOUT = '10s';
export const REJECT_CONNECT_TIMEOUT = '1s';
/** Nothing listens here, so a connection sent to reject_cluster fails at once. */
export const REJECT_ENDPOINT = { address: '127.0.0.1', portValue: 1 } as const;

// The hardened listener (profile "hardened"): few chains, shared, selected by filter_chain_matcher.
/** Refused first: a connection to the listener's own port (any address) would make Envoy dial itself. */
export const LOOP_REJECT_FILTER_CHAIN = 'reject_loop';
export const LOOP_REJECTED_STAT_PREFIX = 'rejected_loop';
/** "name|SOURCE": connections a name allows, dialled by that name, capped per source. */
export const NAME_CHAIN_PREFIX = 'name';
/** "original_dst|SOURCE": connections a cidr rule (or an "original-destination" policy) allows, capped per source. */
export const ORIGINAL_DST_CHAIN_PREFIX = 'original_dst';
/** The source part of a chain name for connections from no source range a policy names. */
export const ANY_SOURCE_LABEL = '*';
export const NAME_STAT_PREFIX = 'allowed_name';

export const SNI_DYNAMIC_FORWARD_PROXY_FILTER = 'envoy.filters.network.sni_dynamic_forward_proxy';

// Opaque extension names (issue 7: the listener must stay small; at 1,000 microVMs the
// canonical names were 647 KB of it). The `name` of an xds.core.v3.TypedExtensionConfig
// (the matcher's inputs, custom matchers and actions) and of an envoy.config.listener.v3.Filter
// is, in Envoy's own words, "not used to select the extension, instead it serves the role
// of an opaque identifier": source/common/matcher/matcher.h builds every input
// (MatchInputFactory::createDataInputBase, Config::Utility::getFactory), custom matcher and
// action (Config::Utility::getAndCheckFactory) from the factory registered for the
// typed_config's type URL, and so does the listener for its network filters
// (source/common/listener_manager/listener_manager_impl.cc, createNetworkFilterFactoryListImpl:
// getAndCheckFactory<NamedNetworkFilterConfigFactory>); source/common/config/utility.h
// consults the name only when no factory has that type, and not at all with
// envoy.reloadable_features.no_extension_lookup_by_name (on since Envoy 1.22, the
// 1.22.0 release notes: "type URL is used to lookup extensions regardless of the name
// field"). So the names are short, still saying what they are (config_dump shows them), and
// the pure model (src/envoy/filterChainMatcher.ts), check.ts and the access-log code look
// parts up by type URL, never by these names. Not shortened: HTTP filter names inside the
// connection manager (they key typed_per_filter_config), the seed profile's chains (seed 002
// §6.6's shape, byte for byte) and the forward proxy's tcp_proxy and connection managers
// (it shares the matcher parts, connection_limit and sni_dynamic_forward_proxy builders).
/** The filter_chain_matcher action (google.protobuf.StringValue, the filter chain's name). */
export const FILTER_CHAIN_NAME_ACTION = 'chain';
/** xds.type.matcher.v3.IPMatcher (Envoy's envoy.matching.custom_matchers.ip_range_matcher / trie_matcher). */
export const IP_MATCHER_NAME = 'ip';
/** xds.type.matcher.v3.ServerNameMatcher (Envoy's envoy.matching.custom_matchers.domain_matcher). */
export const SERVER_NAME_MATCHER_NAME = 'domains';
/** The matcher's inputs (envoy.matching.inputs.*), by what they read. */
export const MatcherInputName = {
  serverName: 'sni',
  sourceIp: 'src',
  destinationIp: 'dst',
  destinationPort: 'port',
  transportProtocol: 'proto',
  applicationProtocol: 'alpn',
} as const;
/** The hardened chains' network filters (envoy.filters.network.*). */
export const HardenedFilterName = {
  connectionLimit: 'limit',
  setFilterState: 'dyn_port',
  sniDynamicForwardProxy: 'dfp',
  tcpProxy: 'tcp',
  httpConnectionManager: 'http',
} as const;

/** `serve --max-connections-per-source` default: concurrent connections per source range and chain. */
export const DEFAULT_MAX_CONNECTIONS_PER_SOURCE = 512;
