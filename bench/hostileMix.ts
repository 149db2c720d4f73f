// (d) A hostile mix against the real control plane in its own process:
// healthy Envoys (SotW and Delta) measure how long a change takes to reach all
// of them (PUT sent → every healthy Envoy holds it), first quietly, then while
// 100 clients never read, flooders repeat their first request and Delta
// clients toggle a subscription, during 1,000 changes. The server's RSS is
// sampled throughout. The driver's own CPU (it decodes every response
// strictly, as the healthy Envoys) is reported beside, and the server's CPU per
// change.
//
// The hostile clients run in a child process of their own at a lower priority
// (bench/hostileClients.ts says why); hostileIn: 'driver' runs them in the
// driver, as the figures before 2026-12-01 15:30 were measured. The driver waits
// for a change on the healthy Envoys' events (each response), not by polling,
// and looks at each received listener once: it measures the server, not itself.
import { loadavg } from 'node:os';
import { Child } from './fanout.js';
import { shippedEnv, shippedEnvLine, shippedNodeFlags } from './shippedEnv.js';
import type { FanoutUsage } from './fanoutServer.js';
import type { FleetServerCommand } from './fleetServer.js';
import { TypeUrl } from '../src/envoy/typeUrls.js';
import { FakeEnvoy } from '../test/support/fakeEnvoy.js';
import { HostileClients, type HostileClientsCommand, type HostileClientsStatus } from './hostileClients.js';
import { summarize } from './stats.js';

const LDS = TypeUrl.Listener;
const MiB = 2 ** 20;
const STUCK_WRITE_MS = 10_000;

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
  /** CPU of the hostile clients' process (0 when they run in the driver). */
  readonly hostileCpuMs: number;
  /** Server CPU of the whole run, ms. */
  readonly serverCpuMs: number;
  readonly changes: number;
  readonly hostileIn: 'child' | 'driver' | 'none';
  readonly quietSamples: readonly Sample[];
  readonly hostileSamples: readonly Sample[];
  /** Pushes (applies) the server made for the hostile phase's changes. */
  readonly hostileApplies: number;
  /** Compiles the server gave up in the hostile phase, overtaken by a newer change (src/snapshot/pushScheduler.ts). */
  readonly hostileSuperseded: number;
  readonly loadAverage: { readonly start: number; readonly end: number };
}

const breakdown = (u: FanoutUsage) => `${(u.rssBytes / MiB).toFixed(0)} / ${((u.heapUsedBytes ?? 0) / MiB).toFixed(0)} / ${((u.externalBytes ?? 0) / MiB).toFixed(0)}`;

/**
 * A received listener's ProtoJSON as text, made once per listener object (each response
 * makes new ones): the wait checks it on every response of ten Envoys, and a 381 KiB
 * JSON.stringify per check was what the driver spent its CPU on.
 */
const listenerText = new WeakMap<object, string>();
const holds = (e: FakeEnvoy, k: number) => {
  const listener = e.state.get(LDS)?.get('egress_tproxy');
  if (listener === undefined) return false;
  let text = listenerText.get(listener);
  if (text === undefined) listenerText.set(listener, (text = JSON.stringify(listener)));
  return text.includes(`"mix-${k}.example"`);
};

const cpuMicros = () => {
  const cpu = process.cpuUsage();
  return cpu.user + cpu.system;
};

interface Sample {
  readonly ms: number;
  /** Server CPU (all its threads) and driver CPU during the sample, ms. */
  readonly serverCpuMs: number;
  readonly driverCpuMs: number;
  /** The most listener responses one healthy Envoy received until it held the change (1: only its own). */
  readonly listenerResponses: number;
}

export interface HostileMixOptions {
  readonly healthy: number;
  readonly stuck: number;
  readonly changes: number;
  readonly extraNames: number;
  readonly samples: number;
  /**
   * Where the hostile clients run: a child process at lower priority (default), or the driver
   * (as before); 'none': the hostile phase is its changes alone, to tell what the stream of
   * changes costs the healthy Envoys from what the hostile clients add.
   */
  readonly hostileIn?: 'child' | 'driver' | 'none';
}

