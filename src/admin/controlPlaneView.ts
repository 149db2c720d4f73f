// What the admin API may ask of the running control plane, beyond the store:
// who is connected, and what Envoy's filter-chain choice would be for a
// connection. Implemented by the snapshot cache and ADS server (src/cli/serve.ts wires it).
import type { Connection } from '../policy/model.js';
import type { NodeStatus } from '../xds/nodeStatus.js';
import type { ForwardCheckRequest } from './forwardCheckRequest.js';

export interface CheckResult {
  readonly verdict: 'allow' | 'deny';
  /** The policy that allows the connection (absent on deny). */
  readonly policy?: string;
  /** The filter chain Envoy would select (the default chain's name when none matches). */
  readonly filterChain: string;
  /** How Envoy gets there: matcher branches (hardened) or the chain's match (seed). */
  readonly path?: readonly string[];
  /** Where an allowed connection goes: dialled by name, or to the original destination. */
  readonly upstream?: { readonly kind: 'name' | 'original-destination'; readonly address: string };
}

export interface ForwardCheckResult extends CheckResult {
  readonly listener: 'forward-http' | 'forward-tls';
  /** forward-http: "VIRTUAL HOST / ROUTE", the route taken. */
  readonly route?: string;
  /** forward-http: the status Envoy answers itself with (403 refused). */
  readonly status?: number;
  /** forward-http: that answer's body. */
  readonly body?: string;
  /** The access-log entries Envoy would send (each firing logger's literal tags). */
  readonly logs?: readonly Readonly<Record<string, string>>[];
}

export interface ControlPlaneView {
  nodes(): NodeStatus[];
  /** Evaluates against the resources the node receives (or would receive, if not connected). */
  check(nodeId: string, connection: Connection): CheckResult;
  /** The same for a request to the forward proxy's listeners; absent when the control plane cannot answer it. */
  checkForward?(request: ForwardCheckRequest): ForwardCheckResult;
  /** True once the served state reflects the store. */
  ready(): boolean;
  /** Why not ready, when known (e.g. "etcd at ... is unavailable"). */
  notReadyReason?(): string | undefined;
}
