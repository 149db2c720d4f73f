// Plain HTTP on port 80, matched by its Host header. TLS is matched by SNI; plain HTTP
// carries the name in the Host header instead, which only an HTTP connection manager reads.
//
// The matcher (hardenedMatcher.ts) sends plain HTTP to port 80 (transport_protocol
// "raw_buffer", application_protocol "http/1.0" | "http/1.1" | "h2c" set by http_inspector)
// from each source to that source's chain http|SOURCE, unless an address rule of the source
// allows the destination. The chain is an HTTP connection manager whose route table, the
// source's allowlist, is not in the chain but served over RDS (over ADS), one
// RouteConfiguration per source, named like the chain:
//   - a virtual host per upstream kind, its domains the source's allowed names (a
//     wildcard "*.x" as Envoy's suffix wildcard "*.x", which, like the policy, matches any
//     depth) each also with ":80"; allowed hosts are dialled by name (dynamic forward proxy,
//     the node's one DNS cache and marked cluster) or, for "original-destination" policies,
//     sent to the address the guest dialled;
//   - everything else ("*") gets a 403 whose body names the host and the policy field
//     (allow.sni) that would allow it (a local-reply mapper adds the Host to the body).
// A Host with another port ("github.com:22") is refused: Envoy would dial that port.
// For a source an audit policy selects, the "*" host is not refused but forwarded to the
// address the guest dialled (the marked audit cluster) and logged as would-deny.
//
// Why RDS: the chain then holds no names, so an edit of the names a source may reach (its
// own policy's, or a shared one's) changes only that source's RouteConfiguration. Envoy
// applies a new route table to the connections already open and drains none; a changed
// chain would be drained (listener_impl.cc compares chains by their proto). It also keeps
// the listener small: the route tables were most of its bytes. RDS over ADS is in every
// Envoy v3 release (rds.config_source.ads, resource_api_version V3).
import { markImmutable } from '../envoy/fastEncode.js';
import type { FilterChainJson, TypedExtensionJson } from '../envoy/resources.js';
import type { RouteConfigurationJson, VirtualHostJson } from '../envoy/routeConfig.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import type { Policy, PolicyUpstream } from '../policy/model.js';
import { celFilter, httpGrpcAccessLog, type AccessLogJson, type AccessLogOptions } from './accessLog.js';
import { AUDIT_CLUSTER, auditPolicies } from './audit.js';
import { connectionLimitFilters } from './guards.js';
import { ANY_SOURCE_LABEL, HardenedFilterName, NAME_UPSTREAM_CLUSTER, ORIGINAL_DST_CLUSTER } from './names.js';
import { dnsCacheConfig, type DnsCacheOptions } from './nameUpstream.js';
import { sortServerNames } from './serverNames.js';
import { ANY_SOURCE, policiesBySource, serverNameLists, type ServerNameLists } from './sourcePlans.js';
import { policiesKey } from './policyIds.js';
import { BoundedMemo } from './boundedMemo.js';

export const HTTP_PORT = 80;
export const HTTP_CHAIN_PREFIX = 'http';
export const HTTP_INSPECTOR_LISTENER_FILTER = 'envoy.filters.listener.http_inspector';
export const HTTP_STAT_PREFIX = 'egress_http';
/** What http_inspector sets as the application protocol of plain HTTP (http_inspector.cc). */
export const PLAIN_HTTP_PROTOCOLS = ['h2c', 'http/1.0', 'http/1.1'] as const;
export const REFUSED_VIRTUAL_HOST = 'refused';
/** The "*" host's route name for an audited source: forwarded, logged as would-deny. */
export const WOULD_DENY_ROUTE = 'would_deny';
/** Envoy's response code details of a direct response (ResponseCodeDetails::DirectResponse). */
export const DIRECT_RESPONSE_DETAILS = 'direct_response';
/** The direct response's body; the local-reply mapper puts the host before it. */
export const HTTP_REFUSAL_BODY =
  'no policy selecting this source allows this host. To allow it, add the host to allow.sni of a policy selecting the source ' +
  '(allow.sni names hosts for TLS SNI and for the plain-HTTP Host header alike), e.g. {"allow": {"sni": ["HOST"]}}.\n';
export const HTTP_REFUSAL_FORMAT = 'egress-xds: plain HTTP to host "%REQ(:AUTHORITY)%" refused: %LOCAL_REPLY_BODY%';

export const httpChainName = (sourceLabel: string): string => `${HTTP_CHAIN_PREFIX}|${sourceLabel}`;
/** The RouteConfiguration of a source's HTTP chain: the same name ("http|SOURCE"), in RDS's own name space. */
export const httpRouteConfigName = (sourceLabel: string): string => `${HTTP_CHAIN_PREFIX}|${sourceLabel}`;

