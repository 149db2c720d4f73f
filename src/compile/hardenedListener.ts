// The hardened egress listener (profile "hardened", the default): the seed's transparent
// listener (original_dst, tls_inspector) whose chains are chosen by filter_chain_matcher.
import type { ClusterJson, FilterChainJson, ListenerJson } from '../envoy/resources.js';
import type { RouteConfigurationJson } from '../envoy/routeConfig.js';
import { resetAccessLogCache, withEgressAccessLogs, type AccessLogOptions } from './accessLog.js';
import { auditChain, auditPolicies } from './audit.js';
import { primeChainBytes } from './chainTemplates.js';
import { ANY_SOURCE } from './cidrKeys.js';
import { loopRejectChain, nameChain, noPolicyRejectChain, originalDstChain, type ChainOptions } from './chains.js';
import { originalDstCluster, rejectCluster } from './clusters.js';
import { withRaisedCircuitBreakers, withUpstreamMark } from './guards.js';
import { markImmutable } from '../envoy/fastEncode.js';
import { perSourceChains, sourceLabelOf } from './chainSources.js';
import { hardenedMatcher } from './hardenedMatcher.js';
import { httpChains, httpInspectorListenerFilter, httpRouteConfigs, resetHttpChainCache } from './httpPath.js';
import { egressListener, type EgressListenerOptions } from './listener.js';
import { ANY_SOURCE_LABEL, EGRESS_LISTENER_NAME } from './names.js';
import { nameUpstreamCluster, type DnsCacheOptions } from './nameUpstream.js';
import type { Policy } from '../policy/model.js';

export interface HardenedOptions extends ChainOptions {
  readonly listener: EgressListenerOptions;
  readonly port: number;
  readonly upstreamMark: number;
  readonly originalDstConnectTimeout?: string;
  readonly rejectConnectTimeout?: string;
  /** Envoy's gRPC access logs to the control plane (accessLog.ts); false: none. */
  readonly accessLog?: AccessLogOptions | false;
}

// Chains depend only on the source and the options: built (and encoded) once each.
const MAX_CHAINS = 50_000;
// By options and kind, then by source: every compile looks up each of its thousands of
// chains, and a key string built per chain was most of an edit's chain step.
const chainCache = new Map<string, Map<string, FilterChainJson>>();
/** Chains held in chainCache, all groups together (bounded by MAX_CHAINS). */
let cachedChains = 0;
function chainsOf(kind: 'name' | 'original' | 'audit', sources: readonly string[], options: ChainOptions, optionsKey: string): FilterChainJson[] {
  const group = `${kind}|${optionsKey}`;
  if (cachedChains + sources.length > MAX_CHAINS) {
    chainCache.clear();
    cachedChains = 0;
  }
  let bySource = chainCache.get(group);
  if (!bySource) chainCache.set(group, (bySource = new Map()));
  return sources.map((source) => {
    let chain = bySource.get(source);
    if (!chain) {
      chain = markImmutable(kind === 'name' ? nameChain(source, options) : kind === 'audit' ? auditChain(source, options.maxConnectionsPerSource) : originalDstChain(source, options));
      bySource.set(source, chain);
      cachedChains++;
    }
    return chain;
  });
}

// The two refusal chains are the same in every listener: one object each, so their logged
// versions (accessLog.ts memoises per chain object) and their bytes are built once.
let refusals: readonly FilterChainJson[] | undefined;
const rejectChains = () => (refusals ??= [markImmutable(noPolicyRejectChain()), markImmutable(loopRejectChain())]);

/** Forgets the chains built so far (benchmarks measure cold compiles with it). */
export function resetChainCache(): void {
  chainCache.clear();
  cachedChains = 0;
  resetHttpChainCache();
  resetAccessLogCache();
}

export function hardenedListener(policies: readonly Policy[], options: HardenedOptions): ListenerJson {
  return hardenedListenerAndRoutes(policies, options).listener;
}

