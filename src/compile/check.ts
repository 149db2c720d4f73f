// POST /v1/check: what Envoy would do with one connection under the compiled
// listener, and which policy intends it.
import { selectFilterChain } from '../envoy/filterChainMatch.js';
import type { ListenerJson } from '../envoy/resources.js';
import type { Connection, Policy } from '../policy/model.js';
import { intendedVerdict } from '../policy/verdict.js';
import type { CompiledEgress } from './compileEgress.js';
import { EGRESS_LISTENER_NAME, ORIGINAL_DST_CLUSTER } from './names.js';
import { tcpProxyCluster } from './tcpProxy.js';

export interface CheckResult {
  /** From Envoy's choice: allow iff the chosen chain's tcp_proxy targets original_dst_cluster. */
  readonly verdict: 'allow' | 'deny';
  /** The first policy (by name) that allows the connection, when it is allowed. */
  readonly policy?: string;
  /** The chosen chain's name (the default chain's when nothing else matched); "" when there is none. */
  readonly filterChain: string;
}

function egressListenerOf(compiled: CompiledEgress): ListenerJson | undefined {
  return compiled.listeners.find((l) => l.name === EGRESS_LISTENER_NAME) ?? compiled.listeners[0];
}

export function checkConnection(compiled: CompiledEgress, policies: readonly Policy[], connection: Connection): CheckResult {
  const listener = egressListenerOf(compiled);
  const chain = listener && selectFilterChain(listener, connection);
  const verdict = chain && tcpProxyCluster(chain) === ORIGINAL_DST_CLUSTER ? 'allow' : 'deny';
  const intended = intendedVerdict(policies, connection);
  return {
    verdict,
    ...(verdict === 'allow' && intended.policy !== undefined && { policy: intended.policy }),
    filterChain: chain?.name ?? '',
  };
}
