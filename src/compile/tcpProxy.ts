// The one network filter of every egress filter chain: tcp_proxy to a cluster.
import type { FilterChainJson, TcpProxyJson, TypedExtensionJson } from '../envoy/resources.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import { TCP_PROXY_FILTER } from './names.js';

export function tcpProxyFilter(cluster: string, statPrefix: string): TypedExtensionJson {
  const typedConfig: TcpProxyJson = { '@type': TypeUrl.TcpProxy, statPrefix, cluster };
  return { name: TCP_PROXY_FILTER, typedConfig: { ...typedConfig } };
}

/** The cluster a filter chain's tcp_proxy sends connections to; undefined when it has none. */
export function tcpProxyCluster(chain: FilterChainJson): string | undefined {
  const filter = chain.filters.find((f) => f.name === TCP_PROXY_FILTER && f.typedConfig['@type'] === TypeUrl.TcpProxy);
  const cluster = filter?.typedConfig['cluster'];
  return typeof cluster === 'string' ? cluster : undefined;
}
