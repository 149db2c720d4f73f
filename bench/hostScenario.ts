// The host scenarios of issue 7: one host, N microVMs (each its own /30 and its own policy
// of 20 names from a shared catalogue, every 10th with an address rule), plus one
// "common dependencies" policy shared by all of them. Measures what the control plane
// pays per compile (on the event loop) and what Envoy keeps across edits.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { compileEgress, type CompileOptions, type CompiledEgress } from '../src/compile/index.js';
import { resetChainCache } from '../src/compile/hardenedListener.js';
import { resetCompileCaches } from '../src/compile/hardenedMatcher.js';
import { encodeListener } from '../src/compile/encodeListener.js';
import { encodeProtoJson } from '../src/envoy/codec.js';
import { selectByMatcher } from '../src/envoy/filterChainMatcher.js';
import { selectFilterChain } from '../src/envoy/filterChainMatch.js';
import type { FilterChainJson, ListenerJson } from '../src/envoy/resources.js';
import { TYPE_PREFIX, TypeUrl } from '../src/envoy/typeUrls.js';
import type { Connection, Policy } from '../src/policy/model.js';
import { summarize } from './stats.js';
import { encodeResource } from '../src/snapshot/encodedResource.js';
import { formatBreakdown, listenerBreakdown } from './listenerBreakdown.js';

const CATALOGUE_SIZE = 400;
// Realistic lengths (registries, CDNs, APIs: 10 to 30 characters); every 8th a wildcard.
const BASES = ['github.com', 'npmjs.org', 'pypi.org', 'crates.io', 'golang.org', 'docker.io', 'quay.io', 'gcr.io', 'amazonaws.com', 'googleapis.com', 'cloudfront.net', 'azureedge.net', 'openai.com', 'anthropic.com', 'huggingface.co', 'rubygems.org', 'maven.org', 'nuget.org', 'debian.org', 'ubuntu.com'];
const catalogue = Array.from({ length: CATALOGUE_SIZE }, (_, i) => {
  const base = BASES[i % BASES.length]!;
  return i % 8 === 0 ? `*.s${i}.${base}` : `api${i}.${base}`;
});
const SHARED = 'common-deps';

/** Deterministic: microVM i's 20 names. */
function namesOf(i: number, count: number): string[] {
  const names = new Set<string>();
  for (let k = 0; names.size < count; k++) names.add(catalogue[(i * 7 + k * 13) % CATALOGUE_SIZE]!);
  return [...names].sort();
}

export const microVmSource = (i: number): string => `10.${100 + (i >> 14)}.${(i >> 6) & 0xff}.${(i & 63) * 4}/30`;
const microVmIp = (i: number): string => {
  const [a, b, c, d] = microVmSource(i).split('/')[0]!.split('.').map(Number);
  return `${a}.${b}.${c}.${d! + 1}`;
};

export function hostPolicies(microVms: number, namesPerVm = 20): Policy[] {
  const policies: Policy[] = [
    { name: SHARED, allow: { sni: [...Array.from({ length: 20 }, (_, k) => `pkg${k}.common.dev`)].sort() } },
  ];
  for (let i = 0; i < microVms; i++) {
    policies.push({
      name: `vm-${String(i).padStart(5, '0')}`,
      sources: [microVmSource(i)],
      allow: { sni: namesOf(i, namesPerVm), ...(i % 10 === 0 ? { cidrs: [{ cidr: `192.0.2.${i % 256}/32`, ports: [5432] }] } : {}) },
    });
  }
  return policies;
}

/** The same policies with `name` gaining one more server name. */
export function withExtraName(policies: readonly Policy[], name: string, serverName: string): Policy[] {
  return policies.map((p) => (p.name === name ? { ...p, allow: { ...p.allow, sni: [...p.allow.sni, serverName].sort() } } : p));
}

/** Connections a microVM makes: its own names, the shared ones, an address rule, a refused name, plain HTTP to port 80. */
export function sampleConnections(policies: readonly Policy[], i: number): (Connection & { applicationProtocols?: string[] })[] {
  const own = policies.find((p) => p.name === `vm-${String(i).padStart(5, '0')}`)!;
  const shared = policies.find((p) => p.name === SHARED)!;
  const sourceIp = microVmIp(i);
  const concrete = (pattern: string) => (pattern.startsWith('*.') ? `x.${pattern.slice(2)}` : pattern);
  return [
    ...own.allow.sni.slice(0, 4).map((p) => ({ sourceIp, destinationIp: '203.0.113.7', destinationPort: 443, serverName: concrete(p) })),
    ...shared.allow.sni.slice(0, 2).map((p) => ({ sourceIp, destinationIp: '203.0.113.8', destinationPort: 443, serverName: p })),
    { sourceIp, destinationIp: '203.0.113.9', destinationPort: 443, serverName: 'new.common.dev' },
    { sourceIp, destinationIp: '203.0.113.9', destinationPort: 443, serverName: 'not-allowed.example' },
    { sourceIp, destinationIp: `192.0.2.${i % 256}`, destinationPort: 5432 },
    // A long-lived plain-HTTP connection: routed by Host per request (RDS), the chain must stay.
    { sourceIp, destinationIp: '203.0.113.80', destinationPort: 80, applicationProtocols: ['http/1.1'] },
  ];
}

