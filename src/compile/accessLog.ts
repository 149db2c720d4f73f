// Access logs: Envoy's own gRPC access loggers on the egress chains, streaming to the
// control plane's Access Log Service (the ADS cluster of the bootstrap, same address and
// TLS). What the entries carry is the contract in src/denials/record.ts and
// accessLogContract.ts: log_name "egress-xds" and LITERAL custom tags egress.verdict /
// egress.reason / egress.listener / egress.chain / egress.policy. The server name comes from
// the entry itself (tls_properties.tls_sni_hostname, which Envoy fills from the requested
// server name also when it does not terminate TLS, Envoy >= 1.24, envoyproxy/envoy#22523).
//
// Tags are literal, so they are fixed per chain; everything that varies per connection
// (source, original destination, SNI, upstream) comes from the entry itself. The store
// revision is never a tag: it would change every chain on every commit, and Envoy drains a
// chain whose proto changes (the server stamps the revision in force when the record arrives).
//
// Bytes: a logger is repeated on every chain (thousands per listener, issue 7), so it carries
// only what the server cannot derive. On the transparent listener under its default name the
// egress.listener tag is left out, and egress.verdict when it is "denied" (the reason implies
// it); on a forwarding chain one logger with a short condition replaces the per-reason ones,
// and the server classifies the entry (accessLogContract.ts classifyForwardEntry). The
// extension names of the logger and of its CEL filter are left out too: Envoy looks
// extensions up by the type URL (Envoy >= 1.22, "type URL is used to lookup extensions
// regardless of the name field"), and neither field has a validation rule.
//
// Which entries a chain emits:
//   reject, reject_loop         every connection: denied, no-policy / loop
//   would_deny|SOURCE           every connection: would-deny, no-policy, the audit policies
//   name|S, original_dst|S      without a "log": "all" policy on the source: every connection
//                               that got no upstream host or has a response flag (CEL
//                               FORWARD_REFUSED_CEL, envoy.access_loggers.extension_filters.cel,
//                               Envoy >= 1.26), untagged but for the chain; the server keeps
//                               those its classification calls per-source-limit or
//                               forbidden-address. With such a policy: every connection,
//                               tagged allowed with the policies, classified the same way first.
//                               Without connection_limit (serve --max-connections-per-source 0)
//                               the logger also carries egress.cap "host": nothing there is
//                               Envoy's per-source cap (the host agent's kernel cap refuses
//                               at SYN, before Envoy sees the connection).
import { markImmutable } from '../envoy/fastEncode.js';
import type { FilterChainJson } from '../envoy/resources.js';
import { TypeUrl } from '../envoy/typeUrls.js';
import type { Policy } from '../policy/model.js';
import { AUDIT_CHAIN_PREFIX, auditPolicies } from './audit.js';
import { ANY_SOURCE, policiesBySource } from './sourcePlans.js';
import {
  ANY_SOURCE_LABEL,
  LOOP_REJECT_FILTER_CHAIN,
  NAME_CHAIN_PREFIX,
  ORIGINAL_DST_CHAIN_PREFIX,
  REJECT_FILTER_CHAIN,
} from './names.js';
import { ALS_LOG_NAME, CAP_BY_HOST, DEFAULT_LOGGED_LISTENER, SNI_FILTER_STATE_KEY, TAG } from './accessLogContract.js';
import { hasConnectionLimit } from './guards.js';

export { ALS_LOG_NAME, SNI_FILTER_STATE_KEY, TAG };

/** The bootstrap's static cluster that reaches the control plane (src/bootstrap XDS_CLUSTER); the ALS is served beside ADS. */
export const DEFAULT_ALS_CLUSTER = 'xds_cluster';
/** The extensions' names, for readers: the generated loggers leave them out (Envoy goes by the type URL). */
export const TCP_GRPC_ACCESS_LOGGER = 'envoy.access_loggers.tcp_grpc';
export const HTTP_GRPC_ACCESS_LOGGER = 'envoy.access_loggers.http_grpc';
export const CEL_ACCESS_LOG_FILTER = 'envoy.access_loggers.extension_filters.cel';


