// POST /v1/check for the forward proxy's listeners: what Envoy would do with one request
// (forward-http: the chain the client's address selects, then the virtual host and route,
// routeMatch.ts) or one TLS connection (forward-tls: the chain the matcher picks), and
// which policy intends it (forwardRoute.ts).
import { selectByMatcher } from '../envoy/filterChainMatcher.js';
import type { FilterChainJson, ListenerJson } from '../envoy/resources.js';
import type { RouteConfigurationJson, UpgradeConfigJson } from '../envoy/routeConfig.js';
import { selectRoute } from '../envoy/routeMatch.js';
import { evaluateRouteNameCel } from '../envoy/celRouteName.js';
import type { Policy } from '../policy/model.js';
import { sniPatternMatches } from '../policy/verdict.js';
import { cidrContainsIp, mustParseCidr, parseIp } from '../net/ip.js';
import type { CheckResult } from './check.js';
import type { CompiledEgress } from './compileEgress.js';
import {
  FORWARD_HTTP_LISTENER_NAME,
  FORWARD_INSPECT_PORT,
  FORWARD_INSPECT_PREFIX,
  FORWARD_TLS_AUDIT_CHAIN_PREFIX,
  FORWARD_TLS_LISTENER_NAME,
  FORWARD_TLS_UPSTREAM_PORT,
} from './forwardNames.js';
import { LOCAL_REPLY_FORMAT } from './forwardProxy.js';
import { intendedForwardRoute, parseAuthority, type NamePorts } from './forwardRoute.js';
import { NAME_UPSTREAM_CLUSTER } from './names.js';
import { tcpProxyCluster } from './tcpProxy.js';
import { TypeUrl } from '../envoy/typeUrls.js';

export type ForwardListenerKind = 'forward-http' | 'forward-tls';

export interface ForwardCheckResult extends CheckResult {
  readonly listener: ForwardListenerKind;
  /** forward-http: the route taken ("virtual host / route name"). */
  readonly route?: string;
  /** forward-http: the status Envoy answers with when it answers itself (403 refused, 404 no route). */
  readonly status?: number;
  /** forward-http: that answer's body, after the connection manager's local reply format. */
  readonly body?: string;
  /** The access-log entries Envoy would send (the literal tags of each logger that fires). */
  readonly logs?: readonly Readonly<Record<string, string>>[];
}

interface LoggerJson {
  filter?: { extensionFilter?: { typedConfig?: { expression?: string } } };
  typedConfig: { commonConfig?: { customTags?: { tag: string; literal?: { value: string } }[] } };
}

const tagsOf = (logger: LoggerJson): Record<string, string> =>
  Object.fromEntries((logger.typedConfig.commonConfig?.customTags ?? []).map((t) => [t.tag, t.literal?.value ?? '']));

/** The HCM's loggers that fire for a request that took `routeName` (their filters: CEL on xds.route_name, or none). */
function httpLogs(accessLog: readonly LoggerJson[], routeName: string | undefined): Record<string, string>[] {
  return accessLog
    .filter((logger) => {
      const expression = logger.filter?.extensionFilter?.typedConfig?.expression;
      if (logger.filter && expression === undefined) throw new Error('forward_http access-log filter outside the model');
      return expression === undefined || evaluateRouteNameCel(expression, routeName);
    })
    .map(tagsOf);
}

/**
 * A TLS chain's loggers for a connection under the source's cap to a public address: the
 * unconditional ones (reject and would-deny chains log every connection) and "allowed".
 */
function tlsLogs(chain: FilterChainJson | undefined): Record<string, string>[] {
  const proxy = chain?.filters.find((f) => (f.typedConfig as { accessLog?: unknown }).accessLog !== undefined);
  return ((proxy?.typedConfig as { accessLog?: LoggerJson[] } | undefined)?.accessLog ?? [])
    .map((l) => ({ filtered: l.filter !== undefined, tags: tagsOf(l) }))
    .filter(({ filtered, tags }) => !filtered || tags['egress.verdict'] === 'allowed')
    .map(({ tags }) => tags);
}