function chainOf(listener: ListenerJson, connection: Connection & { applicationProtocols?: string[] }): FilterChainJson | undefined {
  return listener.filterChainMatcher ? selectByMatcher(listener, connection).chain : selectFilterChain(listener, connection);
}
const allows = (chain: FilterChainJson | undefined) => chain !== undefined && !chain.name?.startsWith('reject');

/**
 * MicroVMs (of those sampled) with a connection whose verdict did not change but whose
 * chain's bytes did: Envoy drains those connections.
 */
export function disturbedMicroVms(before: ListenerJson, after: ListenerJson, policiesBefore: readonly Policy[], sample: readonly number[]): number {
  const bytes = new Map<FilterChainJson, string>();
  const encoded = (chain: FilterChainJson) => {
    let b = bytes.get(chain);
    if (b === undefined) bytes.set(chain, (b = Buffer.from(encodeProtoJson(`${TYPE_PREFIX}envoy.config.listener.v3.FilterChain`, chain as unknown as Record<string, unknown>)).toString('base64')));
    return b;
  };
  let disturbed = 0;
  for (const i of sample) {
    const changed = sampleConnections(policiesBefore, i).some((connection) => {
      const a = chainOf(before, connection);
      const b = chainOf(after, connection);
      if (allows(a) !== allows(b) || a === undefined || b === undefined) return false;
      return encoded(a) !== encoded(b);
    });
    if (changed) disturbed++;
  }
  return disturbed;
}

interface Timed<T> {
  value: T;
  /** Wall time; on a loaded machine it counts other processes' turns too. */
  ms: number;
  /** This process's CPU time (user + system). */
  cpuMs: number;
}
const cpuNow = (): number => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
};
function timed<T>(run: () => T): Timed<T> {
  const start = process.hrtime.bigint();
  const cpu = cpuNow();
  const value = run();
  return { value, ms: Number(process.hrtime.bigint() - start) / 1e6, cpuMs: cpuNow() - cpu };
}

export interface HostScenarioResult {
  microVms: number;
  profile: string;
  chains: number;
  matcherBytes: number;
  listenerBytes: number;
  /** The RouteConfigurations served beside the listener over RDS: count and bytes. */
  routeTables: number;
  routeBytes: number;
  /** Where the listener's bytes go, by chain kind (listenerBreakdown.ts). */
  breakdown: string;
  /**
   * Over the rounds after the first (a server compiles many times: V8 has optimised the
   * compiler by then); all rounds when there is only one.
   */
  cold: ReturnType<typeof summarize>;
  ownEdit: ReturnType<typeof summarize>;
  sharedEdit: ReturnType<typeof summarize>;
  coldCpu: ReturnType<typeof summarize>;
  ownEditCpu: ReturnType<typeof summarize>;
  sharedEditCpu: ReturnType<typeof summarize>;
  /** The first round alone: the compiler not yet optimised by V8 (a server's first compile). */
  first: { cold: number; coldCpu: number; ownEdit: number; ownEditCpu: number; sharedEdit: number; sharedEditCpu: number };
  /** Longest event-loop block while edits compiled (the cold compiles are outside it). */
  maxEditBlockMs: number;
  ownDisturbed: string;
  sharedDisturbed: string;
  maxBlockMs: number;
}

/** The rounds after the first (the first runs before V8 optimised the compiler); all of them when there is one. */
const later = (values: readonly number[]): readonly number[] => (values.length > 1 ? values.slice(1) : values);

