// The transparent egress listener of seed 002 §6.5-6.6.
import type { AddressJson, FilterChainJson, ListenerJson } from '../envoy/resources.js';
import { markImmutable } from '../envoy/fastEncode.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import {
  EGRESS_LISTENER_ADDRESS,
  EGRESS_LISTENER_NAME,
  EGRESS_LISTENER_PORT,
  ORIGINAL_DST_LISTENER_FILTER,
  REJECT_CLUSTER,
  REJECT_FILTER_CHAIN,
  REJECTED_STAT_PREFIX,
  TLS_INSPECTOR_LISTENER_FILTER,
} from './names.js';
import { tcpProxyFilter } from './tcpProxy.js';

export interface EgressListenerOptions {
  readonly name?: string;
  readonly address?: string;
  readonly port?: number;
  /** Also listen on [::]:port, for IPv6 traffic redirected by ip6tables/nft TPROXY. */
  readonly ipv6?: boolean;
}

const socket = (address: string, portValue: number): AddressJson => ({ socketAddress: { address, portValue } });

/** Everything no allowing chain takes: closed at reject_cluster, never forwarded. */
export function rejectFilterChain(): FilterChainJson {
  return { name: REJECT_FILTER_CHAIN, filters: [tcpProxyFilter(REJECT_CLUSTER, REJECTED_STAT_PREFIX)] };
}

// The same in every listener: shared, and marked so the encoder keeps their bytes.
const LISTENER_FILTERS = [
  markImmutable({ name: ORIGINAL_DST_LISTENER_FILTER, typedConfig: { '@type': TypeUrl.OriginalDst } }),
  markImmutable({ name: TLS_INSPECTOR_LISTENER_FILTER, typedConfig: { '@type': TypeUrl.TlsInspector } }),
];

export function egressListener(filterChains: FilterChainJson[], options: EgressListenerOptions = {}): ListenerJson {
  const port = options.port ?? EGRESS_LISTENER_PORT;
  const listener: ListenerJson = {
    name: options.name ?? EGRESS_LISTENER_NAME,
    address: socket(options.address ?? EGRESS_LISTENER_ADDRESS, port),
    transparent: true,
    trafficDirection: 'OUTBOUND',
    // Order matters: the original destination must be restored before chains are matched on it.
    listenerFilters: [...LISTENER_FILTERS],
    // A server-first protocol (SMTP, MySQL) never sends a ClientHello: after the inspector's
    // timeout, match it as plain TCP (cidr rules) instead of closing it.
    continueOnListenerFiltersTimeout: true,
    filterChains,
    // The reject chain is the default rather than a catch-all chain, so no generated chain can collide with it.
    defaultFilterChain: rejectFilterChain(),
  };
  if (options.ipv6) listener.additionalAddresses = [{ address: socket('::', port) }];
  return listener;
}