/** The chain a client's connection takes: filter_chain_matcher when there is one, else the default chain. */
export function forwardChain(listener: ListenerJson, sourceIp: string, serverName?: string): { chain: FilterChainJson | undefined; path: string[] } {
  const connection = {
    sourceIp,
    // An internal listener has no address: nothing it matches on reads one.
    destinationIp: listener.address?.socketAddress.address ?? '0.0.0.0',
    destinationPort: listener.address?.socketAddress.portValue ?? 0,
    ...(serverName !== undefined && { serverName }),
  };
  if (listener.filterChainMatcher) {
    const { chain, path } = selectByMatcher(listener, connection);
    return { chain, path: [...path] };
  }
  const chain = listener.defaultFilterChain;
  return { chain, path: [`no filter_chain_matcher → default filter chain ${chain?.name ?? ': none, closed'}`] };
}

/** The connection manager of a forward_http chain. */
export function connectionManagerOf(chain: FilterChainJson): { routeConfig: RouteConfigurationJson; upgradeConfigs: UpgradeConfigJson[] } | undefined {
  const filter = chain.filters.find((f) => f.typedConfig['@type'] === TypeUrl.HttpConnectionManager);
  if (!filter) return undefined;
  const config = filter.typedConfig as unknown as { routeConfig: RouteConfigurationJson; upgradeConfigs?: UpgradeConfigJson[] };
  return { routeConfig: config.routeConfig, upgradeConfigs: config.upgradeConfigs ?? [] };
}

function accessLogOf(chain: FilterChainJson): LoggerJson[] {
  const filter = chain.filters.find((f) => f.typedConfig['@type'] === TypeUrl.HttpConnectionManager);
  return ((filter?.typedConfig as { accessLog?: LoggerJson[] } | undefined)?.accessLog ?? []);
}

/** The connection manager's local reply format applied to a direct response body. */
export function localReplyBody(authority: string, sourceIp: string, body: string): string {
  return LOCAL_REPLY_FORMAT.replace('%REQ(:AUTHORITY)%', authority).replace('%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%', sourceIp).replace('%LOCAL_REPLY_BODY%', body);
}

export interface ForwardHttpRequest {
  readonly sourceIp: string;
  readonly method: string;
  readonly authority: string;
  /**
   * The SNI of the TLS the client then speaks inside an allowed CONNECT, checked when serve
   * runs with --forward-proxy-inspect-connect (forwardInspect.ts); default: the authority's
   * host (an honest client). "" stands for a ClientHello without SNI (or no TLS).
   */
  readonly innerSni?: string;
}

