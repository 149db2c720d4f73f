// Audit mode ("mode": "audit"): for the sources an audit policy selects, a connection no
// policy allows is forwarded anyway and logged as would-deny, so an allowlist can be tried
// before it is enforced. Loops stay refused (the loop branch is matched before any source).
//
// The matcher sends what a source's policies refuse to the source's refusal chain:
// "reject" when no audit policy selects the source, else "would_deny|SOURCE", which
// forwards to the original destination through original_dst_audit_cluster. That cluster
// carries the upstream mark, so even in audit mode the host refuses special addresses
// (metadata, loopback, private ranges): audit lets a guest reach what a policy could
// allow by name, never what no policy could. Switching a policy's mode changes only the
// matcher and the audited sources' chains, like any other edit.
import { markImmutable } from '../envoy/fastEncode.js';
import type { ClusterJson, FilterChainJson } from '../envoy/resources.js';
import type { Policy } from '../policy/model.js';
import { originalDstCluster } from './clusters.js';
import { connectionLimitFilters, withRaisedCircuitBreakers, withUpstreamMark } from './guards.js';
import { HardenedFilterName, REJECT_FILTER_CHAIN } from './names.js';
import { tcpProxyFilter } from './tcpProxy.js';

export const AUDIT_CHAIN_PREFIX = 'would_deny';
export const AUDIT_CLUSTER = 'original_dst_audit_cluster';
export const AUDIT_STAT_PREFIX = 'would_deny';

export const auditChainName = (sourceLabel: string): string => `${AUDIT_CHAIN_PREFIX}|${sourceLabel}`;

/** The audit policies among those selecting a source, by name. */
export const auditPolicies = (policies: readonly Policy[]): string[] =>
  policies.filter((p) => p.mode === 'audit').map((p) => p.name).sort();

/** Where the matcher sends what the source's policies refuse. */
export function refusalChainName(sourceLabel: string, policies: readonly Policy[]): string {
  return policies.some((p) => p.mode === 'audit') ? auditChainName(sourceLabel) : REJECT_FILTER_CHAIN;
}

const chains = new Map<string, FilterChainJson>();

/** Would-deny, from one source: capped like its other chains (none with cap 0), then to the address the guest dialled. Built once per (source, cap). */
export function auditChain(sourceLabel: string, maxConnectionsPerSource: number): FilterChainJson {
  const key = `${sourceLabel}|${maxConnectionsPerSource}`;
  let chain = chains.get(key);
  if (!chain) {
    if (chains.size >= 50_000) chains.clear();
    chain = markImmutable({
      name: auditChainName(sourceLabel),
      filters: [...connectionLimitFilters(sourceLabel, maxConnectionsPerSource), tcpProxyFilter(AUDIT_CLUSTER, AUDIT_STAT_PREFIX, HardenedFilterName.tcpProxy)],
    });
    chains.set(key, chain);
  }
  return chain;
}

export function auditCluster(upstreamMark: number, connectTimeout?: string): ClusterJson {
  return withUpstreamMark(withRaisedCircuitBreakers({ ...originalDstCluster(connectTimeout), name: AUDIT_CLUSTER }), upstreamMark);
}

/** The clusters plus the audit cluster when some chain forwards to it, sorted by name. */
export function withAuditCluster(clusters: ClusterJson[], chains: readonly FilterChainJson[], upstreamMark: number, connectTimeout?: string): ClusterJson[] {
  if (!chains.some((c) => c.name?.startsWith(`${AUDIT_CHAIN_PREFIX}|`))) return clusters;
  return [...clusters, auditCluster(upstreamMark, connectTimeout)].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
