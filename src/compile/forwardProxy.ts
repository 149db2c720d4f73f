// The explicit forward proxy of seed 000, on the node's policies: two listeners beside
// (or instead of) the transparent one, both choosing the client's allowlist by its
// source address the way the transparent listener does (policiesBySource: the most
// specific source range a policy names, with every policy around it and the source-less
// ones; other clients get the source-less policies only), each source with its own chain
// and so its own connection cap.
//
//   forward_http (10000): an HTTP connection manager for CONNECT and absolute-form
//     requests, routed per source (forwardRoutes.ts): allowed hosts through the dynamic
//     forward proxy filter and cluster, CONNECT terminated and its bytes carried as TCP;
//     the rest 403 with a body naming the host and the policy field.
//   forward_tls (10001): tls_inspector, then per source a server-name matcher: an allowed
//     SNI is dialled on 443 by sni_dynamic_forward_proxy; no SNI, or another: closed.
//
// Denial logs (issue 10) with the transparent listener's contract (accessLog.ts):
//   forward_http: http_grpc loggers on each source's connection manager, told apart by the
//     route taken (CEL on xds.route_name, forwardRoutes.ts ROUTE_PREFIX): "refuse loop "
//     → denied/loop; other "refuse " → denied/no-policy; "would-deny " → would-deny (the
//     audit policies); any other route, when a "log": "all" policy selects the source →
//     allowed. The record's server name is the Host / CONNECT authority.
//   forward_tls: tcp_grpc on the reject chain (denied/no-policy) and on each source's chain
//     (per-source cap, forbidden address, allowed for "log": "all"), as on the transparent
//     listener; audit sources send an SNI no policy allows to "forward_tls_would_deny|S",
//     forwarded and logged as would-deny (no SNI: still the reject chain).
// Loop guard: the HTTP routes refuse the proxy's own ports (forwardLoopPorts) on any host;
// the TLS listener dials only port 443, so it cannot loop unless 443 is one of them.
//
// Both share the node's one DNS cache and dynamic_forward_proxy_cluster with the
// transparent listener's name upstream (nameUpstream.ts): Envoy requires every user of
// a cache name to carry the identical configuration, so it is built in one place.
import { markImmutable } from '../envoy/fastEncode.js';
import { celFilter, chainAccessLogs, httpGrpcAccessLog, withChainAccessLogs, type AccessLogJson, type AccessLogOptions, type ChainLogPlan } from './accessLog.js';
import { auditPolicies } from './audit.js';
import type { ClusterJson, FilterChainJson, ListenerJson, MatcherJson, OnMatchJson, TypedExtensionJson } from '../envoy/resources.js';
import type { RouteConfigurationJson } from '../envoy/routeConfig.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import type { Policy } from '../policy/model.js';
import { chainAction, sniDynamicForwardProxyFilter } from './chains.js';
import { ANY_SOURCE, cidrRangeOf } from './cidrKeys.js';
import { rejectCluster } from './clusters.js';
import {
  FORWARD_ADDRESS,
  FORWARD_HTTP_CHAIN_PREFIX,
  FORWARD_HTTP_LISTENER_NAME,
  FORWARD_HTTP_PORT,
  FORWARD_HTTP_STAT_PREFIX,
  FORWARD_TLS_AUDIT_CHAIN_PREFIX,
  FORWARD_TLS_AUDIT_STAT_PREFIX,
  FORWARD_TLS_CHAIN_PREFIX,
  FORWARD_TLS_LISTENER_NAME,
  FORWARD_TLS_PORT,
  FORWARD_TLS_REJECT_CHAIN,
  FORWARD_TLS_REJECTED_STAT_PREFIX,
  FORWARD_TLS_STAT_PREFIX,
  HTTP_CONNECTION_MANAGER_FILTER,
  HTTP_DYNAMIC_FORWARD_PROXY_FILTER,
  HTTP_ROUTER_FILTER,
} from './forwardNames.js';
import { DEFAULT_NAME_PORTS, type NamePorts } from './forwardRoute.js';
import { inspectCluster, inspectListener, inspectName } from './forwardInspect.js';
import { allowedNames, forwardRouteConfig, ROUTE_PREFIX } from './forwardRoutes.js';
import { connectionLimitFilters, withRaisedCircuitBreakers, withUpstreamMark } from './guards.js';
import { sourceLabelOf } from './chainSources.js';
import { BoundedMemo } from './boundedMemo.js';
import { dnsCacheConfig, nameUpstreamCluster, type DnsCacheOptions } from './nameUpstream.js';
import { IP_MATCHER_NAME, MatcherInputName, NAME_UPSTREAM_CLUSTER, REJECT_CLUSTER, SERVER_NAME_MATCHER_NAME, TLS_INSPECTOR_LISTENER_FILTER } from './names.js';
import { policiesBySource } from './sourcePlans.js';
import { tcpProxyFilter } from './tcpProxy.js';

