// Hosts of microVMs, as the issue-7 tests need them: each microVM its own /30 and its own
// policy of names from a shared catalogue (some wildcards, some address rules), plus one
// policy shared by all of them.
import type { Connection, Policy } from '../../src/policy/model.js';

export const SHARED_POLICY = 'common-deps';
const BASES = ['github.com', 'npmjs.org', 'pypi.org', 'crates.io', 'docker.io', 'quay.io', 'amazonaws.com', 'googleapis.com'];
const catalogue = Array.from({ length: 120 }, (_, i) => (i % 8 === 0 ? `*.s${i}.${BASES[i % BASES.length]}` : `api${i}.${BASES[i % BASES.length]}`));

export const vmName = (i: number): string => `vm-${String(i).padStart(5, '0')}`;
export const vmSource = (i: number): string => `10.${100 + (i >> 14)}.${(i >> 6) & 0xff}.${(i & 63) * 4}/30`;
export function vmIp(i: number): string {
  const [a, b, c, d] = vmSource(i).split('/')[0]!.split('.').map(Number);
  return `${a}.${b}.${c}.${d! + 1}`;
}

export function hostPolicies(microVms: number, namesPerVm = 8): Policy[] {
  const policies: Policy[] = [{ name: SHARED_POLICY, allow: { sni: ['pkg0.common.dev', 'pkg1.common.dev', '*.cdn.common.dev'].sort() } }];
  for (let i = 0; i < microVms; i++) {
    const names = new Set<string>();
    for (let k = 0; names.size < namesPerVm; k++) names.add(catalogue[(i * 7 + k * 13) % catalogue.length]!);
    policies.push({
      name: vmName(i),
      sources: [vmSource(i)],
      allow: { sni: [...names].sort(), ...(i % 10 === 0 ? { cidrs: [{ cidr: `192.0.2.${i % 256}/32`, ports: [5432] }] } : {}) },
    });
  }
  return policies;
}

export function withExtraName(policies: readonly Policy[], name: string, serverName: string): Policy[] {
  return policies.map((p) => (p.name === name ? { ...p, allow: { ...p.allow, sni: [...new Set([...p.allow.sni, serverName])].sort() } } : p));
}

/** What microVM i connects to: its names, the shared ones, names it may not reach, its address rule, the listener's port. */
export function connectionsOf(policies: readonly Policy[], i: number, extraNames: readonly string[] = []): Connection[] {
  const own = policies.find((p) => p.name === vmName(i))!;
  const shared = policies.find((p) => p.name === SHARED_POLICY)!;
  const sourceIp = vmIp(i);
  const concrete = (pattern: string) => (pattern.startsWith('*.') ? `x.${pattern.slice(2)}` : pattern);
  const names = [...own.allow.sni, ...shared.allow.sni, ...extraNames, 'not-allowed.example', 'api1.github.com'].map(concrete);
  return [
    ...names.map((serverName) => ({ sourceIp, destinationIp: '203.0.113.7', destinationPort: 443, serverName })),
    { sourceIp, destinationIp: `192.0.2.${i % 256}`, destinationPort: 5432 },
    { sourceIp, destinationIp: `192.0.2.${i % 256}`, destinationPort: 5432, serverName: 'pkg0.common.dev' },
    { sourceIp, destinationIp: '203.0.113.7', destinationPort: 15001, serverName: 'pkg0.common.dev' },
  ];
}