type Encoder = (listener: ListenerJson) => Uint8Array;
const genericEncoder: Encoder = (listener) => encodeProtoJson(TypeUrl.Listener, listener as unknown as Record<string, unknown>);

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function hostScenario(microVms: number, rounds: number, options: CompileOptions & { encoder?: 'generic' | 'fast' } = {}): Promise<HostScenarioResult> {
  const encode: Encoder = options.encoder === 'generic' ? genericEncoder : encodeListener;
  // The port-80 route tables (RDS) are encoded as the snapshot encodes them (unchanged ones keep their bytes).
  const compileAndEncode = (policies: readonly Policy[]): { compiled: CompiledEgress; bytes: Uint8Array; routeBytes: number } => {
    const compiled = compileEgress(policies, options);
    let routeBytes = 0;
    for (const route of compiled.routes ?? []) routeBytes += encodeResource(TypeUrl.RouteConfiguration, route.name!, route as unknown as Record<string, unknown>).bytes.length;
    return { compiled, bytes: encode(compiled.listeners[0]!), routeBytes };
  };
  const base = hostPolicies(microVms);
  const cold: number[] = [];
  const own: number[] = [];
  const shared: number[] = [];
  const coldCpu: number[] = [];
  const ownCpu: number[] = [];
  const sharedCpu: number[] = [];
  const editHistogram = monitorEventLoopDelay({ resolution: 1 });
  let first: { compiled: CompiledEgress; bytes: Uint8Array; routeBytes: number } | undefined;
  let ownAfter: CompiledEgress | undefined;
  let sharedAfter: CompiledEgress | undefined;
  // Each compile runs from a timer, as the server runs it from a store event; the
  // histogram sees how long the event loop could not run anything else.
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  for (let r = 0; r < rounds; r++) {
    await pause(5);
    resetCompileCaches();
    resetChainCache();
    const c = timed(() => compileAndEncode(base));
    cold.push(c.ms);
    coldCpu.push(c.cpuMs);
    first ??= c.value;
    await pause(5);
    editHistogram.enable();
    await pause(5);
    const ownEdited = withExtraName(base, 'vm-00001', `edit${r}.example.com`);
    const o = timed(() => compileAndEncode(ownEdited));
    own.push(o.ms);
    ownCpu.push(o.cpuMs);
    ownAfter ??= o.value.compiled;
    await pause(5);
    const sharedEdited = withExtraName(base, SHARED, `new${r === 0 ? '' : r}.common.dev`);
    const s = timed(() => compileAndEncode(sharedEdited));
    shared.push(s.ms);
    sharedCpu.push(s.cpuMs);
    sharedAfter ??= s.value.compiled;
    await pause(5);
    editHistogram.disable();
  }
  histogram.disable();
  const sample = Array.from({ length: Math.min(microVms, 200) }, (_, k) => Math.floor((k * microVms) / Math.min(microVms, 200)));
  const before = first!.compiled.listeners[0]!;
  const matcherBytes = before.filterChainMatcher
    ? encodeProtoJson('type.googleapis.com/xds.type.matcher.v3.Matcher', before.filterChainMatcher as unknown as Record<string, unknown>).length
    : 0;
  return {
    microVms,
    profile: options.profile ?? 'hardened',
    chains: before.filterChains.length,
    matcherBytes,
    listenerBytes: first!.bytes.length,
    routeTables: first!.compiled.routes?.length ?? 0,
    routeBytes: first!.routeBytes,
    breakdown: formatBreakdown(listenerBreakdown(first!.compiled)),
    cold: summarize(later(cold)),
    ownEdit: summarize(later(own)),
    sharedEdit: summarize(later(shared)),
    coldCpu: summarize(later(coldCpu)),
    ownEditCpu: summarize(later(ownCpu)),
    sharedEditCpu: summarize(later(sharedCpu)),
    first: { cold: cold[0]!, coldCpu: coldCpu[0]!, ownEdit: own[0]!, ownEditCpu: ownCpu[0]!, sharedEdit: shared[0]!, sharedEditCpu: sharedCpu[0]! },
    maxEditBlockMs: editHistogram.max / 1e6,
    ownDisturbed: `${disturbedMicroVms(before, ownAfter!.listeners[0]!, base, sample)} of ${sample.length}`,
    sharedDisturbed: `${disturbedMicroVms(before, sharedAfter!.listeners[0]!, base, sample)} of ${sample.length}`,
    maxBlockMs: histogram.max / 1e6,
  };
}

/** The BENCHMARKS.md table of the host scenarios. */
export async function hostScenarioTable(sizes: readonly number[], rounds: number, options: CompileOptions = {}): Promise<string[]> {
  const lines = [
    `| microVMs | filter chains | matcher bytes | listener bytes | compile + encode, cold: wall / CPU, p50 of rounds 2–${rounds} (round 1) | one name added to one microVM: wall / CPU, p50 (round 1) | one name added to the shared policy: wall / CPU, p50 (round 1) | microVMs disturbed: own edit / shared edit | max event-loop block: edits / any | route tables (RDS): count / bytes |`,
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  const f = (v: number) => v.toFixed(1);
  const breakdowns: string[] = [];
  for (const n of sizes) {
    const r = await hostScenario(n, rounds, options);
    lines.push(
      `| ${n} | ${r.chains} | ${r.matcherBytes} | ${r.listenerBytes} | ${f(r.cold.p50)} / ${f(r.coldCpu.p50)} ms (${f(r.first.cold)} / ${f(r.first.coldCpu)}) | ${f(r.ownEdit.p50)} / ${f(r.ownEditCpu.p50)} ms (${f(r.first.ownEdit)} / ${f(r.first.ownEditCpu)}) | ${f(r.sharedEdit.p50)} / ${f(r.sharedEditCpu.p50)} ms (${f(r.first.sharedEdit)} / ${f(r.first.sharedEditCpu)}) | ${r.ownDisturbed} / ${r.sharedDisturbed} | ${f(r.maxEditBlockMs)} / ${f(r.maxBlockMs)} ms | ${r.routeTables} / ${r.routeBytes} |`,
    );
    breakdowns.push(`${n} microVMs: ${r.breakdown}`);
  }
  return [...lines, '', 'Bytes by part (protobuf, first round):', '', ...breakdowns.map((b) => `- ${b}`)];
}