export interface ForwardProxyOptions {
  /** Default "0.0.0.0". */
  readonly address?: string;
  /** Default 10000. */
  readonly httpPort?: number;
  /** Default 10001. */
  readonly tlsPort?: number;
  /** Ports an allowed name may be reached on (CONNECT: 443; plain HTTP: 80 by default). */
  readonly namePorts?: NamePorts;
  /** The DNS listener's port (serve --dns-port), refused by the loop guard; default 15053, 0: none. */
  readonly dnsPort?: number;
  /** Check the SNI inside an allowed CONNECT to 443 in an internal listener (forwardInspect.ts); default false. */
  readonly inspectConnect?: boolean;
}

export const DEFAULT_FORWARD_DNS_PORT = 15053;

/** The proxy's own ports, refused on any host (the loop guard): the forward ports, the transparent listener's, the DNS listener's. */
export function forwardLoopPorts(options: ForwardProxyOptions, transparentPort: number | undefined): number[] {
  const ports = [options.httpPort ?? FORWARD_HTTP_PORT, options.tlsPort ?? FORWARD_TLS_PORT, transparentPort ?? 0, options.dnsPort ?? DEFAULT_FORWARD_DNS_PORT];
  return [...new Set(ports.filter((p) => p > 0))].sort((a, b) => a - b);
}

/** What the forward listeners need from the node's compile options. */
export interface ForwardCompileContext {
  readonly dnsCache: DnsCacheOptions;
  readonly maxConnectionsPerSource: number;
  readonly upstreamMark: number;
  /** The transparent listener's port when it runs beside the forward proxy (a loop target). */
  readonly transparentPort?: number;
  /** Access logs to the ALS (default on); false: none. */
  readonly accessLog?: AccessLogOptions | false;
}

const SOURCE_IP: TypedExtensionJson = { name: MatcherInputName.sourceIp, typedConfig: { '@type': TypeUrl.SourceIpInput } };
const SERVER_NAME: TypedExtensionJson = { name: MatcherInputName.serverName, typedConfig: { '@type': TypeUrl.ServerNameInput } };
const to = (chain: string): OnMatchJson => ({ action: chainAction(chain) });
const socket = (address: string, portValue: number) => ({ socketAddress: { address, portValue } });

/** A body that names the host and the client: %LOCAL_REPLY_BODY% is the route's text (forwardRoutes.ts REFUSAL_TEXT). */
export const LOCAL_REPLY_FORMAT = 'egress-xds: %REQ(:AUTHORITY)% refused for %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%: %LOCAL_REPLY_BODY%';

/** The CEL conditions of the HTTP loggers, on the route's name (Envoy ≥ 1.26 for the CEL filter and xds.route_name). */
const routeStarts = (prefix: string): string => `xds.route_name.startsWith(${JSON.stringify(prefix)})`;
export const FORWARD_LOG_CEL = {
  loop: routeStarts(ROUTE_PREFIX.loop),
  refused: `${routeStarts(ROUTE_PREFIX.refuse)} && !${routeStarts(ROUTE_PREFIX.loop)}`,
  wouldDeny: routeStarts(ROUTE_PREFIX.wouldDeny),
  allowed: `!${routeStarts(ROUTE_PREFIX.refuse)} && !${routeStarts(ROUTE_PREFIX.wouldDeny)}`,
} as const;

/** The http_grpc loggers of one source's connection manager. */
export function forwardHttpAccessLogs(chain: string, policies: readonly Policy[], options: AccessLogOptions = {}): AccessLogJson[] {
  const base = { listener: FORWARD_HTTP_LISTENER_NAME, chain };
  const audit = auditPolicies(policies);
  const logAll = policies.filter((p) => p.log === 'all').map((p) => p.name).sort();
  return [
    httpGrpcAccessLog({ ...base, verdict: 'denied', reason: 'loop' }, celFilter(FORWARD_LOG_CEL.loop), options),
    httpGrpcAccessLog({ ...base, verdict: 'denied', reason: 'no-policy' }, celFilter(FORWARD_LOG_CEL.refused), options),
    ...(audit.length > 0 ? [httpGrpcAccessLog({ ...base, verdict: 'would-deny', reason: 'no-policy', policies: audit }, celFilter(FORWARD_LOG_CEL.wouldDeny), options)] : []),
    ...(logAll.length > 0 ? [httpGrpcAccessLog({ ...base, verdict: 'allowed', policies: logAll }, celFilter(FORWARD_LOG_CEL.allowed), options)] : []),
  ];
}

