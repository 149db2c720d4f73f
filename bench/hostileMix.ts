// (d) A hostile mix against the real control plane in its own process:
// healthy Envoys (SotW and Delta) measure how long a change takes to reach all
// of them (PUT sent → every healthy Envoy holds it), first quietly, then while
// 100 clients never read, flooders repeat their first request and Delta
// clients toggle a subscription, during 1,000 changes. The server's RSS is
// sampled throughout. The driver's own CPU (it decodes every response
// strictly, as the healthy Envoys) is reported beside.
import { Child } from './fanout.js';
import { shippedEnv, shippedEnvLine, shippedNodeFlags } from './shippedEnv.js';
import type { FanoutUsage } from './fanoutServer.js';
import type { FleetServerCommand } from './fleetServer.js';
import { TypeUrl } from '../src/envoy/typeUrls.js';
import { FakeEnvoy } from '../test/support/fakeEnvoy.js';
import { RawAdsConnection, deltaRequest, sotwRequest } from '../test/support/rawAdsClient.js';
import { summarize } from './stats.js';

const LDS = TypeUrl.Listener;
const CDS = TypeUrl.Cluster;
const MiB = 2 ** 20;

export interface HostileMixResult {
  readonly listenerKiB: number;
  readonly quiet: ReturnType<typeof summarize>;
  readonly hostile: ReturnType<typeof summarize>;
  readonly idleRssMiB: number;
  readonly peakRssMiB: number;
  readonly stuckReset: boolean;
  /** RSS / main V8 heap used / external, MiB, idle and at the peak. */
  readonly memory: { readonly idle: string; readonly peak: string };
  readonly driverCpuMs: number;
  readonly changes: number;
}

const breakdown = (u: FanoutUsage) => `${(u.rssBytes / MiB).toFixed(0)} / ${((u.heapUsedBytes ?? 0) / MiB).toFixed(0)} / ${((u.externalBytes ?? 0) / MiB).toFixed(0)}`;

const holds = (e: FakeEnvoy, k: number) => {
  const listener = e.state.get(LDS)?.get('egress_tproxy');
  return listener !== undefined && JSON.stringify(listener).includes(`"mix-${k}.example"`);
};

