// Whose chain a source's connections take: the one place that decides "per source or shared".
//
// A chain's bytes are all Envoy compares (listener_impl.cc: a chain whose proto did not
// change keeps its connections), so a chain is per source only when something in its bytes
// is the source's:
//   * with Envoy's per-source cap (--max-connections-per-source N > 0), every chain that
//     forwards: connection_limit counts per chain (guards.ts), so each source needs its own;
//   * with no Envoy-side cap (N = 0: the host agent's kernel cap refuses at SYN instead), a
//     forwarding chain holds only the options and its access loggers' tags. The loggers of
//     name|S and original_dst|S carry the "log": "all" policies selecting S, and would_deny|S
//     the audit policies selecting S (accessLog.ts chainLogPlan); "*" (any source) is
//     selected by the source-less policies alone, and every source by those too
//     (sourcePlans.ts policiesBySource). So a source that no sourced "log": "all" policy
//     selects has the same name and original_dst chains as "*", and takes them; one that no
//     sourced audit policy selects has the same refusal as "*". Those shared chains are
//     byte-identical whatever sources and policies exist, so no edit of names or addresses
//     ever changes them.
//   * http|S is always the source's: its connection manager names the source's route table (RDS).
import type { Policy } from '../policy/model.js';
import { ANY_SOURCE } from './cidrKeys.js';
import { ANY_SOURCE_LABEL } from './names.js';

/** What a source label looks like in chain names: its CIDR, or "*" for sources no policy names. */
export const sourceLabelOf = (key: string): string => (key === ANY_SOURCE ? ANY_SOURCE_LABEL : key);

/** Forwarding chains are per source only while Envoy caps each source (connection_limit counts per chain). */
export const perSourceChains = (maxConnectionsPerSource: number): boolean => maxConnectionsPerSource > 0;

/** The source labels of the chains a source's connections take. */
export interface ChainLabels {
  /** name|…, original_dst|…: what a policy allows. */
  readonly forward: string;
  /** would_deny|…: what no policy allows, when an audit policy selects the source. */
  readonly audit: string;
  /** http|…: plain HTTP to port 80 (always the source's own: its route table). */
  readonly http: string;
}

const selectedBySourced = (policies: readonly Policy[], test: (p: Policy) => boolean): boolean => policies.some((p) => p.sources !== undefined && test(p));

/** `policies`: those selecting the source `key` (policiesBySource). */
export function chainLabels(key: string, policies: readonly Policy[], perSource: boolean): ChainLabels {
  const own = sourceLabelOf(key);
  if (perSource || key === ANY_SOURCE) return { forward: own, audit: own, http: own };
  return {
    forward: selectedBySourced(policies, (p) => p.log === 'all') ? own : ANY_SOURCE_LABEL,
    audit: selectedBySourced(policies, (p) => p.mode === 'audit') ? own : ANY_SOURCE_LABEL,
    http: own,
  };
}
