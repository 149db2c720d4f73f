// Compile and encode time for a node group, by policy count: what every policy
// change costs per affected group.
import { compileEgress } from '../src/compile/index.js';
import { encodeProtoJson } from '../src/envoy/codec.js';
import { TypeUrl } from '../src/envoy/typeUrls.js';
import type { Policy } from '../src/policy/model.js';
import { summarize } from './stats.js';

const DOMAINS = ['github.com', 'gitlab.com', 'pypi.org', 'npmjs.org', 'crates.io', 'golang.org', 'docker.io', 'quay.io', 'amazonaws.com', 'googleapis.com'];

/** A synthetic fleet: each policy a /30 of microVMs, a few names (some wildcards), every 4th a CIDR rule. */
export function syntheticPolicies(count: number): Policy[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `p${String(i).padStart(4, '0')}`,
    sources: [`172.31.${Math.floor(i / 64)}.${(i % 64) * 4}/30`],
    allow: {
      sni: [`${DOMAINS[i % DOMAINS.length]}`, `*.svc${i % 7}.${DOMAINS[(i + 3) % DOMAINS.length]}`, `api${i}.example.com`],
      ...(i % 4 === 0 ? { cidrs: [{ cidr: `10.${i % 250}.0.0/16`, ports: [443 + (i % 3)] }] } : {}),
    },
  }));
}

export function compileBenchmark(policyCount: number, rounds: number) {
  const policies = syntheticPolicies(policyCount);
  const times: number[] = [];
  let chains = 0;
  let bytes = 0;
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint();
    const compiled = compileEgress(policies);
    const encoded = encodeProtoJson(TypeUrl.Listener, compiled.listeners[0] as unknown as Record<string, unknown>);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
    chains = compiled.listeners[0]!.filterChains.length;
    bytes = encoded.length;
  }
  return { policies: policyCount, chains, listenerBytes: bytes, time: summarize(times) };
}