export function httpConnectionManager(routeConfig: RouteConfigurationJson, dnsCache: DnsCacheOptions, accessLog: readonly AccessLogJson[] = []): TypedExtensionJson {
  return {
    name: HTTP_CONNECTION_MANAGER_FILTER,
    typedConfig: {
      '@type': TypeUrl.HttpConnectionManager,
      statPrefix: FORWARD_HTTP_STAT_PREFIX,
      routeConfig,
      httpFilters: [
        { name: HTTP_DYNAMIC_FORWARD_PROXY_FILTER, typedConfig: { '@type': TypeUrl.HttpDynamicForwardProxy, dnsCacheConfig: dnsCacheConfig(dnsCache) } },
        { name: HTTP_ROUTER_FILTER, typedConfig: { '@type': TypeUrl.HttpRouter } },
      ],
      // CONNECT reaches routing at all only when enabled here (a refusal is a direct
      // response, which has no route-level upgrade entry); allowed routes terminate it.
      upgradeConfigs: [{ upgradeType: 'CONNECT' }],
      http2ProtocolOptions: { allowConnect: true },
      httpProtocolOptions: { allowAbsoluteUrl: true },
      // The client is the connection's peer, never an X-Forwarded-For it wrote.
      useRemoteAddress: true,
      localReplyConfig: { bodyFormat: { textFormatSource: { inlineString: LOCAL_REPLY_FORMAT } } },
      ...(accessLog.length > 0 && { accessLog: [...accessLog] }),
    },
  };
}

function ipMatcher(rangeMatchers: { ranges: { addressPrefix: string; prefixLen: number }[]; onMatch: OnMatchJson }[]): TypedExtensionJson {
  return { name: IP_MATCHER_NAME, typedConfig: { '@type': TypeUrl.IpMatcher, rangeMatchers } };
}

/** source_ip over the named ranges (longest first, Envoy's IP matcher), else `other`. */
function bySourceIp(keys: readonly string[], onMatch: (key: string) => OnMatchJson, other: OnMatchJson): MatcherJson {
  return {
    matcherTree: { input: SOURCE_IP, customMatch: ipMatcher(keys.map((key) => ({ ranges: [cidrRangeOf(key)], onMatch: onMatch(key) }))) },
    onNoMatch: other,
  };
}

// Per-source chains, memoised on what they are made of (the shared route configuration
// object, the source label, the options) and marked immutable: a recompile after one
// policy's edit re-encodes only the chains of the sources it selects.
const MAX_CHAINS = 50_000;
const httpChains = new WeakMap<RouteConfigurationJson, Map<string, FilterChainJson>>();
let httpChainCount = 0;
const tlsChains = new BoundedMemo<FilterChainJson>(MAX_CHAINS);

function cachedHttpChain(label: string, routeConfig: RouteConfigurationJson, policies: readonly Policy[], context: ForwardCompileContext): FilterChainJson {
  const name = `${FORWARD_HTTP_CHAIN_PREFIX}|${label}`;
  // Keyed on what the loggers are made of (cheap), so a warm compile builds none of them.
  const logKey =
    context.accessLog === false
      ? 'off'
      : `${context.accessLog?.alsCluster ?? ''}|${auditPolicies(policies).join(',')}|${policies.filter((p) => p.log === 'all').map((p) => p.name).sort().join(',')}`;
  const key = `${label}|${context.maxConnectionsPerSource}|${JSON.stringify(context.dnsCache)}|${logKey}`;
  let byKey = httpChains.get(routeConfig);
  let chain = byKey?.get(key);
  if (chain) return chain;
  const logs = context.accessLog === false ? [] : forwardHttpAccessLogs(name, policies, context.accessLog ?? {});
  chain = markImmutable<FilterChainJson>({
    name,
    filters: [...connectionLimitFilters(label, context.maxConnectionsPerSource), httpConnectionManager(routeConfig, context.dnsCache, logs)],
  });
  if (!byKey) httpChains.set(routeConfig, (byKey = new Map()));
  if (++httpChainCount > MAX_CHAINS) {
    byKey.clear();
    httpChainCount = 0;
  }
  byKey.set(key, chain);
  return chain;
}

