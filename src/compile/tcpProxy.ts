// The one network filter of every egress filter chain: tcp_proxy to a cluster.
import type { FilterChainJson, TcpProxyJson, TypedExtensionJson } from '../envoy/resources.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import { TCP_PROXY_FILTER } from './names.js';

/** `name` is opaque to Envoy (names.ts): the seed's chains keep the canonical one, the hardened chains a short one. */
export function tcpProxyFilter(cluster: string, statPrefix: string, name: string = TCP_PROXY_FILTER): TypedExtensionJson {
  const typedConfig: TcpProxyJson = { '@type': TypeUrl.TcpProxy, statPrefix, cluster };
  return { name, typedConfig: { ...typedConfig } };
}

/** The cluster a filter chain's tcp_proxy sends connections to; undefined when it has none. */
export function tcpProxyCluster(chain: FilterChainJson): string | undefined {
  // By type URL, as Envoy finds the filter's factory: the name is opaque (names.ts).
  const filter = chain.filters.find((f) => f.typedConfig['@type'] === TypeUrl.TcpProxy);
  const cluster = filter?.typedConfig['cluster'];
  return typeof cluster === 'string' ? cluster : undefined;
}
