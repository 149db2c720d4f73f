// The verdict the policies intend for one connection: the specification that
// the generated filter chains must reproduce through Envoy's matching.
import { cidrContainsIp, mustParseCidr, parseIp } from '../net/ip.js';
import type { Connection, Policy } from './model.js';

/** Envoy's server_names semantics: "*.example.com" matches any depth below, never the apex. */
export function sniPatternMatches(pattern: string, serverName: string): boolean {
  const name = serverName.toLowerCase();
  if (pattern.startsWith('*.')) return name.endsWith(pattern.slice(1)) && name.length > pattern.length - 1;
  return pattern === name;
}

function sourceSelected(policy: Policy, sourceIp: string): boolean {
  if (policy.sources === undefined) return true;
  const ip = parseIp(sourceIp);
  return ip !== undefined && policy.sources.some((cidr) => cidrContainsIp(mustParseCidr(cidr), ip));
}

/** Why a policy allows a connection, or undefined when it does not. */
export function policyAllows(policy: Policy, connection: Connection): 'sni' | 'cidr' | undefined {
  if (!sourceSelected(policy, connection.sourceIp)) return undefined;
  const serverName = connection.serverName;
  if (serverName !== undefined && policy.allow.sni.some((pattern) => sniPatternMatches(pattern, serverName))) {
    return 'sni';
  }
  const destination = parseIp(connection.destinationIp);
  const byCidr = destination !== undefined && (policy.allow.cidrs ?? []).some(
    (rule) =>
      cidrContainsIp(mustParseCidr(rule.cidr), destination) &&
      (rule.ports === undefined || rule.ports.includes(connection.destinationPort)),
  );
  return byCidr ? 'cidr' : undefined;
}

export interface IntendedVerdict {
  readonly verdict: 'allow' | 'deny';
  /** The first policy (by name) that allows the connection. */
  readonly policy?: string;
}

/** The union of the policies (already selected for the node): allowed if any one allows. */
export function intendedVerdict(policies: readonly Policy[], connection: Connection): IntendedVerdict {
  const sorted = [...policies].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const policy of sorted) {
    if (policyAllows(policy, connection)) return { verdict: 'allow', policy: policy.name };
  }
  return { verdict: 'deny' };
}