export function checkForwardHttp(
  compiled: CompiledEgress,
  policies: readonly Policy[],
  request: ForwardHttpRequest,
  namePorts?: NamePorts,
  loopPorts?: readonly number[],
): ForwardCheckResult {
  const listener = compiled.listeners.find((l) => l.name === FORWARD_HTTP_LISTENER_NAME);
  const base = { listener: 'forward-http' as const };
  if (!listener) return { ...base, verdict: 'deny', filterChain: '', path: ['no forward_http listener: serve runs without --forward-proxy'] };
  const { chain, path } = forwardChain(listener, request.sourceIp);
  const hcm = chain && connectionManagerOf(chain);
  if (!chain || !hcm) return { ...base, verdict: 'deny', filterChain: chain?.name ?? '', path: [...path, 'closed'] };
  // Absolute-form requests carry a path; CONNECT none.
  const connect = request.method === 'CONNECT';
  const selection = selectRoute(hcm.routeConfig, { method: request.method, authority: request.authority, ...(connect ? {} : { path: '/' }) }, hcm.upgradeConfigs);
  const routeName = selection.route ? `${selection.virtualHost} / ${selection.route.name ?? `route ${selection.routeIndex}`}` : undefined;
  const steps = [...path, `virtual host ${selection.virtualHost ?? '(none)'} (${selection.domainMatch})`, routeName ? `route ${routeName}` : 'no route'];
  const outcome = selection.outcome;
  const logs = httpLogs(accessLogOf(chain), selection.route?.name);
  if (outcome.kind === 'cluster' && outcome.cluster.startsWith(`${FORWARD_INSPECT_PREFIX}|`)) {
    // The tunnel's bytes go to the internal listener of that name: its chain by the inner SNI.
    const inner = compiled.listeners.find((l) => l.name === outcome.cluster && l.internalListener !== undefined);
    const innerSni = request.innerSni ?? parseAuthority(request.authority).host;
    const { chain: innerChain, path: innerPath } = inner
      ? forwardChain(inner, request.sourceIp, innerSni === '' ? undefined : innerSni)
      : { chain: undefined, path: [`no internal listener ${outcome.cluster}: closed`] };
    const innerSteps = [...steps, `CONNECT terminated into internal listener ${outcome.cluster}, inner SNI ${innerSni === '' ? '(none)' : innerSni}`, ...innerPath];
    const forwarded = innerChain !== undefined && tcpProxyCluster(innerChain) === NAME_UPSTREAM_CLUSTER && innerSni !== '';
    const intended = intendedForwardRoute(policies, request, namePorts, loopPorts);
    const allLogs = [...logs, ...tlsLogs(innerChain)];
    if (!forwarded) return { ...base, verdict: 'deny', filterChain: chain.name ?? '', path: innerSteps, ...(routeName && { route: routeName }), logs: allLogs };
    return {
      ...base,
      verdict: 'allow',
      ...(intended.verdict === 'allow' && { policy: intended.policy }),
      filterChain: chain.name ?? '',
      path: innerSteps,
      upstream: { kind: 'name', address: `${innerSni.toLowerCase()}:${parseAuthority(request.authority).port ?? FORWARD_INSPECT_PORT}` },
      ...(routeName && { route: routeName }),
      logs: allLogs,
    };
  }
  if (outcome.kind === 'cluster' && outcome.cluster === NAME_UPSTREAM_CLUSTER) {
    const intended = intendedForwardRoute(policies, request, namePorts, loopPorts);
    const parsed = parseAuthority(request.authority);
    const port = parsed.port ?? 80;
    const host = parsed.kind === 'ipv6' ? `[${parsed.host}]` : parsed.host;
    return {
      ...base,
      verdict: 'allow',
      ...(intended.verdict === 'allow' && { policy: intended.policy }),
      filterChain: chain.name ?? '',
      path: steps,
      upstream: { kind: 'name', address: `${host}:${port}` },
      ...(routeName && { route: routeName }),
      logs,
    };
  }
  const status = outcome.kind === 'cluster' ? undefined : outcome.status;
  const body = outcome.kind === 'direct-response' ? localReplyBody(request.authority, request.sourceIp, outcome.body) : undefined;
  return {
    ...base,
    verdict: 'deny',
    filterChain: chain.name ?? '',
    path: steps,
    ...(routeName && { route: routeName }),
    ...(status !== undefined && { status }),
    ...(body !== undefined && { body }),
    logs,
  };
}

export function checkForwardTls(compiled: CompiledEgress, policies: readonly Policy[], request: { sourceIp: string; serverName?: string }): ForwardCheckResult {
  const listener = compiled.listeners.find((l) => l.name === FORWARD_TLS_LISTENER_NAME);
  const base = { listener: 'forward-tls' as const };
  if (!listener) return { ...base, verdict: 'deny', filterChain: '', path: ['no forward_tls listener: serve runs without --forward-proxy'] };
  const { chain, path } = forwardChain(listener, request.sourceIp, request.serverName);
  const forwarded = chain !== undefined && tcpProxyCluster(chain) === NAME_UPSTREAM_CLUSTER && request.serverName !== undefined;
  const logs = tlsLogs(chain);
  if (!forwarded) return { ...base, verdict: 'deny', filterChain: chain?.name ?? '', path, logs };
  if (chain.name?.startsWith(`${FORWARD_TLS_AUDIT_CHAIN_PREFIX}|`)) {
    // Audit: forwarded, no policy allows it (logs say would-deny).
    return { ...base, verdict: 'allow', filterChain: chain.name, path, upstream: { kind: 'name', address: `${request.serverName!.toLowerCase()}:${FORWARD_TLS_UPSTREAM_PORT}` }, logs };
  }
  const source = parseIp(request.sourceIp);
  const policy = [...policies]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .find(
      (p) =>
        (p.sources === undefined || (source !== undefined && p.sources.some((c) => cidrContainsIp(mustParseCidr(c), source)))) &&
        p.allow.sni.some((pattern) => sniPatternMatches(pattern, request.serverName!)),
    );
  return {
    ...base,
    verdict: 'allow',
    ...(policy && { policy: policy.name }),
    filterChain: chain.name ?? '',
    path,
    upstream: { kind: 'name', address: `${request.serverName!.toLowerCase()}:${FORWARD_TLS_UPSTREAM_PORT}` },
    logs,
  };
}
