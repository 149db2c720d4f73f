// Dial the name, not the address: the DNS cache and the dynamic forward proxy
// cluster that connections allowed by server name (transparent listener) or by
// CONNECT authority / Host (forward proxy) go through. One cache for every
// listener of a node: Envoy requires every filter and cluster naming a DNS
// cache to carry the identical configuration, so it is built here once.
import type { ClusterJson } from '../envoy/resources.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import { DNS_CACHE_NAME, NAME_UPSTREAM_CLUSTER, NAME_UPSTREAM_CONNECT_TIMEOUT } from './names.js';

export type DnsLookupFamily = 'V4_ONLY' | 'V6_ONLY' | 'AUTO' | 'V4_PREFERRED' | 'ALL';

export interface DnsCacheOptions {
  /** Resolvers as "IP" or "IP:PORT" (port 53 when absent); empty: the host's resolv.conf. */
  readonly resolvers?: readonly string[];
  /** Seed 000's V4_ONLY by default. */
  readonly lookupFamily?: DnsLookupFamily;
  /** At most this many names cached (Envoy's default 1024); bounds what a guest can make Envoy resolve and keep. */
  readonly maxHosts?: number;
}

export const DEFAULT_DNS_LOOKUP_FAMILY: DnsLookupFamily = 'V4_ONLY';
export const DEFAULT_DNS_MAX_HOSTS = 4096;

const resolverAddress = (text: string): { socketAddress: { address: string; portValue: number } } => {
  const bracketed = /^\[(.+)\]:(\d+)$/.exec(text);
  if (bracketed) return { socketAddress: { address: bracketed[1]!, portValue: Number(bracketed[2]) } };
  const v4WithPort = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(text);
  if (v4WithPort) return { socketAddress: { address: v4WithPort[1]!, portValue: Number(v4WithPort[2]) } };
  return { socketAddress: { address: text, portValue: 53 } };
};

/**
 * envoy.extensions.common.dynamic_forward_proxy.v3.DnsCacheConfig, as seed 000
 * sets it: c-ares, TCP for lookups, no default search domain.
 */
export function dnsCacheConfig(options: DnsCacheOptions = {}): Record<string, unknown> {
  const resolvers = options.resolvers ?? [];
  return {
    name: DNS_CACHE_NAME,
    dnsLookupFamily: options.lookupFamily ?? DEFAULT_DNS_LOOKUP_FAMILY,
    maxHosts: options.maxHosts ?? DEFAULT_DNS_MAX_HOSTS,
    // CaresDnsResolverConfig.resolvers has `min_items: 1` (Envoy NACKs an empty list), so
    // without resolvers the typed config is left out and Envoy's default resolver (c-ares
    // on the host's resolv.conf, Envoy's default options) is used.
    ...(resolvers.length > 0 ? {
      typedDnsResolverConfig: {
        name: 'envoy.network.dns_resolver.cares',
        typedConfig: {
          '@type': TypeUrl.CaresDnsResolverConfig,
          resolvers: resolvers.map(resolverAddress),
          dnsResolverOptions: { useTcpForDnsLookups: true, noDefaultSearchDomain: true },
        },
      },
    } : {}),
  };
}

/** The cluster that dials the name the dynamic forward proxy filter put on the connection. */
export function nameUpstreamCluster(options: DnsCacheOptions = {}, connectTimeout: string = NAME_UPSTREAM_CONNECT_TIMEOUT): ClusterJson {
  return {
    name: NAME_UPSTREAM_CLUSTER,
    connectTimeout,
    lbPolicy: 'CLUSTER_PROVIDED',
    clusterType: {
      name: 'envoy.clusters.dynamic_forward_proxy',
      typedConfig: { '@type': TypeUrl.DynamicForwardProxyCluster, dnsCacheConfig: dnsCacheConfig(options) },
    },
  };
}