/** A source's forwarding chain ("forward_tls|S"), or its audit chain ("forward_tls_would_deny|S"), with its loggers. */
function cachedTlsChain(label: string, context: ForwardCompileContext, policies: readonly Policy[], auditing = false): FilterChainJson {
  const name = `${auditing ? FORWARD_TLS_AUDIT_CHAIN_PREFIX : FORWARD_TLS_CHAIN_PREFIX}|${label}`;
  const plan: ChainLogPlan = auditing
    ? { kind: 'would-deny', auditPolicies: auditPolicies(policies) }
    : {
        kind: 'forward',
        byName: true,
        logAllPolicies: policies.filter((p) => p.log === 'all').map((p) => p.name).sort(),
        ...(context.maxConnectionsPerSource === 0 && { uncapped: true as const }),
      };
  const logKey = context.accessLog === false ? 'off' : `${context.accessLog?.alsCluster ?? ''}|${JSON.stringify(plan)}`;
  const key = `${name}|${context.maxConnectionsPerSource}|${JSON.stringify(context.dnsCache)}|${logKey}`;
  return tlsChains.get(key, () => {
    const logs = context.accessLog === false ? [] : chainAccessLogs(name, FORWARD_TLS_LISTENER_NAME, plan, context.accessLog ?? {});
    return markImmutable<FilterChainJson>(withChainAccessLogs({
      name,
      filters: [
        ...connectionLimitFilters(label, context.maxConnectionsPerSource),
        // No dynamic port here: seed 000 dials every allowed SNI on 443.
        sniDynamicForwardProxyFilter(context.dnsCache),
        tcpProxyFilter(NAME_UPSTREAM_CLUSTER, auditing ? FORWARD_TLS_AUDIT_STAT_PREFIX : FORWARD_TLS_STAT_PREFIX),
      ],
    }, logs));
  });
}

export function forwardHttpListener(policies: readonly Policy[], options: ForwardProxyOptions, context: ForwardCompileContext): ListenerJson {
  const bySource = policiesBySource(policies);
  const namePorts = options.namePorts ?? DEFAULT_NAME_PORTS;
  const loopPorts = forwardLoopPorts(options, context.transparentPort);
  const chainOf = (key: string): FilterChainJson => {
    const selecting = bySource.get(key) ?? [];
    return cachedHttpChain(sourceLabelOf(key), forwardRouteConfig(selecting, namePorts, loopPorts, options.inspectConnect === true), selecting, context);
  };
  const ranges = [...bySource.keys()].filter((key) => key !== ANY_SOURCE);
  const chainName = (key: string): string => `${FORWARD_HTTP_CHAIN_PREFIX}|${sourceLabelOf(key)}`;
  return {
    name: FORWARD_HTTP_LISTENER_NAME,
    address: socket(options.address ?? FORWARD_ADDRESS, options.httpPort ?? FORWARD_HTTP_PORT),
    trafficDirection: 'OUTBOUND',
    filterChains: [chainOf(ANY_SOURCE), ...ranges.map(chainOf)],
    // Always a matcher (an empty IP matcher when no policy names sources), so adding the
    // first source range changes only the matcher and the chains, never the listener's shape.
    // Clients from no range a policy names get the source-less policies.
    filterChainMatcher: bySourceIp(ranges, (key) => to(chainName(key)), to(chainName(ANY_SOURCE))),
  };
}

/** A source's server-name subtree, by its names' (shared, sorted) array and its label. */
const tlsSubtrees = new WeakMap<readonly string[], Map<string, OnMatchJson>>();
function remember(map: Map<string, OnMatchJson>, label: string, subtree: OnMatchJson): OnMatchJson {
  if (map.size > 1_000) map.clear();
  map.set(label, markImmutable(subtree));
  return subtree;
}

