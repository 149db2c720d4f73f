// The test oracle for which per-source chain a client lands on: the most specific source
// range any policy names that holds the client's address ("*" when none does). Written from
// the policies alone, apart from the compiler, so the property tests can catch it choosing
// another chain (whose connection cap the client would then count against).
import { cidrKeysOf, cidrOfKey } from '../../src/compile/cidrKeys.js';
import { cidrContainsIp, parseIp } from '../../src/net/ip.js';
import type { Policy } from '../../src/policy/model.js';

export function sourceLabel(policies: readonly Policy[], sourceIp: string): string {
  const ip = parseIp(sourceIp)!;
  let best: { label: string; length: number } | undefined;
  for (const key of new Set(policies.flatMap((p) => (p.sources ? cidrKeysOf(p.sources) : [])))) {
    const cidr = cidrOfKey(key);
    if (cidrContainsIp(cidr, ip) && (!best || cidr.prefixLength > best.length)) best = { label: key, length: cidr.prefixLength };
  }
  return best?.label ?? '*';
}

/**
 * The oracle for the forwarding chain's label (chains name|LABEL, original_dst|LABEL): with
 * Envoy's per-source cap (max > 0) the source's own; with none (max 0) "*", shared, unless a
 * policy naming sources and logging every connection ("log": "all", its loggers carry the
 * policy names) selects the client: every range holding the client's address holds the
 * most specific one, so "selects the source" is "names a range holding the address".
 */
export function forwardChainLabel(policies: readonly Policy[], sourceIp: string, maxConnectionsPerSource: number): string {
  const own = sourceLabel(policies, sourceIp);
  if (maxConnectionsPerSource > 0) return own;
  const ip = parseIp(sourceIp)!;
  const logged = policies.some((p) => p.log === 'all' && p.sources !== undefined && cidrKeysOf(p.sources).some((key) => cidrContainsIp(cidrOfKey(key), ip)));
  return logged ? own : '*';
}
