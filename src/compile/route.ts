// The route the policies intend for one connection under the hardened layout: the
// specification hardenedMatcher.ts must reproduce through Envoy's matching.
//   1. To the listener's own port (any address): refused ("loop"), whatever the policies say.
//   2. Allowed by address (a cidr rule of a policy selecting the source, port included):
//      forwarded to the original destination.
//   3. Allowed by server name: dialled by the name, unless every policy allowing the name
//      chose "upstream": "original-destination".
//   4. Otherwise refused ("no-policy").
// An address rule wins over a name so that a range allowed by address stays reachable
// with TLS too: dialling the name could resolve to a special address the host refuses.
import { cidrContainsIp, mustParseCidr, parseIp } from '../net/ip.js';
import type { Connection, Policy, PolicyUpstream } from '../policy/model.js';
import { sniPatternMatches } from '../policy/verdict.js';

export type RefusalReason = 'loop' | 'no-policy';

export type IntendedRoute =
  | { readonly verdict: 'allow'; readonly policy: string; readonly upstream: PolicyUpstream; readonly by: 'cidr' | 'sni' }
  | { readonly verdict: 'deny'; readonly reason: RefusalReason };

const byName = (a: Policy, b: Policy): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

function selects(policy: Policy, sourceIp: string): boolean {
  if (policy.sources === undefined) return true;
  const ip = parseIp(sourceIp);
  return ip !== undefined && policy.sources.some((cidr) => cidrContainsIp(mustParseCidr(cidr), ip));
}

function allowsByCidr(policy: Policy, connection: Connection): boolean {
  const destination = parseIp(connection.destinationIp);
  return (
    destination !== undefined &&
    (policy.allow.cidrs ?? []).some(
      (rule) => cidrContainsIp(mustParseCidr(rule.cidr), destination) && (rule.ports === undefined || rule.ports.includes(connection.destinationPort)),
    )
  );
}

export function intendedRoute(policies: readonly Policy[], connection: Connection, listenerPort: number): IntendedRoute {
  if (connection.destinationPort === listenerPort) return { verdict: 'deny', reason: 'loop' };
  const selecting = policies.filter((p) => selects(p, connection.sourceIp)).sort(byName);
  const byCidr = selecting.find((p) => allowsByCidr(p, connection));
  if (byCidr) return { verdict: 'allow', policy: byCidr.name, upstream: 'original-destination', by: 'cidr' };
  const serverName = connection.serverName?.toLowerCase();
  if (serverName) {
    const bySni = selecting.filter((p) => p.allow.sni.some((pattern) => sniPatternMatches(pattern, serverName)));
    if (bySni.length > 0) {
      const upstream = bySni.every((p) => p.upstream === 'original-destination') ? 'original-destination' : 'name';
      return { verdict: 'allow', policy: bySni[0]!.name, upstream, by: 'sni' };
    }
  }
  return { verdict: 'deny', reason: 'no-policy' };
}
