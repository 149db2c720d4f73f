// POST /v1/check: what Envoy would do with one connection under the compiled
// listener (the path it takes, the chain, where the connection goes), and which
// policy intends it. With a Host (plain HTTP on port 80), also what the chain's HTTP
// connection manager does with the request: the route table it names (served over RDS),
// the virtual host and route, and Envoy's own answer when it refuses.
import { selectFilterChain } from '../envoy/filterChainMatch.js';
import { selectByMatcher } from '../envoy/filterChainMatcher.js';
import type { FilterChainJson, ListenerJson } from '../envoy/resources.js';
import type { Connection, Policy } from '../policy/model.js';
import { intendedVerdict } from '../policy/verdict.js';
import type { CompiledEgress } from './compileEgress.js';
import { EGRESS_LISTENER_NAME, EGRESS_LISTENER_PORT, NAME_UPSTREAM_CLUSTER, ORIGINAL_DST_CLUSTER } from './names.js';
import { intendedRoute } from './route.js';
import { tcpProxyCluster } from './tcpProxy.js';
import { refusalBodyFor } from './httpPath.js';
import { routeConfigOf, selectRoute, type RouteSpecifierJson } from '../envoy/routeMatch.js';
import { TypeUrl } from '../envoy/typeUrls.js';

/** A connection to check; with httpHost, a plain-HTTP request on it carrying that Host header. */
export type CheckConnection = Connection & { readonly httpHost?: string };

export interface CheckUpstream {
  /** "name": dialled by the server name, resolved by Envoy; "original-destination": to the address the guest dialled. */
  readonly kind: 'name' | 'original-destination';
  /** "github.com:443" or "140.82.112.3:443" ("[2001:db8::1]:443" for IPv6). */
  readonly address: string;
}

export interface CheckResult {
  /** From Envoy's choice: allow iff the chosen chain forwards (to original_dst_cluster or the name cluster). */
  readonly verdict: 'allow' | 'deny';
  /** The first policy (by name) that allows the connection, when it is allowed. */
  readonly policy?: string;
  /** The chosen chain's name (the default chain's when nothing else matched); "" when there is none. */
  readonly filterChain: string;
  /** How Envoy got there: the matcher's branches (hardened), or the filter chain match (seed). */
  readonly path: readonly string[];
  /** Where an allowed connection goes. */
  readonly upstream?: CheckUpstream;
  /** With a Host: the virtual host and route Envoy takes, "VIRTUAL HOST / ROUTE". */
  readonly route?: string;
  /** With a Host: the status Envoy answers itself with (403 refused, 404 no route). */
  readonly status?: number;
  /** That answer's body. */
  readonly body?: string;
}

function egressListenerOf(compiled: CompiledEgress): ListenerJson | undefined {
  return compiled.listeners.find((l) => l.name === EGRESS_LISTENER_NAME) ?? compiled.listeners[0];
}

const hostPort = (host: string, port: number): string => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

function seedPath(chain: FilterChainJson | undefined, listener: ListenerJson): string[] {
  if (!chain) return ['no filter chain matched and there is no default chain: closed'];
  if (chain === listener.defaultFilterChain) return [`no filter chain matched → default filter chain ${chain.name ?? ''}`];
  return [`filter_chain_match ${JSON.stringify(chain.filterChainMatch ?? {})} → ${chain.name ?? ''}`];
}