export function forwardTlsListener(policies: readonly Policy[], options: ForwardProxyOptions, context: ForwardCompileContext): ListenerJson {
  const bySource = policiesBySource(policies);
  const chains: FilterChainJson[] = [];
  /** The source's server-name subtree, or a refusal when it allows no name. */
  const subtree = (key: string): OnMatchJson => {
    const selecting = bySource.get(key) ?? [];
    const names = allowedNames(selecting);
    const label = sourceLabelOf(key);
    // Audit: any other SNI ("*": Envoy's global wildcard, never an absent or empty name) goes
    // to the source's would-deny chain; no SNI stays refused (there is no name to dial).
    const audited = selecting.some((p) => p.mode === 'audit');
    const auditChainName = `${FORWARD_TLS_AUDIT_CHAIN_PREFIX}|${label}`;
    if (audited) chains.push(cachedTlsChain(label, context, selecting, true));
    if (names.length === 0 && !audited) return to(FORWARD_TLS_REJECT_CHAIN);
    const chain = `${FORWARD_TLS_CHAIN_PREFIX}|${label}`;
    if (names.length > 0) chains.push(cachedTlsChain(label, context, selecting));
    let byLabel = tlsSubtrees.get(names);
    const memo = `${label}|${audited}`;
    const cached = byLabel?.get(memo);
    if (cached) return cached;
    if (!byLabel) tlsSubtrees.set(names, (byLabel = new Map()));
    const domainMatchers = [
      ...(names.length > 0 ? [{ domains: [...names], onMatch: to(chain) }] : []),
      ...(audited ? [{ domains: ['*'], onMatch: to(auditChainName) }] : []),
    ];
    return remember(byLabel, memo, {
      matcher: {
        matcherTree: { input: SERVER_NAME, customMatch: { name: SERVER_NAME_MATCHER_NAME, typedConfig: { '@type': TypeUrl.ServerNameMatcher, domainMatchers } } },
        onNoMatch: to(FORWARD_TLS_REJECT_CHAIN),
      },
    });
  };
  const anySource = subtree(ANY_SOURCE);
  const ranges = [...bySource.keys()].filter((key) => key !== ANY_SOURCE);
  const matcher = bySourceIp(ranges, subtree, anySource);
  const bare: FilterChainJson = { name: FORWARD_TLS_REJECT_CHAIN, filters: [tcpProxyFilter(REJECT_CLUSTER, FORWARD_TLS_REJECTED_STAT_PREFIX)] };
  const reject =
    context.accessLog === false
      ? bare
      : withChainAccessLogs(bare, chainAccessLogs(FORWARD_TLS_REJECT_CHAIN, FORWARD_TLS_LISTENER_NAME, { kind: 'refusal', reason: 'no-policy' }, context.accessLog ?? {}));
  return {
    name: FORWARD_TLS_LISTENER_NAME,
    address: socket(options.address ?? FORWARD_ADDRESS, options.tlsPort ?? FORWARD_TLS_PORT),
    trafficDirection: 'OUTBOUND',
    listenerFilters: [{ name: TLS_INSPECTOR_LISTENER_FILTER, typedConfig: { '@type': TypeUrl.TlsInspector } }],
    filterChains: [reject, ...chains],
    // Every branch ends in an action (no SNI, or a name no policy allows: the reject chain,
    // closed at reject_cluster), so no default chain is needed.
    filterChainMatcher: matcher,
  };
}

/**
 * The forward listeners added to a node's compiled resources: the listeners, and the
 * clusters they route to that are not there yet (the shared name cluster, reject_cluster),
 * clusters kept sorted by name.
 */
export function withForwardProxy(
  base: { listeners: ListenerJson[]; clusters: ClusterJson[] },
  policies: readonly Policy[],
  options: ForwardProxyOptions,
  context: ForwardCompileContext,
): { listeners: ListenerJson[]; clusters: ClusterJson[] } {
  const listeners = [...base.listeners, forwardHttpListener(policies, options, context), forwardTlsListener(policies, options, context)];
  const have = new Set(base.clusters.map((c) => c.name));
  const needed: ClusterJson[] = [
    withUpstreamMark(withRaisedCircuitBreakers(nameUpstreamCluster(context.dnsCache)), context.upstreamMark),
    rejectCluster(),
  ].filter((c) => !have.has(c.name));
  if (options.inspectConnect === true) {
    // One internal listener per distinct allowlist of names and CONNECT port (the routes name it by digest).
    const ports = (options.namePorts ?? DEFAULT_NAME_PORTS).connect;
    const nameSets = new Map<string, { names: readonly string[]; port: number; audit: readonly string[] }>();
    for (const selecting of policiesBySource(policies).values()) {
      const names = allowedNames(selecting);
      const audit = auditPolicies(selecting);
      if (names.length > 0) for (const port of ports) nameSets.set(inspectName(names, port, audit), { names, port, audit });
    }
    for (const [, { names, port, audit }] of [...nameSets].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      listeners.push(inspectListener(names, port, context, audit));
      needed.push(inspectCluster(names, port, audit));
    }
  }
  const clusters = [...base.clusters, ...needed].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { listeners, clusters };
}
