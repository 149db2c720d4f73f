// The hardened listener's filter chains: one per action, and per source for the actions
// that forward (each source's own connection cap; with --max-connections-per-source 0 there
// is none and chainSources.ts shares them: "name|*", "original_dst|*"). Chains carry no policy data: which
// chain a connection takes is decided by filter_chain_matcher (hardenedMatcher.ts), so a
// policy edit changes only the matcher and Envoy drains no chain (listener_impl.cc
// ListenerMessageUtil::filterChainOnlyChange ignores filter_chain_matcher; chains whose
// proto is unchanged keep their connections).
//
// Every refusal is its own named chain, so access logs and audit branches can be attached
// per reason by sibling files: "reject" (no policy allows it), "reject_loop" (the
// listener's own port). The per-source cap and the special-address refusal happen inside
// the forwarding chains (connection_limit; the host refusing the marked upstream socket).
import type { FilterChainJson, TypedExtensionJson } from '../envoy/resources.js';
import { markImmutable } from '../envoy/fastEncode.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import { connectionLimitFilters } from './guards.js';
import {
  ALLOWED_STAT_PREFIX,
  FILTER_CHAIN_NAME_ACTION,
  LOOP_REJECT_FILTER_CHAIN,
  LOOP_REJECTED_STAT_PREFIX,
  NAME_CHAIN_PREFIX,
  NAME_STAT_PREFIX,
  NAME_UPSTREAM_CLUSTER,
  ORIGINAL_DST_CHAIN_PREFIX,
  ORIGINAL_DST_CLUSTER,
  REJECT_CLUSTER,
  REJECT_FILTER_CHAIN,
  REJECTED_STAT_PREFIX,
  HardenedFilterName,
} from './names.js';
import { dnsCacheConfig, type DnsCacheOptions } from './nameUpstream.js';
import { tcpProxyFilter } from './tcpProxy.js';

/** What every per-source chain needs besides the source. */
export interface ChainOptions {
  /** 0: no connection_limit, and the forwarding chains shared (chainSources.ts). */
  readonly maxConnectionsPerSource: number;
  readonly dnsCache: DnsCacheOptions;
}

/** The filter_chain_matcher action that selects the chain called `name`. */
export function chainAction(name: string): TypedExtensionJson {
  return { name: FILTER_CHAIN_NAME_ACTION, typedConfig: { '@type': TypeUrl.StringValue, value: name } };
}

export const nameChainName = (sourceLabel: string): string => `${NAME_CHAIN_PREFIX}|${sourceLabel}`;
export const originalDstChainName = (sourceLabel: string): string => `${ORIGINAL_DST_CHAIN_PREFIX}|${sourceLabel}`;

/** No policy allows it: closed at reject_cluster (tcp.rejected.*). */
export function noPolicyRejectChain(): FilterChainJson {
  return { name: REJECT_FILTER_CHAIN, filters: [tcpProxyFilter(REJECT_CLUSTER, REJECTED_STAT_PREFIX, HardenedFilterName.tcpProxy)] };
}

/**
 * To the listener's own port: closed at reject_cluster (tcp.rejected_loop.*), whatever the
 * policies say. The seed profile's loop guard passes the canonical filter name (its shape).
 */
export function loopRejectChain(filterName: string = HardenedFilterName.tcpProxy): FilterChainJson {
  return { name: LOOP_REJECT_FILTER_CHAIN, filters: [tcpProxyFilter(REJECT_CLUSTER, LOOP_REJECTED_STAT_PREFIX, filterName)] };
}

/**
 * The original destination port for the dynamic forward proxy: sni_dynamic_forward_proxy
 * dials its fixed port_value unless the connection's filter state holds
 * envoy.upstream.dynamic_port (proxy_filter.cc onNewConnection); after the original_dst
 * listener filter, %DOWNSTREAM_LOCAL_PORT% is the port the guest dialled.
 */
export function originalPortFilterState(): TypedExtensionJson {
  return {
    name: HardenedFilterName.setFilterState,
    typedConfig: {
      '@type': TypeUrl.SetFilterState,
      onNewConnection: [
        {
          objectKey: 'envoy.upstream.dynamic_port',
          formatString: { textFormatSource: { inlineString: '%DOWNSTREAM_LOCAL_PORT%' } },
        },
      ],
    },
  };
}

/** Resolves the SNI through the node's one DNS cache (the same config as the cluster's, as Envoy requires). */
export function sniDynamicForwardProxyFilter(dnsCache: DnsCacheOptions): TypedExtensionJson {
  return {
    name: HardenedFilterName.sniDynamicForwardProxy,
    // port_value is only used when the filter state above is missing or out of range.
    typedConfig: { '@type': TypeUrl.SniDynamicForwardProxy, dnsCacheConfig: dnsCacheConfig(dnsCache), portValue: 443 },
  };
}

// The filters every name chain repeats, built once per DNS cache config and marked
// immutable, so the encoder encodes them once rather than once per chain.
const sharedNameFilters = new Map<string, { port: TypedExtensionJson; dfp: TypedExtensionJson }>();
function nameFilters(dnsCache: DnsCacheOptions): { port: TypedExtensionJson; dfp: TypedExtensionJson } {
  const key = JSON.stringify(dnsCache);
  let shared = sharedNameFilters.get(key);
  if (!shared) {
    if (sharedNameFilters.size > 64) sharedNameFilters.clear();
    sharedNameFilters.set(key, (shared = { port: markImmutable(originalPortFilterState()), dfp: markImmutable(sniDynamicForwardProxyFilter(dnsCache)) }));
  }
  return shared;
}

/** Allowed by name, from one source (or "*", chainSources.ts): capped (unless the cap is 0), then dialled by the name on the original port. */
export function nameChain(sourceLabel: string, options: ChainOptions): FilterChainJson {
  const shared = nameFilters(options.dnsCache);
  return {
    name: nameChainName(sourceLabel),
    filters: [
      ...connectionLimitFilters(sourceLabel, options.maxConnectionsPerSource),
      shared.port,
      shared.dfp,
      tcpProxyFilter(NAME_UPSTREAM_CLUSTER, NAME_STAT_PREFIX, HardenedFilterName.tcpProxy),
    ],
  };
}

/** Allowed by address (or by an "original-destination" policy), from one source (or "*"): capped (unless 0), then to the address dialled. */
export function originalDstChain(sourceLabel: string, options: ChainOptions): FilterChainJson {
  return {
    name: originalDstChainName(sourceLabel),
    filters: [...connectionLimitFilters(sourceLabel, options.maxConnectionsPerSource), tcpProxyFilter(ORIGINAL_DST_CLUSTER, ALLOWED_STAT_PREFIX, HardenedFilterName.tcpProxy)],
  };
}
