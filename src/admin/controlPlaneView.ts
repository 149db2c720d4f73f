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
  /** forward-http, or a plain-HTTP request (a Host given): "VIRTUAL HOST / ROUTE", the route taken. */
  readonly route?: string;
  /** The same: the status Envoy answers itself with (403 refused). */
  readonly status?: number;
  /** The same: that answer's body. */
  readonly body?: string;
}

export interface ForwardCheckResult extends CheckResult {
  readonly listener: 'forward-http' | 'forward-tls';
  /** The access-log entries Envoy would send (each firing logger's literal tags). */
  readonly logs?: readonly Readonly<Record<string, string>>[];
}

export interface ControlPlaneView {
  nodes(): NodeStatus[];
  /** Evaluates against the resources the node receives (or would receive, if not connected). */
  /** `httpHost`: a plain-HTTP request with that Host header on the connection. */
  check(nodeId: string, connection: Connection & { readonly httpHost?: string }): CheckResult;
  /** The same for a request to the forward proxy's listeners; absent when the control plane cannot answer it. */
  checkForward?(request: ForwardCheckRequest): ForwardCheckResult;
  /** True once the served state reflects the store. */
  ready(): boolean;
  /** Why not ready, when known (e.g. "etcd at ... is unavailable"). */
  notReadyReason?(): string | undefined;
}