/** The hardened listener, and the route tables of its HTTP chains (served over RDS). */
export function hardenedListenerAndRoutes(policies: readonly Policy[], options: HardenedOptions): { listener: ListenerJson; routes: RouteConfigurationJson[] } {
  const { matcher, nameChainSources, originalDstChainSources, auditChainSources, bySource, fullBySource } = hardenedMatcher(
    policies,
    options.port,
    perSourceChains(options.maxConnectionsPerSource),
  );
  const optionsKey = `${options.maxConnectionsPerSource}|${JSON.stringify(options.dnsCache)}`;
  const chains: FilterChainJson[] = [
    ...rejectChains(),
    ...chainsOf('name', nameChainSources, options, optionsKey),
    ...chainsOf('original', originalDstChainSources, options, optionsKey),
    ...chainsOf('audit', auditChainSources, options, optionsKey),
  ];
  const listenerName = options.listener.name ?? EGRESS_LISTENER_NAME;
  // Every source's plain HTTP to port 80 (httpPath.ts); its routes need the source's names, shared ones included.
  const httpSources = [...bySource.keys()].map(sourceLabelOf);
  chains.push(...httpChains(httpSources, policies, { ...options, listener: listenerName, accessLog: options.accessLog ?? {} }, fullBySource));
  const logged = options.accessLog === false ? chains : withEgressAccessLogs(chains, policies, listenerName, options.accessLog ?? {}, bySource);
  // Every per-source chain's bytes from its kind's template (chainTemplates.ts): what a
  // chain holds besides its source's strings is the options, the listener, the access-log
  // settings and the names of the audit and log-all policies selecting the source.
  const common = `${optionsKey}|${listenerName}|${JSON.stringify(options.accessLog ?? {})}`;
  // A source's chains share their context; most sources share one.
  const contexts = new Map<readonly Policy[], string>();
  primeChainBytes(logged, (label) => {
    const selecting = fullBySource.get(label === ANY_SOURCE_LABEL ? ANY_SOURCE : label);
    if (selecting === undefined) return undefined;
    let context = contexts.get(selecting);
    if (context === undefined) {
      const logAll = selecting.filter((p) => p.log === 'all').map((p) => p.name).sort();
      contexts.set(selecting, (context = `${common}|${auditPolicies(selecting).join(',')}|${logAll.join(',')}`));
    }
    return context;
  });
  const listener = egressListener(logged, options.listener);
  listener.listenerFilters = [...(listener.listenerFilters ?? []), httpInspectorListenerFilter()];
  // Every connection is routed by the matcher, which always ends in an action; no default chain is needed.
  delete listener.defaultFilterChain;
  listener.filterChainMatcher = matcher;
  const routes = httpRouteConfigs(httpSources, policies, fullBySource).sort((a, b) => (a.name! < b.name! ? -1 : a.name! > b.name! ? 1 : 0));
  return { listener, routes };
}

// The clusters depend on the options alone: built once per options (a server has one set),
// so every group's compile shares them and the encoder keeps their bytes.
const clusterCache = new Map<string, readonly ClusterJson[]>();

/** The clusters the hardened listener routes to, sorted by name. */
export function hardenedClusters(options: { dnsCache: DnsCacheOptions; upstreamMark: number; originalDstConnectTimeout?: string; rejectConnectTimeout?: string }): ClusterJson[] {
  const key = JSON.stringify([options.dnsCache, options.upstreamMark, options.originalDstConnectTimeout ?? null, options.rejectConnectTimeout ?? null]);
  let clusters = clusterCache.get(key);
  if (!clusters) {
    if (clusterCache.size >= 16) clusterCache.clear();
    clusters = [
      withUpstreamMark(withRaisedCircuitBreakers(nameUpstreamCluster(options.dnsCache)), options.upstreamMark),
      withRaisedCircuitBreakers(originalDstCluster(options.originalDstConnectTimeout)),
      rejectCluster(options.rejectConnectTimeout),
    ].map((cluster) => markImmutable(cluster));
    clusterCache.set(key, clusters);
  }
  return [...clusters];
}
