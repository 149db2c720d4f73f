// One host's full recompile (every compile cache dropped: a restart, a change of options),
// in process, by phase: compile, the port-80 route tables encoded, the listener encoded.
// Prints the first round (JIT-cold) and the p50 of the rounds after it, wall and CPU, and
// what one round allocates (V8's sampling heap profiler, collected objects included).
//   node dist/bench/coldCompile.js [microVMs=1000] [rounds=15] [edit]
// With "edit": one name added to one microVM's policy instead of a cold compile.
import { Session } from 'node:inspector/promises';
import { compileEgress } from '../src/compile/index.js';
import { resetChainCache } from '../src/compile/hardenedListener.js';
import { resetCompileCaches } from '../src/compile/hardenedMatcher.js';
import { encodeListener } from '../src/compile/encodeListener.js';
import { encodeResource } from '../src/snapshot/encodedResource.js';
import { TypeUrl } from '../src/envoy/typeUrls.js';
import { hostPolicies, withExtraName } from './hostScenario.js';
import { summarize } from './stats.js';

const microVms = Number(process.argv[2] ?? 1000);
const rounds = Math.max(2, Number(process.argv[3] ?? 15));
const edit = process.argv[4] === 'edit';
const base = hostPolicies(microVms);
const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/** One round: [compile, routes, listener] as [wall, cpu] pairs. */
function round(r: number): number[] {
  let policies = base;
  if (edit) {
    compileEgress(base);
    policies = withExtraName(base, 'vm-00001', `edit${r}.example.com`);
  } else {
    resetCompileCaches();
    resetChainCache();
  }
  const out: number[] = [];
  let t = performance.now();
  let c = cpuNow();
  const lap = () => {
    const t2 = performance.now();
    const c2 = cpuNow();
    out.push(t2 - t, c2 - c);
    t = t2;
    c = c2;
  };
  const compiled = compileEgress(policies);
  lap();
  for (const route of compiled.routes ?? []) encodeResource(TypeUrl.RouteConfiguration, route.name!, route as unknown as Record<string, unknown>);
  lap();
  encodeListener(compiled.listeners[0]!);
  lap();
  return out;
}

const results = Array.from({ length: rounds }, (_, r) => round(r));
const f = (v: number) => v.toFixed(1);
const phases = ['compile', 'route tables', 'listener'];
console.log(`${microVms} microVMs × 20 names, ${edit ? 'one name added to one microVM' : 'cold'}: wall / CPU ms, p50 of rounds 2–${rounds} (round 1)`);
phases.forEach((phase, i) => {
  const wall = summarize(results.slice(1).map((r) => r[2 * i]!)).p50;
  const cpu = summarize(results.slice(1).map((r) => r[2 * i + 1]!)).p50;
  console.log(`  ${phase}: ${f(wall)} / ${f(cpu)} (${f(results[0]![2 * i]!)} / ${f(results[0]![2 * i + 1]!)})`);
});
const totals = results.map((r) => [r[0]! + r[2]! + r[4]!, r[1]! + r[3]! + r[5]!]);
console.log(`  total: ${f(summarize(totals.slice(1).map((t) => t[0]!)).p50)} / ${f(summarize(totals.slice(1).map((t) => t[1]!)).p50)} (${f(totals[0]![0]!)} / ${f(totals[0]![1]!)})`);

// Allocation: everything a round allocates, garbage included.
const session = new Session();
session.connect();
await session.post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
const sampled = 4;
for (let r = 0; r < sampled; r++) round(rounds + r);
const { profile } = await session.post('HeapProfiler.stopSampling');
type Node = { selfSize: number; children: Node[] };
const sum = (node: Node): number => node.selfSize + node.children.reduce((total, child) => total + sum(child), 0);
console.log(`  allocated per round: ${(sum(profile.head as unknown as Node) / 1e6 / sampled).toFixed(1)} MB`);
session.disconnect();