export function httpInspectorListenerFilter(): TypedExtensionJson {
  return { name: HTTP_INSPECTOR_LISTENER_FILTER, typedConfig: { '@type': TypeUrl.HttpInspector } };
}

/** Envoy virtual host domains for policy patterns: each bare and with the HTTP port. */
export function hostDomains(patterns: readonly string[]): string[] {
  const domains: string[] = [];
  for (const p of sortServerNames(patterns)) domains.push(p, withHttpPort(p));
  return domains;
}
// "name:80", one string per name shared by every source's table (bounded; names come from policies).
const withPort = new Map<string, string>();
function withHttpPort(pattern: string): string {
  let domain = withPort.get(pattern);
  if (domain === undefined) {
    if (withPort.size >= 100_000) withPort.clear();
    withPort.set(pattern, (domain = `${pattern}:${HTTP_PORT}`));
  }
  return domain;
}

// The parts of an HTTP chain that hold no names, built once per what they depend on and
// marked immutable: a shared-policy edit rebuilds every source's route table, and the
// encoder then re-encodes only those (the rest keeps its bytes).
const MAX_PARTS = 20_000;
const parts = new Map<string, unknown>();
function part<T extends object>(key: string, build: () => T): T {
  let value = parts.get(key) as T | undefined;
  if (!value) {
    if (parts.size >= MAX_PARTS) parts.clear();
    parts.set(key, (value = markImmutable(build())));
  }
  return value;
}

const refusedVirtualHost = (): VirtualHostJson =>
  part('refused', () => ({
    name: REFUSED_VIRTUAL_HOST,
    domains: ['*'],
    routes: [{ name: REFUSED_VIRTUAL_HOST, match: { prefix: '/' }, directResponse: { status: 403, body: { inlineString: HTTP_REFUSAL_BODY } } }],
  }));
const wouldDenyVirtualHost = (): VirtualHostJson =>
  part('would_deny', () => ({ name: WOULD_DENY_ROUTE, domains: ['*'], routes: [{ name: WOULD_DENY_ROUTE, match: { prefix: '/' }, route: { cluster: AUDIT_CLUSTER, timeout: '0s' } }] }));

// Forwarding virtual hosts by content, so equal name lists share one object (and its bytes):
// by name and cluster, then by the names joined. The last one asked for is checked first
// without building a key: every source's table asks for the same shared-names host.
const virtualHosts = new Map<string, Map<string, VirtualHostJson>>();
let lastVirtualHost: { name: string; cluster: string; patterns: readonly string[]; value: VirtualHostJson } | undefined;
const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
function virtualHost(name: string, patterns: readonly string[], cluster: string): VirtualHostJson {
  const last = lastVirtualHost;
  if (last && last.name === name && last.cluster === cluster && sameList(last.patterns, patterns)) return last.value;
  const kind = `${name}|${cluster}`;
  let byNames = virtualHosts.get(kind);
  if (!byNames) virtualHosts.set(kind, (byNames = new Map()));
  // Names hold no newline (validated DNS patterns), so the join is unambiguous.
  const key = patterns.join('\n');
  let value = byNames.get(key);
  if (!value) {
    if (byNames.size >= MAX_PARTS) byNames.clear();
    byNames.set(key, (value = markImmutable({ name, domains: hostDomains(patterns), routes: [{ name, match: { prefix: '/' }, route: { cluster, timeout: '0s' } }] })));
  }
  if (name === 'allowed_shared') lastVirtualHost = { name, cluster, patterns: [...patterns], value };
  return value;
}

/**
 * The route table of one source's HTTP chain. `sharedNames`: the names of the source-less
 * policies that dial by name (allowed to every source, always by name): they get a virtual
 * host of their own, the same object in every source's table, so a shared edit re-encodes
 * it once rather than once per source (Envoy picks among virtual hosts by domain alone).
 */