export function checkConnection(compiled: CompiledEgress, policies: readonly Policy[], checked: CheckConnection): CheckResult {
  const { httpHost, ...connection } = checked;
  const listener = egressListenerOf(compiled);
  if (!listener) return { verdict: 'deny', filterChain: '', path: ['no egress listener'] };
  let chain: FilterChainJson | undefined;
  let path: readonly string[];
  if (listener.filterChainMatcher) {
    // A plain-HTTP request: http_inspector gives the connection its application protocol.
    ({ chain, path } = selectByMatcher(listener, httpHost === undefined ? connection : { ...connection, applicationProtocols: ['http/1.1'] }));
    const hcm = chain?.filters.find((f) => f.typedConfig['@type'] === TypeUrl.HttpConnectionManager)?.typedConfig as RouteSpecifierJson | undefined;
    if (chain && hcm) return checkHttpRequest(compiled, policies, connection, httpHost, chain, hcm, path, listener);
  } else {
    chain = selectFilterChain(listener, connection);
    path = seedPath(chain, listener);
  }
  const cluster = chain && tcpProxyCluster(chain);
  const verdict = cluster === ORIGINAL_DST_CLUSTER || cluster === NAME_UPSTREAM_CLUSTER ? 'allow' : 'deny';
  const port = listener.address?.socketAddress.portValue ?? EGRESS_LISTENER_PORT;
  const policy = listener.filterChainMatcher
    ? (() => {
        const route = intendedRoute(policies, connection, port);
        return route.verdict === 'allow' ? route.policy : undefined;
      })()
    : intendedVerdict(policies, connection).policy;
  const upstream: CheckUpstream | undefined =
    verdict === 'deny'
      ? undefined
      : cluster === NAME_UPSTREAM_CLUSTER
        ? { kind: 'name', address: hostPort(connection.serverName ?? '', connection.destinationPort) }
        : { kind: 'original-destination', address: hostPort(connection.destinationIp, connection.destinationPort) };
  return {
    verdict,
    ...(verdict === 'allow' && policy !== undefined && { policy }),
    filterChain: chain?.name ?? '',
    path,
    ...(upstream && { upstream }),
  };
}

const hostOf = (authority: string): { name: string; port: number } => {
  const match = /^(.*?)(?::(\d+))?$/.exec(authority.toLowerCase())!;
  return { name: match[1]!, port: match[2] === undefined ? 80 : Number(match[2]) };
};

/** A request on an HTTP chain: its route table (inline, or the RouteConfiguration named over RDS), then the route. */
function checkHttpRequest(
  compiled: CompiledEgress,
  policies: readonly Policy[],
  connection: Connection,
  httpHost: string | undefined,
  chain: FilterChainJson,
  hcm: RouteSpecifierJson,
  matcherPath: readonly string[],
  listener: ListenerJson,
): CheckResult {
  const filterChain = chain.name ?? '';
  const rdsName = hcm.rds?.routeConfigName;
  const source = rdsName === undefined ? 'inline route_config' : `route table "${rdsName}" (RDS)`;
  if (httpHost === undefined) {
    return { verdict: 'deny', filterChain, path: [...matcherPath, `${source}: a plain-HTTP connection; give "host" (its Host header) to see where a request goes`] };
  }
  const config = routeConfigOf(hcm, compiled.routes);
  if (!config) return { verdict: 'deny', filterChain, path: [...matcherPath, `${source} is not served: Envoy keeps the listener warming`] };
  const selection = selectRoute(config, { method: 'GET', authority: httpHost, path: '/' });
  const route = `${selection.virtualHost ?? '(none)'} / ${selection.route?.name ?? '(none)'}`;
  const path = [...matcherPath, `${source} → virtual host ${selection.virtualHost ?? '(none)'} (${selection.domainMatch}) → route ${selection.route?.name ?? '(none)'}`];
  const { outcome } = selection;
  if (outcome.kind !== 'cluster') {
    const status = outcome.status;
    const body = outcome.kind === 'direct-response' ? refusalBodyFor(httpHost) : undefined;
    return { verdict: 'deny', filterChain, path, route, status, ...(body !== undefined && { body }) };
  }
  if (outcome.cluster !== NAME_UPSTREAM_CLUSTER && outcome.cluster !== ORIGINAL_DST_CLUSTER) {
    // The audit cluster: forwarded, logged as would-deny; the policies refuse it.
    return { verdict: 'deny', filterChain, path: [...path, `cluster ${outcome.cluster}: forwarded and logged as would-deny`], route };
  }
  const host = hostOf(httpHost);
  const port = listener.address?.socketAddress.portValue ?? EGRESS_LISTENER_PORT;
  const intended = intendedRoute(policies, { ...connection, serverName: host.name }, port);
  const upstream: CheckUpstream =
    outcome.cluster === NAME_UPSTREAM_CLUSTER
      ? { kind: 'name', address: hostPort(host.name, host.port) }
      : { kind: 'original-destination', address: hostPort(connection.destinationIp, connection.destinationPort) };
  return { verdict: 'allow', ...(intended.verdict === 'allow' && { policy: intended.policy }), filterChain, path, route, upstream };
}
