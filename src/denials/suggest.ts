// Learn: a policy drafted from what one source was refused. Exact names,
// except that several subdomains of one parent become "*.parent"; addresses
// reached without a name become /32 (/128) CIDR rules on the ports seen.
// Reasons no allowlist entry can cure (a forbidden address, a loop, the
// per-source cap) are left out and counted, so the draft never pretends to fix them.
import { isIPv6 } from 'node:net';
import type { CidrAllow, Connection, Policy, PolicySpec } from '../policy/model.js';
import { NODE_GLOB_PATTERN, validatePolicySpec } from '../policy/validate.js';
import type { StoredDenial } from './buffer.js';
import { splitHostPort } from './query.js';
import type { DenialReason } from './record.js';

/** Distinct subdomains of one parent from which the draft says "*.parent". */
export const WILDCARD_THRESHOLD = 3;

const CURABLE: ReadonlySet<DenialReason> = new Set(['no-policy', 'http-host', 'dns-name', 'no-server-name', 'quic']);

export interface DraftOptions {
  readonly node: string;
  /** The source IP whose denials are drafted from. */
  readonly source: string;
  readonly wildcardThreshold?: number;
}

export interface Draft {
  readonly name: string;
  readonly spec: PolicySpec;
  /** Records drafted from, and those left out because no allowlist entry would allow them. */
  readonly used: number;
  readonly leftOut: Readonly<Record<string, number>>;
  /** The distinct connections the draft is meant to allow (for the check against the policies in force). */
  readonly connections: readonly { readonly connection: Connection; readonly count: number }[];
}

/** The parent of a name ("api.github.com" → "github.com"); undefined when it would be a bare TLD. */
function parentOf(name: string): string | undefined {
  const dot = name.indexOf('.');
  if (dot < 0) return undefined;
  const parent = name.slice(dot + 1);
  return parent.includes('.') ? parent : undefined;
}

/** Names → sorted SNI entries: "*.P" where at least `threshold` distinct subdomains of P appear. */
export function draftNames(names: Iterable<string>, threshold = WILDCARD_THRESHOLD): string[] {
  const unique = new Set([...names].map((n) => n.toLowerCase().replace(/\.$/, '')));
  const byParent = new Map<string, Set<string>>();
  for (const name of unique) {
    const parent = parentOf(name);
    if (!parent) continue;
    const children = byParent.get(parent) ?? new Set<string>();
    children.add(name);
    byParent.set(parent, children);
  }
  const wildcards = [...byParent].filter(([, children]) => children.size >= threshold).map(([parent]) => parent);
  const covered = (name: string) => wildcards.some((parent) => name.endsWith(`.${parent}`));
  const entries = new Set<string>(wildcards.map((parent) => `*.${parent}`));
  for (const name of unique) if (!covered(name)) entries.add(name);
  // A wildcard below another wildcard adds nothing.
  const list = [...entries].filter((entry) => !(entry.startsWith('*.') && wildcards.some((parent) => entry !== `*.${parent}` && entry.endsWith(`.${parent}`))));
  return list.sort();
}

const policyNameFor = (source: string): string =>
  `learned-${source.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '')}`.slice(0, 63).replace(/[-.]+$/, '');

/** Drafts one policy from the records of one node and source. */
export function draftPolicy(records: readonly StoredDenial[], options: DraftOptions): Draft {
  const names: string[] = [];
  const cidrPorts = new Map<string, Set<number>>();
  const leftOut: Record<string, number> = {};
  const connections = new Map<string, { connection: Connection; count: number }>();
  let used = 0;
  for (const record of records) {
    if (record.verdict === 'allowed') continue;
    if (record.reason && !CURABLE.has(record.reason)) {
      leftOut[record.reason] = (leftOut[record.reason] ?? 0) + 1;
      continue;
    }
    const destination = splitHostPort(record.destination);
    const source = splitHostPort(record.source);
    used += 1;
    if (record.serverName) names.push(record.serverName);
    else if (destination) {
      const ports = cidrPorts.get(destination.ip) ?? new Set<number>();
      ports.add(destination.port);
      cidrPorts.set(destination.ip, ports);
    }
    if (destination && source && record.reason !== 'dns-name') {
      const connection: Connection = {
        sourceIp: source.ip,
        destinationIp: destination.ip,
        destinationPort: destination.port,
        ...(record.serverName ? { serverName: record.serverName } : {}),
      };
      const key = `${connection.destinationIp}|${connection.destinationPort}|${connection.serverName ?? ''}`;
      const seen = connections.get(key);
      if (seen) seen.count += 1;
      else connections.set(key, { connection, count: 1 });
    }
  }
  const cidrs: CidrAllow[] = [...cidrPorts]
    .map(([ip, ports]) => ({ cidr: `${ip}/${isIPv6(ip) ? 128 : 32}`, ports: [...ports].sort((a, b) => a - b) }))
    .sort((a, b) => (a.cidr < b.cidr ? -1 : 1));
  const sourceCidr = `${options.source}/${isIPv6(options.source) ? 128 : 32}`;
  const raw = {
    sources: [sourceCidr],
    ...(NODE_GLOB_PATTERN.test(options.node) && !/[*?]/.test(options.node) ? { nodes: [options.node] } : {}),
    allow: { sni: draftNames(names, options.wildcardThreshold), ...(cidrs.length > 0 ? { cidrs } : {}) },
  };
  const valid = validatePolicySpec(raw);
  if (!valid.ok) throw new Error(`the drafted policy is not valid (${valid.error.field}: ${valid.error.message}); this is a bug`);
  return { name: policyNameFor(options.source), spec: valid.value, used, leftOut, connections: [...connections.values()] };
}

/** What a draft would change, per connection: allowed before (by which policy), allowed after. */
export interface SuggestionEffect {
  readonly connection: Connection;
  readonly count: number;
  readonly before: { readonly verdict: 'allow' | 'deny'; readonly policy?: string };
  readonly after: { readonly verdict: 'allow' | 'deny'; readonly policy?: string };
}

/** SNI entries and CIDR rules of the draft that no policy selecting the node already has. */
export function newEntries(draft: PolicySpec, inForce: readonly Policy[]): { sni: string[]; cidrs: CidrAllow[] } {
  const sni = new Set(inForce.flatMap((p) => p.allow.sni));
  const cidrs = new Set(inForce.flatMap((p) => (p.allow.cidrs ?? []).map((c) => `${c.cidr}|${c.ports?.join(',') ?? ''}`)));
  return {
    sni: draft.allow.sni.filter((name) => !sni.has(name)),
    cidrs: (draft.allow.cidrs ?? []).filter((c) => !cidrs.has(`${c.cidr}|${c.ports?.join(',') ?? ''}`)),
  };
}
