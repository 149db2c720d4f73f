// Type URLs of the resources and typed configs egress-xds produces.
export const TYPE_PREFIX = 'type.googleapis.com/';

export const TypeUrl = {
  Listener: `${TYPE_PREFIX}envoy.config.listener.v3.Listener`,
  Cluster: `${TYPE_PREFIX}envoy.config.cluster.v3.Cluster`,
  /** The port-80 route tables, one per source, served over RDS (compile/httpPath.ts). */
  RouteConfiguration: `${TYPE_PREFIX}envoy.config.route.v3.RouteConfiguration`,
  TcpProxy: `${TYPE_PREFIX}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`,
  OriginalDst: `${TYPE_PREFIX}envoy.extensions.filters.listener.original_dst.v3.OriginalDst`,
  InternalListenerBootstrap: `${TYPE_PREFIX}envoy.extensions.bootstrap.internal_listener.v3.InternalListener`,
  TlsInspector: `${TYPE_PREFIX}envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector`,
  HttpProtocolOptions: `${TYPE_PREFIX}envoy.extensions.upstreams.http.v3.HttpProtocolOptions`,
  DynamicForwardProxyCluster: `${TYPE_PREFIX}envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig`,
  CaresDnsResolverConfig: `${TYPE_PREFIX}envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig`,
  UpstreamTlsContext: `${TYPE_PREFIX}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`,
  SniDynamicForwardProxy: `${TYPE_PREFIX}envoy.extensions.filters.network.sni_dynamic_forward_proxy.v3.FilterConfig`,
  SetFilterState: `${TYPE_PREFIX}envoy.extensions.filters.network.set_filter_state.v3.Config`,
  ConnectionLimit: `${TYPE_PREFIX}envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit`,
  TcpGrpcAccessLogConfig: `${TYPE_PREFIX}envoy.extensions.access_loggers.grpc.v3.TcpGrpcAccessLogConfig`,
  HttpGrpcAccessLogConfig: `${TYPE_PREFIX}envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig`,
  CelExpressionFilter: `${TYPE_PREFIX}envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter`,
  HttpInspector: `${TYPE_PREFIX}envoy.extensions.filters.listener.http_inspector.v3.HttpInspector`,
  HttpConnectionManager: `${TYPE_PREFIX}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
  HttpDynamicForwardProxy: `${TYPE_PREFIX}envoy.extensions.filters.http.dynamic_forward_proxy.v3.FilterConfig`,
  HttpRouter: `${TYPE_PREFIX}envoy.extensions.filters.http.router.v3.Router`,
  DnsFilterConfig: `${TYPE_PREFIX}envoy.extensions.filters.udp.dns_filter.v3.DnsFilterConfig`,
  /** The filter_chain_matcher action: the name of the filter chain to use. */
  StringValue: `${TYPE_PREFIX}google.protobuf.StringValue`,
  IpMatcher: `${TYPE_PREFIX}xds.type.matcher.v3.IPMatcher`,
  ServerNameMatcher: `${TYPE_PREFIX}xds.type.matcher.v3.ServerNameMatcher`,
  DestinationIpInput: `${TYPE_PREFIX}envoy.extensions.matching.common_inputs.network.v3.DestinationIPInput`,
  DestinationPortInput: `${TYPE_PREFIX}envoy.extensions.matching.common_inputs.network.v3.DestinationPortInput`,
  SourceIpInput: `${TYPE_PREFIX}envoy.extensions.matching.common_inputs.network.v3.SourceIPInput`,
  SourcePortInput: `${TYPE_PREFIX}envoy.extensions.matching.common_inputs.network.v3.SourcePortInput`,
  DirectSourceIpInput: `${TYPE_PREFIX}envoy.extensions.matching.common_inputs.network.v3.DirectSourceIPInput`,
  ServerNameInput: `${TYPE_PREFIX}envoy.extensions.matching.common_inputs.network.v3.ServerNameInput`,
  StreamAccessLogsMessage: `${TYPE_PREFIX}envoy.service.accesslog.v3.StreamAccessLogsMessage`,
  TransportProtocolInput: `${TYPE_PREFIX}envoy.extensions.matching.common_inputs.network.v3.TransportProtocolInput`,
  ApplicationProtocolInput: `${TYPE_PREFIX}envoy.extensions.matching.common_inputs.network.v3.ApplicationProtocolInput`,
} as const;

export type ResourceTypeUrl = typeof TypeUrl.Listener | typeof TypeUrl.Cluster | typeof TypeUrl.RouteConfiguration;

/**
 * Resource types served over ADS, in the order Envoy needs them (the xDS protocol's
 * make-before-break order, CDS, EDS, LDS, RDS): clusters before the listener that uses them,
 * route tables after the listener that names them (Envoy asks for those names once it has it).
 */
export const RESOURCE_TYPE_ORDER: readonly ResourceTypeUrl[] = [TypeUrl.Cluster, TypeUrl.Listener, TypeUrl.RouteConfiguration];

/**
 * The types with a wildcard subscription (xDS protocol, "How the client specifies what
 * resources to return"): a first request naming nothing asks for all of them. For the
 * others (RouteConfiguration) a request names what it wants, and naming nothing means
 * wanting nothing.
 */
export const isWildcardResourceType = (typeUrl: string): boolean => typeUrl === TypeUrl.Listener || typeUrl === TypeUrl.Cluster;

export const messageNameOf = (typeUrl: string): string =>
  typeUrl.startsWith(TYPE_PREFIX) ? typeUrl.slice(TYPE_PREFIX.length) : typeUrl;

export const isServedResourceType = (typeUrl: string): typeUrl is ResourceTypeUrl =>
  (RESOURCE_TYPE_ORDER as readonly string[]).includes(typeUrl);
