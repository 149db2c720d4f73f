// fast-check generators for policy sets and connections that collide on purpose:
// nested and overlapping CIDRs, SNI names and wildcards from a tiny alphabet,
// connections picked at the edges of the ranges the policies name.
import fc from 'fast-check';
import { formatIp, mustParseCidr, type Cidr } from '../../src/net/ip.js';
import type { CidrAllow, Connection, Policy } from '../../src/policy/model.js';

export const SOURCE_POOL = [
  '10.0.0.0/8', '10.0.0.0/16', '10.0.0.0/24', '10.0.0.4/30', '10.0.0.8/30', '10.0.0.5/32',
  '192.168.0.0/16', '0.0.0.0/0', '172.31.0.0/16',
  'fd00::/8', 'fd00::/64', 'fd00::4/126', '::/0',
] as const;

export const DESTINATION_POOL = [
  '10.0.0.0/8', '10.1.0.0/16', '10.1.2.0/24', '10.1.2.3/32', '172.16.0.0/12', '0.0.0.0/0', '140.82.112.0/20',
  '2001:db8::/32', '2001:db8:1::/48', '::/0',
] as const;

/** 15001 is the listener's own port: rules naming it and connections to it meet the loop guard. */
export const PORT_POOL = [22, 80, 443, 8443, 15001] as const;

const LABELS = ['a', 'b', 'c'] as const;
const TLDS = ['com', 'io'] as const;

const dnsName = (depth: number): fc.Arbitrary<string> =>
  fc.tuple(fc.array(fc.constantFrom(...LABELS), { minLength: depth, maxLength: depth }), fc.constantFrom(...TLDS))
    .map(([labels, tld]) => [...labels, tld].join('.'));

/** "a.b.com", "com", "*.b.com", "*.com": exact names and wildcards at several depths. */
export const sniPattern: fc.Arbitrary<string> = fc.oneof(
  fc.integer({ min: 0, max: 3 }).chain(dnsName),
  fc.integer({ min: 0, max: 2 }).chain(dnsName).map((n) => `*.${n}`),
);

const sortedUnique = <T>(items: readonly T[], compare?: (a: T, b: T) => number): T[] => [...new Set(items)].sort(compare);

const cidrAllow: fc.Arbitrary<CidrAllow> = fc.record(
  {
    cidr: fc.constantFrom(...DESTINATION_POOL),
    ports: fc.uniqueArray(fc.constantFrom(...PORT_POOL), { minLength: 1, maxLength: 2 }),
  },
  { requiredKeys: ['cidr'] },
).map((r) => (r.ports ? { cidr: r.cidr, ports: sortedUnique(r.ports, (a, b) => a - b) } : { cidr: r.cidr }));

const policySpec = fc.record(
  {
    sources: fc.uniqueArray(fc.constantFrom(...SOURCE_POOL), { minLength: 1, maxLength: 3 }),
    sni: fc.uniqueArray(sniPattern, { maxLength: 4 }),
    cidrs: fc.array(cidrAllow, { maxLength: 3 }),
    upstream: fc.constantFrom('name', 'original-destination'),
  },
  { requiredKeys: ['sni'] },
);

/** 0-6 policies with distinct names; sources absent about a third of the time. */
export const policySet: fc.Arbitrary<Policy[]> = fc.array(policySpec, { maxLength: 6 }).map((specs) =>
  specs.map((spec, i) => {
    const cidrs = spec.cidrs
      ? [...new Map(spec.cidrs.map((c) => [`${c.cidr}|${c.ports?.join(',') ?? ''}`, c])).values()].sort((a, b) => (a.cidr < b.cidr ? -1 : 1))
      : undefined;
    return {
      name: `p${i}`,
      ...(spec.sources && { sources: sortedUnique(spec.sources) }),
      // Stored absent when it is the default, as validate.ts does.
      ...(spec.upstream === 'original-destination' && { upstream: spec.upstream }),
      allow: { sni: sortedUnique(spec.sni), ...(cidrs && { cidrs }) },
    };
  }),
);

/** Addresses at and just beyond the edges of a range: first, second, last, one past either end. */
export function edgeAddresses(text: string): string[] {
  const cidr: Cidr = mustParseCidr(text);
  const bits = cidr.family === 4 ? 32n : 128n;
  const size = 1n << (bits - BigInt(cidr.prefixLength));
  const max = (1n << bits) - 1n;
  const first = cidr.network;
  const last = cidr.network + size - 1n;
  const values = [first, first + 1n, last, last + 1n, first - 1n, first + size / 2n].filter((v) => v >= 0n && v <= max);
  return [...new Set(values)].map((value) => formatIp({ family: cidr.family, value }));
}

const SOURCE_IPS = [...new Set([...SOURCE_POOL.flatMap(edgeAddresses), '127.0.0.1', '8.8.8.8', '2001:db8::1'])];
const DESTINATION_IPS = [...new Set([...DESTINATION_POOL.flatMap(edgeAddresses), '8.8.8.8', 'fd00::1', '10.0.0.5'])];

/** Server names near the policies' patterns: the pattern itself, its apex, one and two labels below, or none. */
function serverNameFor(policies: readonly Policy[]): fc.Arbitrary<string | undefined> {
  const patterns = policies.flatMap((p) => p.allow.sni);
  const near = patterns.length === 0
    ? fc.constant<string | undefined>(undefined)
    : fc.tuple(fc.constantFrom(...patterns), fc.constantFrom('', 'a.', 'c.b.', 'b.a.')).map(([pattern, below]) =>
        pattern.startsWith('*.') ? (below === '' ? pattern.slice(2) : below + pattern.slice(2)) : below + pattern,
      );
  return fc.oneof(
    { arbitrary: near, weight: 4 },
    { arbitrary: fc.integer({ min: 0, max: 4 }).chain(dnsName), weight: 2 },
    { arbitrary: fc.constant(undefined), weight: 1 },
    { arbitrary: fc.constant('A.COM'), weight: 1 },
  );
}

export function connectionFor(policies: readonly Policy[]): fc.Arbitrary<Connection> {
  const namedDestinations = policies.flatMap((p) => (p.allow.cidrs ?? []).flatMap((c) => edgeAddresses(c.cidr)));
  const namedSources = policies.flatMap((p) => (p.sources ?? []).flatMap(edgeAddresses));
  const pick = (named: string[], pool: string[]): fc.Arbitrary<string> =>
    named.length > 0 ? fc.oneof({ arbitrary: fc.constantFrom(...named), weight: 3 }, { arbitrary: fc.constantFrom(...pool), weight: 1 }) : fc.constantFrom(...pool);
  return fc.record(
    {
      sourceIp: pick(namedSources, SOURCE_IPS),
      destinationIp: pick(namedDestinations, DESTINATION_IPS),
      destinationPort: fc.constantFrom(...PORT_POOL, 5432),
      serverName: serverNameFor(policies),
    },
  ).map((c) => (c.serverName === undefined ? { sourceIp: c.sourceIp, destinationIp: c.destinationIp, destinationPort: c.destinationPort } : c as Connection));
}

/** A policy set with connections aimed at it. */
export const policiesAndConnections = policySet.chain((policies) =>
  fc.tuple(fc.constant(policies), fc.array(connectionFor(policies), { minLength: 20, maxLength: 40 })),
);
