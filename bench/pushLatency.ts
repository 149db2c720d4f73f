// From the admin API's 200 to the new Listener arriving at every connected
// Envoy, with N Envoys (SotW) connected to a control plane in another process.
import { spawn } from 'node:child_process';
import { shippedEnv, shippedNodeFlags } from './shippedEnv.js';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { rm } from 'node:fs/promises';
import { TypeUrl } from '../src/envoy/typeUrls.js';
import { FakeEnvoy } from '../test/support/fakeEnvoy.js';
import { summarize } from './stats.js';

export interface PushLatencyResult {
  readonly nodes: number;
  readonly changes: number;
  /** Per (change, node): ms from the 200 to the Listener's arrival (0 when it arrived first). */
  readonly latency: ReturnType<typeof summarize>;
  /** Per change: ms from the 200 until the last node had it. */
  readonly allNodes: ReturnType<typeof summarize>;
  readonly serverRssMiB: number;
  /** Share of (change, node) pairs where the Listener arrived before the 200. */
  readonly beforeOk: number;
  /** Server side, from egress_xds_push_latency_seconds: the bucket bound under which 99% of pushes were written. */
  readonly serverP99BucketMs: number;
}

/** The upper bound of the histogram bucket that holds the given quantile. */
function histogramQuantileBound(metrics: string, name: string, labels: string, quantile: number): number {
  const buckets = [...metrics.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)",${labels}\\} (\\d+)`, 'gm'))].map((m) => ({ le: Number(m[1]), count: Number(m[2]) }));
  const total = buckets.at(-1)?.count ?? 0;
  return (buckets.find((b) => b.count >= quantile * total)?.le ?? NaN) * 1000;
}

export async function pushLatency(options: { nodes: number; changes: number; warmup: number }): Promise<PushLatencyResult> {
  const child = spawn(process.execPath, [...shippedNodeFlags(), fileURLToPath(new URL('./serverProcess.js', import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'], env: shippedEnv() });
  const ports = await new Promise<{ xds: number; admin: number; dataDir: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start in 10 s')), 10_000);
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      resolve(JSON.parse(line));
    });
  });
  const envoys: FakeEnvoy[] = [];
  try {
    for (let i = 0; i < options.nodes; i++) envoys.push(new FakeEnvoy(`127.0.0.1:${ports.xds}`, { nodeId: `bench-${i}` }).connect());
    await Promise.all(envoys.map((e) => e.waitFor('initial listener', () => e.state.has(TypeUrl.Listener), 30_000)));

    const perNode: number[] = [];
    let early = 0;
    const perChange: number[] = [];
    for (let change = 0; change < options.warmup + options.changes; change++) {
      const before = envoys.map((e) => e.responsesOf(TypeUrl.Listener).length);
      const body = JSON.stringify({ allow: { sni: [`host-${change}.bench.example`] } });
      const response = await fetch(`http://127.0.0.1:${ports.admin}/v1/policies/bench`, { method: 'PUT', body, headers: { 'content-type': 'application/json' } });
      const okAt = process.hrtime.bigint();
      if (response.status !== 200) throw new Error(`PUT answered ${response.status}: ${await response.text()}`);
      await response.arrayBuffer();
      await Promise.all(envoys.map((e, i) => e.waitFor('pushed listener', () => e.responsesOf(TypeUrl.Listener).length > before[i]!, 10_000)));
      if (change < options.warmup) continue;
      const arrivals = envoys.map((e, i) => Number(e.responsesOf(TypeUrl.Listener)[before[i]!]!.at - okAt) / 1e6);
      perNode.push(...arrivals.map((a) => Math.max(0, a)));
      early += arrivals.filter((a) => a < 0).length;
      perChange.push(Math.max(0, ...arrivals));
    }
    const rss = Number(/^VmRSS:\s+(\d+)/m.exec(await import('node:fs/promises').then((fs) => fs.readFile(`/proc/${child.pid}/status`, 'utf8')))?.[1] ?? NaN) / 1024;
    const metrics = await (await fetch(`http://127.0.0.1:${ports.admin}/metrics`)).text();
    return {
      nodes: options.nodes,
      changes: options.changes,
      latency: summarize(perNode),
      allNodes: summarize(perChange),
      serverRssMiB: rss,
      beforeOk: early / perNode.length,
      serverP99BucketMs: histogramQuantileBound(metrics, 'egress_xds_push_latency_seconds', 'type="Listener"', 0.99),
    };
  } finally {
    for (const e of envoys) e.close();
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
    await rm(ports.dataDir, { recursive: true, force: true });
  }
}
