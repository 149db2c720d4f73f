// Policies selecting a node → the Envoy resources of its egress allowlist. Pure:
// the same policies (in any order) give byte-identical resources, so versions are stable.
import type { ClusterJson, ListenerJson } from '../envoy/resources.js';
import type { Policy } from '../policy/model.js';
import { buildAllowlistTree } from './allowlistTree.js';
import { originalDstCluster, rejectCluster } from './clusters.js';
import { allowFilterChains } from './filterChains.js';
import { egressListener, type EgressListenerOptions } from './listener.js';

export interface CompileOptions {
  /** Default "egress_tproxy". */
  readonly listenerName?: string;
  /** Default 15001, the TPROXY --on-port. */
  readonly port?: number;
  /** Default "0.0.0.0". */
  readonly address?: string;
  /** Also listen on [::]:port. */
  readonly ipv6?: boolean;
  /** Default "10s". */
  readonly originalDstConnectTimeout?: string;
  /** Default "1s". */
  readonly rejectConnectTimeout?: string;
}

export interface CompiledEgress {
  readonly listeners: ListenerJson[];
  /** Sorted by name. */
  readonly clusters: ClusterJson[];
}

/** The node's allowlist is the union of `policies` (those that already select the node). */
export function compileEgress(policies: readonly Policy[], options: CompileOptions = {}): CompiledEgress {
  const listenerOptions: EgressListenerOptions = {
    ...(options.listenerName !== undefined && { name: options.listenerName }),
    ...(options.address !== undefined && { address: options.address }),
    ...(options.port !== undefined && { port: options.port }),
    ...(options.ipv6 !== undefined && { ipv6: options.ipv6 }),
  };
  const listener = egressListener(allowFilterChains(buildAllowlistTree(policies)), listenerOptions);
  return {
    listeners: [listener],
    clusters: [originalDstCluster(options.originalDstConnectTimeout), rejectCluster(options.rejectConnectTimeout)],
  };
}
