// Where a host's listener bytes go: the filter_chain_matcher, each kind of filter chain
// (the part of the name before "|"), the rest of the listener, and the route tables served
// beside it over RDS. Protobuf bytes, as Envoy receives them.
import type { CompiledEgress } from '../src/compile/index.js';
import { fastEncodeProtoJson } from '../src/envoy/fastEncode.js';
import { TYPE_PREFIX, TypeUrl } from '../src/envoy/typeUrls.js';

export interface ListenerBreakdown {
  /** The egress listener's bytes (the first listener). */
  readonly listener: number;
  readonly matcher: number;
  /** Bytes of the filter chains, by kind ("name", "http", "original_dst", …): [count, bytes]. */
  readonly chains: Readonly<Record<string, readonly [number, number]>>;
  /** The RouteConfigurations served over RDS: count and bytes. */
  readonly routes: readonly [number, number];
}

export function listenerBreakdown(compiled: CompiledEgress): ListenerBreakdown {
  const listener = compiled.listeners[0]!;
  const chains: Record<string, [number, number]> = {};
  for (const chain of listener.filterChains) {
    const kind = (chain.name ?? '').split('|')[0]!;
    const entry = (chains[kind] ??= [0, 0]);
    entry[0] += 1;
    entry[1] += fastEncodeProtoJson(`${TYPE_PREFIX}envoy.config.listener.v3.FilterChain`, chain).length;
  }
  const routes = (compiled as { routes?: readonly unknown[] }).routes ?? [];
  return {
    listener: fastEncodeProtoJson(TypeUrl.Listener, listener).length,
    matcher: listener.filterChainMatcher ? fastEncodeProtoJson(`${TYPE_PREFIX}xds.type.matcher.v3.Matcher`, listener.filterChainMatcher).length : 0,
    chains,
    routes: [routes.length, routes.reduce<number>((sum, r) => sum + fastEncodeProtoJson(`${TYPE_PREFIX}envoy.config.route.v3.RouteConfiguration`, r).length, 0)],
  };
}

export function formatBreakdown(b: ListenerBreakdown): string {
  const kinds = Object.entries(b.chains)
    .sort((x, y) => y[1][1] - x[1][1])
    .map(([kind, [count, bytes]]) => `${kind} ${count} × = ${bytes}`)
    .join(', ');
  return `listener ${b.listener} (matcher ${b.matcher}; chains: ${kinds}); routes ${b.routes[0]} = ${b.routes[1]}; total ${b.listener + b.routes[1]}`;
}