export type LogVerdict = 'denied' | 'would-deny' | 'allowed';
/** The reasons the listener side emits (a subset of record.ts DENIAL_REASONS). */
export type LogReason = 'no-policy' | 'forbidden-address' | 'per-source-limit' | 'loop' | 'http-host';

export interface AccessLogOptions {
  /** The cluster the ALS is reached through; default "xds_cluster". */
  readonly alsCluster?: string;
}

/** What one access logger says about the connections it logs. */
export interface LogTags {
  /** Absent: the server classifies the entry (a forwarding chain's refusals, TCP only). */
  readonly verdict?: LogVerdict;
  readonly reason?: LogReason;
  readonly listener: string;
  readonly chain?: string;
  /** Policy names, joined with "," in the tag. */
  readonly policies?: readonly string[];
  /** A forwarding chain without connection_limit (cap 0): the per-source cap is the host's (CAP_BY_HOST). */
  readonly uncapped?: boolean;
}

export type AccessLogFilterJson = Record<string, unknown>;

export interface AccessLogJson {
  name?: string;
  filter?: AccessLogFilterJson;
  typedConfig: { '@type': string; [field: string]: unknown };
}

const literal = (tag: string, value: string) => ({ tag, literal: { value } });

/** The tags a logger carries: what the server cannot derive (accessLogContract.ts). */
export function customTags(tags: LogTags): Record<string, unknown>[] {
  const policy = tags.policies && tags.policies.length > 0 ? tags.policies.join(',') : undefined;
  const derived = tags.listener === DEFAULT_LOGGED_LISTENER;
  const verdictDerived = derived && tags.verdict === 'denied' && tags.reason !== undefined;
  return [
    ...(tags.verdict && !verdictDerived ? [literal(TAG.verdict, tags.verdict)] : []),
    ...(tags.reason ? [literal(TAG.reason, tags.reason)] : []),
    ...(derived ? [] : [literal(TAG.listener, tags.listener)]),
    ...(tags.chain ? [literal(TAG.chain, tags.chain)] : []),
    ...(policy ? [literal(TAG.policy, policy)] : []),
    ...(tags.uncapped ? [literal(TAG.cap, CAP_BY_HOST)] : []),
  ];
}

// Parts every logger repeats, built once and marked immutable: the encoder keeps their
// bytes, so a cold compile encodes them once instead of once per chain.
const grpcServices = new Map<string, Record<string, unknown>>();
function grpcServiceOf(cluster: string): Record<string, unknown> {
  let service = grpcServices.get(cluster);
  if (!service) {
    if (grpcServices.size > 64) grpcServices.clear();
    grpcServices.set(cluster, (service = markImmutable({ envoyGrpc: { clusterName: cluster } })));
  }
  return service;
}

function commonConfig(tags: LogTags, options: AccessLogOptions): Record<string, unknown> {
  const custom = customTags(tags);
  return {
    logName: ALS_LOG_NAME,
    grpcService: grpcServiceOf(options.alsCluster ?? DEFAULT_ALS_CLUSTER),
    transportApiVersion: 'V3',
    ...(custom.length > 0 && { customTags: custom }),
  };
}

/** envoy.access_loggers.tcp_grpc for a tcp_proxy (or a listener). */
export function tcpGrpcAccessLog(tags: LogTags, filter: AccessLogFilterJson | undefined, options: AccessLogOptions = {}): AccessLogJson {
  return {
    ...(filter && { filter }),
    typedConfig: { '@type': TypeUrl.TcpGrpcAccessLogConfig, commonConfig: commonConfig(tags, options) },
  };
}

