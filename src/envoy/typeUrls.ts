// Type URLs of the resources and typed configs egress-xds produces.
export const TYPE_PREFIX = 'type.googleapis.com/';

export const TypeUrl = {
  Listener: `${TYPE_PREFIX}envoy.config.listener.v3.Listener`,
  Cluster: `${TYPE_PREFIX}envoy.config.cluster.v3.Cluster`,
  TcpProxy: `${TYPE_PREFIX}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`,
  OriginalDst: `${TYPE_PREFIX}envoy.extensions.filters.listener.original_dst.v3.OriginalDst`,
  TlsInspector: `${TYPE_PREFIX}envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector`,
  HttpProtocolOptions: `${TYPE_PREFIX}envoy.extensions.upstreams.http.v3.HttpProtocolOptions`,
  DynamicForwardProxyCluster: `${TYPE_PREFIX}envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig`,
  CaresDnsResolverConfig: `${TYPE_PREFIX}envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig`,
  UpstreamTlsContext: `${TYPE_PREFIX}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`,
} as const;

export type ResourceTypeUrl = typeof TypeUrl.Listener | typeof TypeUrl.Cluster;

/** Resource types served over ADS, in the order Envoy needs them: clusters before the listener that uses them. */
export const RESOURCE_TYPE_ORDER: readonly ResourceTypeUrl[] = [TypeUrl.Cluster, TypeUrl.Listener];

export const messageNameOf = (typeUrl: string): string =>
  typeUrl.startsWith(TYPE_PREFIX) ? typeUrl.slice(TYPE_PREFIX.length) : typeUrl;

export const isServedResourceType = (typeUrl: string): typeUrl is ResourceTypeUrl =>
  (RESOURCE_TYPE_ORDER as readonly string[]).includes(typeUrl);