export function httpRouteConfig(
  sourceLabel: string,
  serverNames: ServerNameLists,
  audited = false,
  sharedNames: ReadonlySet<string> = new Set(),
): RouteConfigurationJson {
  const byName: string[] = [];
  const shared: string[] = [];
  for (const pattern of serverNames.byName) (sharedNames.has(pattern) ? shared : byName).push(pattern);
  const byOriginal = [...serverNames.byOriginal];
  const forward = (name: string, patterns: string[], cluster: string): VirtualHostJson[] =>
    patterns.length === 0 ? [] : [virtualHost(name, patterns, cluster)];
  return {
    name: httpRouteConfigName(sourceLabel),
    virtualHosts: [
      ...forward('allowed_by_name', byName, NAME_UPSTREAM_CLUSTER),
      ...forward('allowed_shared', shared, NAME_UPSTREAM_CLUSTER),
      ...forward('allowed_original_destination', byOriginal, ORIGINAL_DST_CLUSTER),
      audited ? wouldDenyVirtualHost() : refusedVirtualHost(),
    ],
    validateClusters: false,
  };
}

export interface HttpChainOptions {
  readonly maxConnectionsPerSource: number;
  readonly dnsCache: DnsCacheOptions;
  readonly listener: string;
  readonly accessLog: AccessLogOptions | false;
}

function httpAccessLogs(chain: string, policies: readonly Policy[], options: HttpChainOptions): AccessLogJson[] {
  if (options.accessLog === false) return [];
  const audits = auditPolicies(policies);
  // Envoy's CEL attributes: response.code_details, xds.route_name.
  const refused = audits.length > 0 ? `xds.route_name == ${JSON.stringify(WOULD_DENY_ROUTE)}` : `response.code_details == ${JSON.stringify(DIRECT_RESPONSE_DETAILS)}`;
  const logAll = policies.filter((p) => p.log === 'all').map((p) => p.name).sort();
  return [
    audits.length > 0
      ? httpGrpcAccessLog({ verdict: 'would-deny', reason: 'http-host', listener: options.listener, chain, policies: audits }, celFilter(refused), options.accessLog)
      : httpGrpcAccessLog({ verdict: 'denied', reason: 'http-host', listener: options.listener, chain }, celFilter(refused), options.accessLog),
    ...(logAll.length > 0 ? [httpGrpcAccessLog({ verdict: 'allowed', listener: options.listener, chain, policies: logAll }, celFilter(`!(${refused})`), options.accessLog)] : []),
  ];
}

/**
 * One source's plain-HTTP chain: capped like its other chains, then routed by Host with the
 * source's route table from RDS. It holds no allowed name: only the source, the options and
 * the names of the policies that log (audit, log: all), like the source's other chains.
 */
export function httpChain(sourceLabel: string, policies: readonly Policy[], options: HttpChainOptions): FilterChainJson {
  const name = httpChainName(sourceLabel);
  const dnsKey = JSON.stringify(options.dnsCache);
  return {
    name,
    filters: [
      // Per source: built with the chain, which is memoised whole (httpChains) and whose bytes
      // come from its kind's template (chainTemplates.ts); a memo of its own would be unused.
      ...connectionLimitFilters(sourceLabel, options.maxConnectionsPerSource),
      {
        name: HardenedFilterName.httpConnectionManager,
        typedConfig: {
          '@type': TypeUrl.HttpConnectionManager,
          statPrefix: HTTP_STAT_PREFIX,
          codecType: 'AUTO',
          rds: { configSource: { ads: {}, resourceApiVersion: 'V3' }, routeConfigName: httpRouteConfigName(sourceLabel) },
          httpFilters: part(`filters|${dnsKey}`, () => [
            { name: 'envoy.filters.http.dynamic_forward_proxy', typedConfig: { '@type': TypeUrl.HttpDynamicForwardProxy, dnsCacheConfig: dnsCacheConfig(options.dnsCache) } },
            { name: 'envoy.filters.http.router', typedConfig: { '@type': TypeUrl.HttpRouter, suppressEnvoyHeaders: true } },
          ]),
          // An egress proxy adds nothing of its own to the guest's requests.
          generateRequestId: false,
          localReplyConfig: part('localReply', () => ({
            mappers: [
              {
                // runtime_key is required (RuntimeUInt32, min_len 1) and repeated in every
                // port-80 chain: short, still saying what it overrides (the refused status).
                filter: { statusCodeFilter: { comparison: { op: 'EQ', value: { defaultValue: 403, runtimeKey: 'egress_xds.refused' } } } },
                bodyFormatOverride: { textFormatSource: { inlineString: HTTP_REFUSAL_FORMAT } },
              },
            ],
          })),
          accessLog: httpAccessLogs(name, policies, options),
        },
      },
    ],
  };
}

/** The 403 body Envoy sends for `authority` (the local-reply mapper applied to the direct response). */
export function refusalBodyFor(authority: string): string {
  return HTTP_REFUSAL_FORMAT.replace('%REQ(:AUTHORITY)%', authority).replace('%LOCAL_REPLY_BODY%', HTTP_REFUSAL_BODY);
}