/** envoy.access_loggers.http_grpc for an HTTP connection manager. */
export function httpGrpcAccessLog(tags: LogTags, filter: AccessLogFilterJson | undefined, options: AccessLogOptions = {}): AccessLogJson {
  return {
    ...(filter && { filter }),
    typedConfig: { '@type': TypeUrl.HttpGrpcAccessLogConfig, commonConfig: commonConfig(tags, options) },
  };
}

export const celFilter = (expression: string): AccessLogFilterJson => ({
  extensionFilter: { typedConfig: { '@type': TypeUrl.CelExpressionFilter, expression } },
});

/**
 * A forwarding chain's refusals, and the failures they hide among: tcp_proxy chose no upstream
 * host (upstream.address is absent: the per-source cap closed it, or DNS failed) or a
 * response flag is set (UF: an upstream connect failure, to a special address among others).
 * The server sorts them (classifyForwardEntry); connections that went through are not sent.
 */
export const FORWARD_REFUSED_CEL = '!has(upstream.address)||response.flags!=0';

/** What a chain's tcp_proxy logs. */
export type ChainLogPlan =
  | { readonly kind: 'refusal'; readonly reason: 'no-policy' | 'loop' }
  | { readonly kind: 'would-deny'; readonly auditPolicies: readonly string[] }
  // uncapped: the chain has no connection_limit (serve --max-connections-per-source 0), so
  // an entry without an upstream host is not Envoy's per-source cap (classifyForwardEntry).
  | { readonly kind: 'forward'; readonly byName: boolean; readonly logAllPolicies: readonly string[]; readonly uncapped?: true };

let refusedFilter: AccessLogFilterJson | undefined;
const forwardRefusedFilter = () => (refusedFilter ??= markImmutable(celFilter(FORWARD_REFUSED_CEL)));

export function chainAccessLogs(chainName: string, listener: string, plan: ChainLogPlan, options: AccessLogOptions = {}): AccessLogJson[] {
  const base = { listener, chain: chainName };
  switch (plan.kind) {
    case 'refusal':
      return [tcpGrpcAccessLog({ ...base, verdict: 'denied', reason: plan.reason }, undefined, options)];
    case 'would-deny':
      return [tcpGrpcAccessLog({ ...base, verdict: 'would-deny', reason: 'no-policy', policies: plan.auditPolicies }, undefined, options)];
    case 'forward': {
      // One logger either way: the server tells the refusals from the rest (and, with
      // "log": "all", logs the rest as allowed).
      const forward = plan.uncapped ? { ...base, uncapped: true } : base;
      return plan.logAllPolicies.length > 0
        ? [tcpGrpcAccessLog({ ...forward, verdict: 'allowed', policies: plan.logAllPolicies }, undefined, options)]
        : [tcpGrpcAccessLog(forward, forwardRefusedFilter(), options)];
    }
  }
}

/** The chain with its access loggers on the tcp_proxy. */
export function withChainAccessLogs(chain: FilterChainJson, logs: readonly AccessLogJson[]): FilterChainJson {
  if (logs.length === 0) return chain;
  const filters = chain.filters.map((filter) =>
    filter.typedConfig['@type'] === TypeUrl.TcpProxy ? { ...filter, typedConfig: { ...filter.typedConfig, accessLog: [...logs] } } : filter,
  );
  return { ...chain, filters };
}

/**
 * What each chain of the hardened listener logs, from its name, the policies selecting its
 * source and whether it carries Envoy's per-source cap (connection_limit).
 */
export function chainLogPlan(chainName: string, policiesOfSource: (label: string) => readonly Policy[], capped = true): ChainLogPlan | undefined {
  if (chainName === REJECT_FILTER_CHAIN) return { kind: 'refusal', reason: 'no-policy' };
  if (chainName === LOOP_REJECT_FILTER_CHAIN) return { kind: 'refusal', reason: 'loop' };
  const bar = chainName.indexOf('|');
  if (bar < 0) return undefined;
  const prefix = chainName.slice(0, bar);
  const policies = policiesOfSource(chainName.slice(bar + 1));
  if (prefix === AUDIT_CHAIN_PREFIX) return { kind: 'would-deny', auditPolicies: auditPolicies(policies) };
  if (prefix === NAME_CHAIN_PREFIX || prefix === ORIGINAL_DST_CHAIN_PREFIX) {
    const logAllPolicies = policies.filter((p) => p.log === 'all').map((p) => p.name).sort();
    return { kind: 'forward', byName: prefix === NAME_CHAIN_PREFIX, logAllPolicies, ...(!capped && { uncapped: true as const }) };
  }
  return undefined;
}

