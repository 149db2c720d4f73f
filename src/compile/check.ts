// POST /v1/check: what Envoy would do with one connection under the compiled
// listener (the path it takes, the chain, where the connection goes), and which
// policy intends it.
import { selectFilterChain } from '../envoy/filterChainMatch.js';
import { selectByMatcher } from '../envoy/filterChainMatcher.js';
import type { FilterChainJson, ListenerJson } from '../envoy/resources.js';
import type { Connection, Policy } from '../policy/model.js';
import { intendedVerdict } from '../policy/verdict.js';
import type { CompiledEgress } from './compileEgress.js';
import { EGRESS_LISTENER_NAME, EGRESS_LISTENER_PORT, NAME_UPSTREAM_CLUSTER, ORIGINAL_DST_CLUSTER } from './names.js';
import { intendedRoute } from './route.js';
import { tcpProxyCluster } from './tcpProxy.js';

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

export function checkConnection(compiled: CompiledEgress, policies: readonly Policy[], connection: Connection): CheckResult {
  const listener = egressListenerOf(compiled);
  if (!listener) return { verdict: 'deny', filterChain: '', path: ['no egress listener'] };
  let chain: FilterChainJson | undefined;
  let path: readonly string[];
  if (listener.filterChainMatcher) {
    ({ chain, path } = selectByMatcher(listener, connection));
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