export async function hostileMix(options: { healthy: number; stuck: number; changes: number; extraNames: number; samples: number }): Promise<HostileMixResult> {
  const { child: srv, hello } = await Child.start<FleetServerCommand>('./fleetServer.js', ['0', String(options.extraNames), JSON.stringify({ stuckWriteMs: 10_000 })], shippedNodeFlags(), 30_000, shippedEnv());
  const address = `127.0.0.1:${String(hello.xdsPort)}`;
  const admin = `http://127.0.0.1:${String(hello.adminPort)}`;
  const envoys: FakeEnvoy[] = [];
  const connections: RawAdsConnection[] = [];
  const put = async (k: number, attempt = 0): Promise<void> => {
    // A keep-alive socket the server closes as it is reused fails the request before it is sent: retry once.
    const response = await fetch(`${admin}/v1/policies/mix`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ allow: { sni: [`mix-${k}.example`] } }) }).catch((error: unknown) => {
      if (attempt > 0) throw error;
      return undefined;
    });
    if (!response) return put(k, attempt + 1);
    await response.arrayBuffer();
    if (response.status !== 200) throw new Error(`PUT mix ${k}: ${response.status}`);
  };
  let peak = 0;
  /** At the RSS peak: the main thread's V8 heap and external memory (Buffers); the rest is native (HTTP/2, the compile worker's heap). */
  let peakUsage: FanoutUsage | undefined;
  const sampleRss = async () => {
    const usage = await srv.ask<FanoutUsage>({ usage: true });
    if (usage.rssBytes > peak) {
      peak = usage.rssBytes;
      peakUsage = usage;
    }
  };
  const converge = async (k: number): Promise<number> => {
    const t0 = performance.now();
    await put(k);
    await Promise.all(envoys.map((e) => e.waitFor(`change ${k}`, () => holds(e, k), 120_000)));
    return performance.now() - t0;
  };
  const cpu0 = process.cpuUsage();
  try {
    for (let i = 0; i < options.healthy; i++) envoys.push(new FakeEnvoy(address, { nodeId: `healthy-${i}`, variant: i % 5 === 4 ? 'delta' : 'sotw' }).connect());
    let k = 0;
    await converge(k++); // warm-up, and everyone connected
    const listenerKiB = (envoys[0]!.responsesOf(LDS).at(-1) ? JSON.stringify(envoys[0]!.state.get(LDS)!.get('egress_tproxy')).length : 0) / 1024;
    await sampleRss();
    const idleRss = peak;
    const idleUsage = peakUsage!;
    const quiet: number[] = [];
    for (let i = 0; i < options.samples; i++) quiet.push(await converge(k++));

    // The hostile clients.
    const stuck = [];
    for (let i = 0; i < options.stuck; i++) {
      const connection = new RawAdsConnection(address);
      connections.push(connection);
      const s = connection.open('sotw', { read: false });
      s.stream.write(sotwRequest({ node: { id: `stuck-${i}` }, typeUrl: CDS }));
      s.stream.write(sotwRequest({ node: { id: `stuck-${i}` }, typeUrl: LDS }));
      stuck.push(s);
    }
    for (let f = 0; f < 5; f++) {
      const connection = new RawAdsConnection(address);
      connections.push(connection);
      const s = connection.open('sotw', { read: true });
      for (let i = 0; i < 1500; i++) s.stream.write(sotwRequest({ node: { id: `flood-${f}` }, typeUrl: CDS }));
      const t = connection.open('delta', { read: true });
      t.stream.write(deltaRequest({ node: { id: `toggle-${f}` }, typeUrl: CDS }));
      for (let i = 0; i < 500; i++) {
        t.stream.write(deltaRequest({ typeUrl: CDS, resourceNamesUnsubscribe: ['original_dst_cluster'] }));
        t.stream.write(deltaRequest({ typeUrl: CDS, resourceNamesSubscribe: ['original_dst_cluster'] }));
      }
    }

    const hostile: number[] = [];
    const every = Math.max(1, Math.floor(options.changes / options.samples));
    for (let i = 1; i <= options.changes; i++) {
      if (i % every === 0) hostile.push(await converge(k++));
      else await put(k++);
      if (i % 50 === 0) await sampleRss();
    }
    await sampleRss();
    const cpu = process.cpuUsage(cpu0);
    return {
      listenerKiB,
      quiet: summarize(quiet),
      hostile: summarize(hostile),
      idleRssMiB: idleRss / MiB,
      peakRssMiB: peak / MiB,
      stuckReset: stuck.every((s) => s.status() !== 0),
      memory: { idle: breakdown(idleUsage), peak: breakdown(peakUsage!) },
      driverCpuMs: (cpu.user + cpu.system) / 1000,
      changes: options.changes,
    };
  } finally {
    for (const e of envoys) e.close();
    for (const c of connections) c.close();
    await srv.stop();
  }
}

export async function hostileMixTable(options = { healthy: 25, stuck: 100, changes: 1000, extraNames: 2000, samples: 10 }): Promise<string[]> {
  const r = await hostileMix(options);
  console.error(`hostile mix: server RSS / main heap / external MiB: idle ${r.memory.idle}, at the peak ${r.memory.peak}; stuck streams reset: ${String(r.stuckReset)}`);
  return [
    '| healthy Envoys | listener (ProtoJSON) | quiet: change → all healthy, p50 / p99 | hostile: p50 / p99 | ratio of p99s | server RSS idle → peak | driver CPU (whole run) |',
    '|---|---|---|---|---|---|---|',
    `| ${options.healthy} (1 in 5 Delta) | ${r.listenerKiB.toFixed(0)} KiB | ${r.quiet.p50.toFixed(0)} / ${r.quiet.p99.toFixed(0)} ms | ${r.hostile.p50.toFixed(0)} / ${r.hostile.p99.toFixed(0)} ms | ${(r.hostile.p99 / r.quiet.p99).toFixed(2)} | ${r.idleRssMiB.toFixed(0)} → ${r.peakRssMiB.toFixed(0)} MiB (+${(r.peakRssMiB - r.idleRssMiB).toFixed(0)}) | ${(r.driverCpuMs / 1000).toFixed(1)} s |`,
  ];
}

// Alone: node dist/bench/hostileMix.js [changes]
if (process.argv[1] === new URL(import.meta.url).pathname) {
  console.log(`server process: ${shippedEnvLine()}`);
  for (const line of await hostileMixTable({ healthy: 25, stuck: 100, changes: Number(process.argv[2] ?? 1000), extraNames: 2000, samples: 10 })) console.log(line);
}