// Logged chains, memoised per input chain object (the hardened listener caches its chains)
// and what the loggers say, and marked immutable so the fast encoder keeps their bytes.
let logged = new WeakMap<FilterChainJson, { readonly key: string; readonly result: FilterChainJson } | Map<string, FilterChainJson>>();

/** The hardened listener's chains with their access loggers. */
export function withEgressAccessLogs(
  chains: readonly FilterChainJson[],
  policies: readonly Policy[],
  listener: string,
  options: AccessLogOptions = {},
  /** policiesBySource(policies), when the caller has it already (the hardened matcher does). */
  bySourceGiven?: ReadonlyMap<string, readonly Policy[]>,
): FilterChainJson[] {
  let bySource: ReadonlyMap<string, readonly Policy[]> | undefined = bySourceGiven;
  const policiesOfSource = (label: string): readonly Policy[] => {
    bySource ??= policiesBySource(policies);
    return bySource.get(label === ANY_SOURCE_LABEL ? ANY_SOURCE : label) ?? [];
  };
  // Everything besides the chain and the source's policies that the loggers depend on.
  const context = `${listener}|${JSON.stringify(options)}`;
  return chains.map((chain) => {
    // The same chain object and the same policy list object (policiesBySource keeps lists of
    // unchanged sources) as last time: the same logged chain, without building its plan.
    const bar = chain.name === undefined ? -1 : chain.name.indexOf('|');
    const selecting = bar < 0 ? undefined : policiesOfSource(chain.name!.slice(bar + 1));
    const known = selecting === undefined ? undefined : loggedByList.get(chain);
    if (known && known.policies === selecting && known.context === context) return known.result;
    const result = loggedChain(chain, listener, options, policiesOfSource);
    if (selecting !== undefined) loggedByList.set(chain, { policies: selecting, context, result });
    return result;
  });
}

let loggedByList = new WeakMap<FilterChainJson, { policies: readonly Policy[]; context: string; result: FilterChainJson }>();

/** Forgets the logged chains (benchmarks measure cold compiles with it). */
export function resetAccessLogCache(): void {
  loggedByList = new WeakMap();
  logged = new WeakMap();
}

function loggedChain(chain: FilterChainJson, listener: string, options: AccessLogOptions, policiesOfSource: (label: string) => readonly Policy[]): FilterChainJson {
  const plan = chain.name === undefined ? undefined : chainLogPlan(chain.name, policiesOfSource, hasConnectionLimit(chain.filters));
  if (!plan) return chain;
  const key = `${listener}|${options.alsCluster ?? ''}|${JSON.stringify(plan)}`;
  // Almost every chain is only ever logged one way: one slot, a Map once there are more.
  const known = logged.get(chain);
  const slot = known instanceof Map ? undefined : known;
  if (slot !== undefined && slot.key === key) return slot.result;
  let byPlan = known instanceof Map ? known : undefined;
  let result = byPlan?.get(key);
  if (!result) {
    result = markImmutable(withChainAccessLogs(chain, chainAccessLogs(chain.name!, listener, plan, options)));
    if (known === undefined) logged.set(chain, { key, result });
    else {
      if (!byPlan) logged.set(chain, (byPlan = new Map(slot ? [[slot.key, slot.result]] : [])));
      if (byPlan.size > 64) byPlan.clear();
      byPlan.set(key, result);
    }
  }
  return result;
}
