// One edit's path through the snapshot layer, in process, without the admin API, the store
// and gRPC around it (bench/hostServer.ts measures those too, with a client): the host's
// group held by a SnapshotCache, an edit applied through a compile pool (one worker, as on
// this 2-core machine), and the shared Listener response built as the first stream asks for
// it. Per edit: the process's CPU (both threads), the wall time, and the main thread's
// longest event-loop block. What this path allocates and copies on the main thread is what
// src/snapshot and src/xds decide; what the worker spends is mostly src/compile's.
//   node dist/bench/editPath.js [microVMs] [rounds]
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { TypeUrl } from '../src/envoy/typeUrls.js';
import { SnapshotCache } from '../src/snapshot/cache.js';
import { CompilePool, resourceStats } from '../src/snapshot/compilePool.js';
import { egressGroupCompiler } from '../src/snapshot/egressGroups.js';
import { sharedSotwResponse } from '../src/xds/wire.js';
import { hostPolicies, withExtraName } from './hostScenario.js';
import { summarize } from './stats.js';

interface Sample {
  cpuMs: number;
  /** The main thread's active (not idle) time in the event loop: what the edit cost the thread that serves Envoys. */
  mainMs: number;
  wallMs: number;
  maxBlockMs: number;
}

export interface EditPathResult {
  own: Sample[];
  shared: Sample[];
  /** Requests a worker had to answer again with bytes (a reference the pool could not resolve). */
  fullRequests: number;
}

export async function editPath(microVms: number, rounds: number): Promise<EditPathResult> {
  const pool = new CompilePool({}, 1, { warmup: true });
  const cache = new SnapshotCache(egressGroupCompiler());
  cache.useBuilder(pool.build);
  const base = hostPolicies(microVms);
  const delay = monitorEventLoopDelay({ resolution: 1 });
  try {
    await cache.applyChanges(new Map(base.map((p) => [p.name, p])), pool.build);
    const unwatch = cache.watch('host-0', () => {});
    for (let i = 0; i < 600 && !cache.currentSnapshot('host-0'); i++) await new Promise((resolve) => setTimeout(resolve, 50));
    const listenerResponse = () => sharedSotwResponse(TypeUrl.Listener, cache.currentSnapshot('host-0')!.resourceSet(TypeUrl.Listener)!);
    listenerResponse();
    delay.enable();
    const result: EditPathResult = { own: [], shared: [], fullRequests: 0 };
    const fullBefore = resourceStats.fullRequests;
    for (let r = 0; r < rounds; r++) {
      for (const [kind, name] of [['own', 'vm-00001'], ['shared', 'common-deps']] as const) {
        const policy = withExtraName(base, name, `${kind}${r}.example.com`).find((p) => p.name === name)!;
        await new Promise((resolve) => setTimeout(resolve, 30));
        delay.reset();
        const cpu = process.cpuUsage();
        const elu = performance.eventLoopUtilization();
        const start = performance.now();
        await cache.applyChanges(new Map([[name, policy]]), pool.build);
        listenerResponse();
        const used = process.cpuUsage(cpu);
        const wallMs = performance.now() - start;
        // The block of the last step is recorded at the next turn.
        await new Promise((resolve) => setTimeout(resolve, 5));
        const mainMs = performance.eventLoopUtilization(elu).active;
        result[kind].push({ cpuMs: (used.user + used.system) / 1000, mainMs, wallMs, maxBlockMs: delay.max / 1e6 });
      }
    }
    result.fullRequests = resourceStats.fullRequests - fullBefore;
    unwatch();
    return result;
  } finally {
    delay.disable();
    await pool.close();
  }
}

export async function editPathTable(microVms: number, rounds: number): Promise<string[]> {
  const r = await editPath(microVms, rounds);
  // The first two rounds warm the compiler's memos and the JIT.
  const row = (list: Sample[]) => {
    const kept = list.slice(Math.min(2, list.length - 1));
    const f = (v: number) => v.toFixed(1);
    const cpu = summarize(kept.map((s) => s.cpuMs));
    const wall = summarize(kept.map((s) => s.wallMs));
    const block = summarize(kept.map((s) => s.maxBlockMs));
    const main = summarize(kept.map((s) => s.mainMs));
    return `${f(cpu.p50)} / ${f(main.p50)} / ${f(wall.p50)} / ${f(block.p50)} ms (max block ${f(block.max)} ms)`;
  };
  return [
    '| microVMs | one microVM gains a name: CPU / main thread active / wall / max block (p50) | the shared policy gains a name: CPU / main thread active / wall / max block (p50) | references answered again with bytes |',
    '|---|---|---|---|',
    `| ${microVms} | ${row(r.own)} | ${row(r.shared)} | ${r.fullRequests} |`,
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { rerunWithShippedEnv, shippedEnvLine } = await import('./shippedEnv.js');
  rerunWithShippedEnv();
  console.log(shippedEnvLine(process.env));
  for (const line of await editPathTable(Number(process.argv[2] ?? 1000), Number(process.argv[3] ?? 10))) console.log(line);
}