/** The names every source may reach by name: those of the source-less policies that dial by name. */
function sharedNamesOf(policies: readonly Policy[]): Set<string> {
  const names = new Set<string>();
  for (const policy of policies) if (policy.sources === undefined && policy.upstream !== 'original-destination') for (const name of policy.allow.sni) names.add(name);
  return names;
}

const MAX_CACHED = 20_000;
const cachedHttpChains = new BoundedMemo<FilterChainJson>(MAX_CACHED);
const cachedRouteConfigs = new BoundedMemo<RouteConfigurationJson>(MAX_CACHED);

/** Built once per key and never changed after: the encoder may keep their bytes. */
const cached = <T extends object>(memo: BoundedMemo<T>, key: string, build: () => T): T => memo.get(key, () => markImmutable(build()));

const selectingOf = (bySource: ReadonlyMap<string, readonly Policy[]>, label: string): readonly Policy[] =>
  bySource.get(label === ANY_SOURCE_LABEL ? ANY_SOURCE : label) ?? [];

/**
 * The HTTP chains of the sources given. The memo key is what a chain holds: the source, the
 * options and the names of the audit and log: all policies selecting it, so a chain is the
 * same object (and bytes) across any edit of allowed names.
 */
export function httpChains(
  sourceLabels: readonly string[],
  policies: readonly Policy[],
  options: HttpChainOptions,
  /** policiesBySource(policies), when the caller has it already (the hardened matcher does). */
  bySourceGiven?: ReadonlyMap<string, readonly Policy[]>,
): FilterChainJson[] {
  if (sourceLabels.length === 0) return [];
  const bySource = bySourceGiven ?? policiesBySource(policies);
  const common = `${options.maxConnectionsPerSource}|${JSON.stringify(options.dnsCache)}|${options.listener}|${JSON.stringify(options.accessLog)}`;
  return sourceLabels.map((label) => {
    const selecting = selectingOf(bySource, label);
    // The same list object as last time (policiesBySource keeps the lists of unchanged
    // sources) and the same options: the same chain, without building its memo key.
    const known = httpChainsByList.get(selecting);
    if (known && known.label === label && known.key === common) return known.value;
    const audits = auditPolicies(selecting).join(',');
    const logAll = selecting.filter((p) => p.log === 'all').map((p) => p.name).sort().join(',');
    const chain = cached(cachedHttpChains, `${label}|${common}|${audits}|${logAll}`, () => httpChain(label, selecting, options));
    httpChainsByList.set(selecting, { label, key: common, value: chain });
    return chain;
  });
}

/** Memo by the identity of a source's list of policies: the label and key it was built for, and what. */
type ByList<T> = WeakMap<readonly Policy[], { label: string; key: string; value: T }>;
let httpChainsByList: ByList<FilterChainJson> = new WeakMap();
let routeConfigsByList: ByList<RouteConfigurationJson> = new WeakMap();

/**
 * The route tables of the sources' HTTP chains, served over RDS, each rebuilt only when the
 * policies selecting its source changed (the memo key holds their ids, hence their content).
 */
export function httpRouteConfigs(
  sourceLabels: readonly string[],
  policies: readonly Policy[],
  bySourceGiven?: ReadonlyMap<string, readonly Policy[]>,
): RouteConfigurationJson[] {
  if (sourceLabels.length === 0) return [];
  const bySource = bySourceGiven ?? policiesBySource(policies);
  const sharedNames = sharedNamesOf(policies);
  const sharedKey = [...sharedNames].sort().join(',');
  return sourceLabels.map((label) => {
    const selecting = selectingOf(bySource, label);
    // The shared names are those of policies in every source's list, so an unchanged list
    // means unchanged shared names too; the key is checked all the same.
    const known = routeConfigsByList.get(selecting);
    if (known && known.label === label && known.key === sharedKey) return known.value;
    const config = cached(cachedRouteConfigs, `${label}|${sharedKey}|${policiesKey(selecting)}`, () =>
      httpRouteConfig(label, serverNameLists(selecting), auditPolicies(selecting).length > 0, sharedNames),
    );
    routeConfigsByList.set(selecting, { label, key: sharedKey, value: config });
    return config;
  });
}

/** Forgets the HTTP chains and route tables built so far (benchmarks measure cold compiles with it). */
export function resetHttpChainCache(): void {
  cachedHttpChains.clear();
  cachedRouteConfigs.clear();
  httpChainsByList = new WeakMap();
  routeConfigsByList = new WeakMap();
  parts.clear();
  virtualHosts.clear();
  lastVirtualHost = undefined;
}
