// What a compile worker compiles before its first real request: a synthetic host, then
// edits of it, so the compiler and the encoder are JIT-compiled (and the protos loaded)
// before an Envoy is waiting for them. A fresh worker ran a 1,000-microVM host's first
// compile ~1.3 s in V8's interpreter and baseline tiers against ~0.14 s warm, and the
// first handful of one-name edits at 3-10× their steady cost (BENCHMARKS.md, "Edits
// through the server"). The worker runs these steps one per turn of its event loop and
// stops at its first real request (compileWorker.ts), so a request waits for at most one
// step, and the compiler's memos hold the real host's state, not this one's, from then on.
// It costs a worker ~0.5-0.7 s of CPU once, at start.
import type { Policy } from '../policy/model.js';

/**
 * Synthetic microVMs of the warm-up host: enough for every per-source and per-name loop to be
 * optimised. With 64, a 1,000-microVM host's first compile still cost the worker ~290 ms and
 * V8's compiler threads ~240 ms; with 250, ~175 and ~240 (bench/hostServer.ts, HOST_SERVER_WARM=1).
 */
export const WARMUP_MICROVMS = 200;
/** Steps: the host compiled whole, then edits (one microVM's own policy, then the shared one, in turn). */
export const WARMUP_STEPS = 24;

const BASES = ['example.com', 'example.org', 'example.net', 'registry.example', 'cdn.example', 'api.example'];
const catalogue = Array.from({ length: 96 }, (_, i) => (i % 8 === 0 ? `*.w${i}.${BASES[i % BASES.length]}` : `w${i}.${BASES[i % BASES.length]}`));

/** Deterministic names of microVM i. */
const namesOf = (i: number, count: number): string[] => {
  const names = new Set<string>();
  for (let k = 0; names.size < count; k++) names.add(catalogue[(i * 7 + k * 13) % catalogue.length]!);
  return [...names].sort();
};

/**
 * The warm-up host: each microVM its own /30 (a few IPv6 /126) and 20 names, every 8th an
 * address rule with ports, a few in audit mode, logging all, or dialling the original
 * destination, and one policy shared by all (no sources): the shapes real hosts take, so
 * the code the warm-up optimises is the code they run. Documentation ranges only.
 */
export function warmupHost(microVms = WARMUP_MICROVMS): Policy[] {
  const policies: Policy[] = [{ name: 'warmup-shared', allow: { sni: Array.from({ length: 12 }, (_, k) => `pkg${k}.shared.example`).sort() } }];
  for (let i = 0; i < microVms; i++) {
    const source = i % 16 === 15 ? `2001:db8:${i.toString(16)}::/126` : `198.18.${i >> 6}.${(i & 63) * 4}/30`;
    // Keys in the order the server's policies have them (the store's key order, then
    // src/server/controlPlane.ts's policyOf): objects of another shape would teach V8's
    // inline caches shapes the real policies do not have, and the real ones deoptimise.
    policies.push({
      name: `warmup-${String(i).padStart(3, '0')}`,
      sources: [source],
      ...(i % 19 === 7 ? { upstream: 'original-destination' as const } : {}),
      ...(i % 21 === 3 ? { mode: 'audit' as const } : {}),
      ...(i % 23 === 5 ? { log: 'all' as const } : {}),
      allow: { sni: namesOf(i, 20), ...(i % 8 === 0 ? { cidrs: [{ cidr: `192.0.2.${i % 256}/32`, ports: [5432] }] } : {}) },
    });
  }
  return policies;
}

/** The policy sets of the warm-up, in order: the host, then one edit per step. */
export function* warmupSets(steps = WARMUP_STEPS, microVms = WARMUP_MICROVMS): Generator<readonly Policy[], void, void> {
  let host = warmupHost(microVms);
  yield host;
  for (let s = 1; s < steps; s++) {
    // Odd steps: one microVM's policy gains a name; even ones: the shared policy does.
    const name = s % 2 === 1 ? `warmup-${String(s % microVms).padStart(3, '0')}` : 'warmup-shared';
    host = host.map((p) => (p.name === name ? { ...p, allow: { ...p.allow, sni: [...p.allow.sni, `edit${s}.warmup.example`].sort() } } : p));
    yield host;
  }
}