export async function hostileMix(options: HostileMixOptions): Promise<HostileMixResult> {
  const hostileIn = options.hostileIn ?? 'child';
  const load0 = loadavg()[0]!;
  const { child: srv, hello } = await Child.start<FleetServerCommand>('./fleetServer.js', ['0', String(options.extraNames), JSON.stringify({ stuckWriteMs: STUCK_WRITE_MS })], shippedNodeFlags(), 30_000, shippedEnv());
  const address = `127.0.0.1:${String(hello.xdsPort)}`;
  const admin = `http://127.0.0.1:${String(hello.adminPort)}`;
  const envoys: FakeEnvoy[] = [];
  let hostileHere: HostileClients | undefined;
  let hostileChild: Child<HostileClientsCommand> | undefined;
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
  const serverCpu = async () => (await srv.ask<FanoutUsage>({ usage: true })).cpuMicros;
  // A fake Envoy keeps every response it received, each with its decoded resources (a 132 KiB
  // listener is megabytes of ProtoJSON objects): over hundreds of pushes the driver's heap grew
  // by gigabytes and its major collections took seconds inside measured changes (one sample of
  // 7.8 s with 5.8 s of driver CPU). What it holds now (state) is all the wait looks at.
  const forgetResponses = () => {
    for (const e of envoys) e.responses.splice(0, e.responses.length);
  };
  const converge = async (k: number): Promise<Sample> => {
    forgetResponses();
    const s0 = await serverCpu();
    const d0 = cpuMicros();
    const listeners0 = envoys.map((e) => e.responses.length);
    const t0 = performance.now();
    await put(k);
    await Promise.all(envoys.map((e) => e.waitFor(`change ${k}`, () => holds(e, k), 120_000, { poll: false })));
    const ms = performance.now() - t0;
    const driverCpuMs = (cpuMicros() - d0) / 1000;
    // Listener responses an Envoy took until it held change k: 1 is k's own; more are older versions it had to decode and ACK first.
    const listenerResponses = Math.max(...envoys.map((e, i) => e.responses.slice(listeners0[i]).filter((r) => r.typeUrl === LDS).length));
    return { ms, serverCpuMs: ((await serverCpu()) - s0) / 1000, driverCpuMs, listenerResponses };
  };
  const cpu0 = process.cpuUsage();
  const server0 = hello.usage as FanoutUsage;
  try {
    for (let i = 0; i < options.healthy; i++) envoys.push(new FakeEnvoy(address, { nodeId: `healthy-${i}`, variant: i % 5 === 4 ? 'delta' : 'sotw' }).connect());
    let k = 0;
    await converge(k++); // warm-up, and everyone connected
    const listenerKiB = (envoys[0]!.responsesOf(LDS).at(-1) ? JSON.stringify(envoys[0]!.state.get(LDS)!.get('egress_tproxy')).length : 0) / 1024;
    await sampleRss();
    const idleRss = peak;
    const idleUsage = peakUsage!;
    const quiet: Sample[] = [];
    for (let i = 0; i < options.samples; i++) quiet.push(await converge(k++));

    // The hostile clients.
    const spec = { address, stuck: options.stuck, flooders: 5, floodRequests: 1500, toggles: 1000 };
    if (hostileIn === 'driver') hostileHere = new HostileClients(spec);
    else if (hostileIn === 'child') {
      ({ child: hostileChild } = await Child.start<HostileClientsCommand>('./hostileClients.js', []));
      await hostileChild.ask({ start: spec });
    }
    const before = await srv.ask<{ applies: number; superseded: number }>({ usage: true });
    const hostile: Sample[] = [];
    const every = Math.max(1, Math.floor(options.changes / options.samples));
    for (let i = 1; i <= options.changes; i++) {
      if (i % every === 0) hostile.push(await converge(k++));
      else {
        if (i % 10 === 0) forgetResponses();
        await put(k++);
      }
      if (i % 50 === 0) await sampleRss();
    }
    // The stuck streams are reset stuckWriteMs (10 s) after their last progress: the run
    // waits for it (bounded), still sampling RSS, so the report says whether they were.
    const resetBy = performance.now() + STUCK_WRITE_MS + 20_000;
    const stuckReset = async () => (hostileChild ? (await hostileChild.ask<HostileClientsStatus>({ status: true })).stuckReset : (hostileHere?.stuckReset() ?? true));
    while (!(await stuckReset()) && performance.now() < resetBy) {
      await sampleRss();
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    await sampleRss();
    const end = await srv.ask<FanoutUsage & { applies: number; superseded: number }>({ usage: true });
    const cpu = process.cpuUsage(cpu0);
    const hostileStatus = hostileChild ? await hostileChild.ask<HostileClientsStatus>({ status: true }) : { stuckReset: hostileHere?.stuckReset() ?? true, cpuMicros: 0 };
    const ms = (samples: Sample[]) => samples.map((x) => x.ms);
    return {
      listenerKiB,
      quiet: summarize(ms(quiet)),
      hostile: summarize(ms(hostile)),
      idleRssMiB: idleRss / MiB,
      peakRssMiB: peak / MiB,
      stuckReset: hostileStatus.stuckReset,
      memory: { idle: breakdown(idleUsage), peak: breakdown(peakUsage!) },
      driverCpuMs: (cpu.user + cpu.system) / 1000,
      hostileCpuMs: hostileStatus.cpuMicros / 1000,
      serverCpuMs: (end.cpuMicros - server0.cpuMicros) / 1000,
      changes: options.changes,
      hostileIn,
      quietSamples: quiet,
      hostileSamples: hostile,
      hostileApplies: end.applies - before.applies,
      hostileSuperseded: end.superseded - before.superseded,
      loadAverage: { start: load0, end: loadavg()[0]! },
    };
  } finally {
    for (const e of envoys) e.close();
    hostileHere?.close();
    await hostileChild?.stop();
    await srv.stop();
  }
}

const perSample = (samples: readonly Sample[]) => samples.map((x) => `${x.ms.toFixed(0)} ms (server ${x.serverCpuMs.toFixed(0)}, driver ${x.driverCpuMs.toFixed(0)} ms CPU; ${x.listenerResponses} LDS)`).join(', ');

export async function hostileMixTable(options: HostileMixOptions = { healthy: 25, stuck: 100, changes: 1000, extraNames: 2000, samples: 10 }): Promise<string[]> {
  const r = await hostileMix(options);
  console.error(`hostile mix (hostile clients in ${r.hostileIn}): server RSS / main heap / external MiB: idle ${r.memory.idle}, at the peak ${r.memory.peak}; stuck streams reset: ${String(r.stuckReset)}`);
  console.error(`  quiet samples: ${perSample(r.quietSamples)}`);
  console.error(`  hostile samples: ${perSample(r.hostileSamples)}`);
  console.error(`  hostile phase: ${r.changes} changes in ${r.hostileApplies} pushes (${r.hostileSuperseded} compiles superseded, not pushed); server CPU whole run ${(r.serverCpuMs / 1000).toFixed(1)} s; hostile clients' CPU ${(r.hostileCpuMs / 1000).toFixed(1)} s; load average ${r.loadAverage.start.toFixed(2)} → ${r.loadAverage.end.toFixed(2)}`);
  const median = (samples: readonly Sample[], key: 'serverCpuMs' | 'driverCpuMs') => [...samples.map((x) => x[key])].sort((a, b) => a - b)[Math.floor(samples.length / 2)]!;
  return [
    '| healthy Envoys | hostile clients in | listener (ProtoJSON) | quiet: change → all healthy, p50 / p99 | hostile: p50 / p99 | ratio of p99s | server CPU per measured change, median quiet / hostile | server RSS idle → peak | driver CPU (whole run) | hostile clients CPU | server CPU (whole run) |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    `| ${options.healthy} (1 in 5 Delta) | ${{ child: 'a child, nice +10', driver: 'the driver', none: 'none (changes only)' }[r.hostileIn]} | ${r.listenerKiB.toFixed(0)} KiB | ${r.quiet.p50.toFixed(0)} / ${r.quiet.p99.toFixed(0)} ms | ${r.hostile.p50.toFixed(0)} / ${r.hostile.p99.toFixed(0)} ms | ${(r.hostile.p99 / r.quiet.p99).toFixed(2)} | ${median(r.quietSamples, 'serverCpuMs').toFixed(0)} / ${median(r.hostileSamples, 'serverCpuMs').toFixed(0)} ms | ${r.idleRssMiB.toFixed(0)} → ${r.peakRssMiB.toFixed(0)} MiB (+${(r.peakRssMiB - r.idleRssMiB).toFixed(0)}) | ${(r.driverCpuMs / 1000).toFixed(1)} s | ${(r.hostileCpuMs / 1000).toFixed(1)} s | ${(r.serverCpuMs / 1000).toFixed(1)} s |`,
  ];
}

// Alone: node dist/bench/hostileMix.js [changes] [child|driver|none]
if (process.argv[1] === new URL(import.meta.url).pathname) {
  console.log(`server process: ${shippedEnvLine()}`);
  const hostileIn = process.argv[3] === 'driver' || process.argv[3] === 'none' ? process.argv[3] : 'child';
  for (const line of await hostileMixTable({ healthy: 25, stuck: 100, changes: Number(process.argv[2] ?? 1000), extraNames: 2000, samples: 10, hostileIn })) console.log(line);
}
