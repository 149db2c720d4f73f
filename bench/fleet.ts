// A fleet: N hosts connected (one SotW stream each, node id host-i), each
// with its own policy, plus one global policy. Measures what one host's
// change costs (server CPU from the PUT until the host has its Listener and
// every commit is pushed; the PUT's latency) and what a global change costs
// (every host's Listener: converge p99; server CPU). Server, load client and
// this driver are three processes; the load client's CPU is reported beside.
import { Child } from './fanout.js';
import { shippedEnv, shippedEnvLine, shippedNodeFlags } from './shippedEnv.js';
import type { AwaitResult, FanoutClientCommand } from './fanoutClient.js';
import type { FanoutUsage } from './fanoutServer.js';
import type { FleetServerCommand } from './fleetServer.js';
import { globalSpec, hostSpec } from './fleetSpecs.js';
import { summarize } from './stats.js';
import { overlapping, type TraceEvent } from './mainThreadTrace.js';

export interface FleetResult {
  readonly hosts: number;
  readonly connectS: number;
  /** The host PUT's latency at the driver (fetch until the body is read). */
  readonly hostPutMs: ReturnType<typeof summarize>;
  /** The same PUTs in the server: request received → response finished (node's http diagnostics channels). */
  readonly hostServerMs: ReturnType<typeof summarize>;
  /** The server main thread's collections while the host changes ran. */
  readonly hostGc: GcSummary;
  /** PUTs of a policy selecting no connected node, every PROBE_MS while a global change is pushed: at the driver, in the server. */
  readonly probePutMs: ReturnType<typeof summarize>;
  readonly probeServerMs: ReturnType<typeof summarize>;
  readonly globalGc: GcSummary;
  /** Server CPU ms per host change: median, and the largest. */
  readonly hostCpuMs: { median: number; max: number };
  readonly hostClientCpuMs: number;
  readonly globalConverge: ReturnType<typeof summarize>;
  readonly globalConvergeP99s: number[];
  readonly globalCpuMs: number[];
  readonly globalClientCpuMs: number[];
  readonly rssMiB: number;
}

const PROBE_MS = 250;
const wallNow = (): number => performance.timeOrigin + performance.now();

interface GcSummary {
  readonly scavenges: number;
  readonly markCompacts: number;
  /** Longest pause of each kind, ms. */
  readonly maxScavengeMs: number;
  readonly maxMarkCompactMs: number;
}

function gcSummary(events: readonly TraceEvent[]): GcSummary {
  const of = (what: string) => events.filter((e) => e.what === what).map((e) => e.ms);
  const scavenges = of('gc:scavenge');
  const marks = of('gc:mark-compact');
  return { scavenges: scavenges.length, markCompacts: marks.length, maxScavengeMs: Math.max(0, ...scavenges), maxMarkCompactMs: Math.max(0, ...marks) };
}

/** For each window (a request the driver made), the server's time for the admin request inside it. */
function serverTimes(events: readonly TraceEvent[], windows: readonly { from: number; to: number }[]): number[] {
  const http = events.filter((e) => e.what === 'http');
  // The two processes' wall clocks agree to well under a millisecond; 5 ms of slack, and the best overlap wins.
  const overlap = (e: TraceEvent, from: number, to: number) => Math.min(e.at + e.ms, to + 5) - Math.max(e.at, from - 5);
  return windows.flatMap(({ from, to }) => {
    const best = http.filter((e) => overlap(e, from, to) > 0).sort((a, b) => overlap(b, from, to) - overlap(a, from, to))[0];
    return best ? [best.ms] : [];
  });
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function put(adminPort: number, name: string, spec: unknown): Promise<number> {
  const t0 = performance.now();
  const response = await fetch(`http://127.0.0.1:${adminPort}/v1/policies/${name}`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(spec) });
  await response.arrayBuffer();
  if (response.status !== 200) throw new Error(`PUT ${name}: ${response.status}`);
  return performance.now() - t0;
}

export async function fleet(hosts: number, hostChanges: number, globalChanges: number): Promise<FleetResult> {
  // FLEET_CPU_PROF=DIR: the server writes a V8 CPU profile there (node --cpu-prof).
  const profile = process.env.FLEET_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.FLEET_CPU_PROF}`] : [];
  // FLEET_NODE_ARGS: more node flags for the server (e.g. --trace-gc).
  profile.push(...(process.env.FLEET_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== ''));
  const { child: srv, hello } = await Child.start<FleetServerCommand>('./fleetServer.js', [String(hosts)], [...shippedNodeFlags(), ...profile], 600_000, shippedEnv());
  const { child: load } = await Child.start<FanoutClientCommand>('./fanoutClient.js', []);
  const adminPort = hello.adminPort as number;
  try {
    const c0 = performance.now();
    const connected = await load.ask<{ reconnects: Record<string, number> }>({ connect: { address: `127.0.0.1:${String(hello.xdsPort)}`, streams: hosts, perConnection: 1, nodePrefix: 'host-' } });
    const connectS = (performance.now() - c0) / 1000;
    // Connections the load client had to open again during the connect storm (see fanoutClient.ts), by cause.
    console.error(`fleet ${hosts}: all connected in ${connectS.toFixed(1)} s; reopened: ${JSON.stringify(connected.reconnects)}`);
    await srv.ask({ idle: true });

    // The driver's first fetch() loads and compiles node's HTTP client (~40 ms of this process's
    // CPU idle, far more under load): paid here, not by the first PUT measured.
    await fetch(`http://127.0.0.1:${adminPort}/healthz`).then((response) => response.arrayBuffer());
    await srv.ask({ trace: true }); // the server's main-thread record, from here on
    const putMs: number[] = [];
    /** Each host PUT's window on the wall clock, to line up with the server's record. */
    const putWindows: { from: number; to: number }[] = [];
    const hostCpu: number[] = [];
    const hostClient: number[] = [];
    for (let k = 0; k < hostChanges; k++) {
      const i = Math.floor(((k + 0.5) * hosts) / hostChanges);
      await load.ask({ mark: true });
      const before = await srv.ask<FanoutUsage>({ usage: true });
      const t0 = process.hrtime.bigint();
      const from = wallNow();
      putMs.push(await put(adminPort, `host-${i}`, hostSpec(i, `b${k}`)));
      putWindows.push({ from, to: wallNow() });
      if (process.env.FLEET_CPU_PROF) console.error(`fleet ${hosts}: host PUT ${k} profile window ${t0 / 1000n} ${process.hrtime.bigint() / 1000n}`);
      const result = await load.ask<AwaitResult>({ awaitMore: { more: 1, t0: t0.toString(), timeoutMs: 60_000, only: [i] } });
      await srv.ask({ idle: true });
      const after = await srv.ask<FanoutUsage>({ usage: true });
      hostCpu.push((after.cpuMicros - before.cpuMicros) / 1000);
      hostClient.push(result.clientCpuMicros / 1000);
    }
    // FLEET_HEAP_SNAPSHOT=FILE (diagnosis): the server's main-thread heap after the host changes (bench/heapSummary.ts reads it).
    if (process.env.FLEET_HEAP_SNAPSHOT) console.error(`fleet ${hosts}: heap snapshot ${(await srv.ask<{ path: string }>({ heapSnapshot: process.env.FLEET_HEAP_SNAPSHOT })).path}`);
    const hostEvents = (await srv.ask<{ events: TraceEvent[] }>({ trace: true })).events;
    const hostServerMs = serverTimes(hostEvents, putWindows);
    const hostGc = gcSummary(hostEvents);
    if (process.env.FLEET_TRACE === '1') {
      putWindows.forEach(({ from, to }, k) => console.error(`fleet ${hosts}: PUT ${k} ${(to - from).toFixed(1)} ms: ${overlapping(hostEvents, from, to)}`));
      const outside = hostEvents.filter((e) => !putWindows.some(({ from, to }) => e.at <= to && e.at + e.ms >= from));
      console.error(`fleet ${hosts}: between the PUTs: ${overlapping(outside, 0, Infinity)}`);
    }

    const converge: number[] = [];
    const convergeP99s: number[] = [];
    const globalCpu: number[] = [];
    const globalClient: number[] = [];
    // While each global change is pushed: a PUT every PROBE_MS of a policy that selects no
    // connected node, to show whether the admin API waits behind the push.
    const probeMs: number[] = [];
    const probeWindows: { from: number; to: number }[] = [];
    let probes = 0;
    for (let g = 0; g < globalChanges; g++) {
      await load.ask({ mark: true });
      const before = await srv.ask<FanoutUsage>({ usage: true });
      const t0 = process.hrtime.bigint();
      await put(adminPort, 'global', globalSpec(`g${g}`));
      let pushing = true;
      const prober = (async () => {
        while (pushing) {
          await new Promise((r) => setTimeout(r, PROBE_MS));
          if (!pushing) break;
          const from = wallNow();
          probeMs.push(await put(adminPort, 'probe', { nodes: ['not-connected'], sources: ['10.255.255.0/30'], allow: { sni: [`p${probes++}.example.com`] } }));
          probeWindows.push({ from, to: wallNow() });
        }
      })();
      const result = await load.ask<AwaitResult>({ awaitMore: { more: 1, t0: t0.toString(), timeoutMs: 300_000 } });
      pushing = false;
      await prober;
      await srv.ask({ idle: true });
      await new Promise((r) => setTimeout(r, 300)); // the ACKs
      const after = await srv.ask<FanoutUsage>({ usage: true });
      // With a profile: the change's window on the monotonic clock V8's profiles use (µs), to cut it out of them.
      if (process.env.FLEET_CPU_PROF) console.error(`fleet ${hosts}: global change ${g} profile window ${t0 / 1000n} ${process.hrtime.bigint() / 1000n}`);
      converge.push(...result.arrivalsMs);
      convergeP99s.push(summarize(result.arrivalsMs).p99);
      globalCpu.push((after.cpuMicros - before.cpuMicros) / 1000);
      globalClient.push(result.clientCpuMicros / 1000);
    }
    const globalEvents = (await srv.ask<{ events: TraceEvent[] }>({ trace: true })).events;
    const probeServerMs = serverTimes(globalEvents, probeWindows);
    const globalGc = gcSummary(globalEvents);
    if (process.env.FLEET_TRACE === '1') {
      probeWindows.forEach(({ from, to }, k) => {
        if (to - from > 50) console.error(`fleet ${hosts}: probe PUT ${k} ${(to - from).toFixed(1)} ms: ${overlapping(globalEvents, from, to)}`);
      });
      console.error(`fleet ${hosts}: during the global changes: ${overlapping(globalEvents, 0, Infinity)}`);
    }
    const last = await srv.ask<FanoutUsage & { heapUsedBytes: number; externalBytes: number }>({ usage: true });
    console.error(`fleet ${hosts}: server main thread heap ${(last.heapUsedBytes / 2 ** 20).toFixed(0)} MiB, external ${(last.externalBytes / 2 ** 20).toFixed(0)} MiB, RSS ${(last.rssBytes / 2 ** 20).toFixed(0)} MiB`);
    return {
      hosts,
      connectS,
      hostPutMs: summarize(putMs),
      hostServerMs: summarize(hostServerMs),
      hostGc,
      probePutMs: summarize(probeMs),
      probeServerMs: summarize(probeServerMs),
      globalGc,
      hostCpuMs: { median: median(hostCpu), max: Math.max(...hostCpu) },
      hostClientCpuMs: median(hostClient),
      globalConverge: summarize(converge),
      globalConvergeP99s: convergeP99s,
      globalCpuMs: globalCpu,
      globalClientCpuMs: globalClient,
      rssMiB: last.rssBytes / 2 ** 20,
    };
  } finally {
    await load.stop();
    await srv.stop();
  }
}

export async function fleetTable(sizes: readonly number[], hostChanges = 20, globalChanges = 3): Promise<string[]> {
  const lines = [
    '| hosts (streams, policies) | host PUT p50 / p99 (in the server) | main thread GC in the host changes | host change: server CPU median / max | load CPU / host change | global change: all ACKed p50 / p99 | global: server CPU | global: load CPU | PUT while a global change is pushed p50 / p99 (in the server), n | main thread GC in the global changes | server RSS |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const gc = (g: GcSummary) => `${g.scavenges} scavenges (longest ${g.maxScavengeMs.toFixed(1)} ms), ${g.markCompacts} mark-compacts (longest ${g.maxMarkCompactMs.toFixed(1)} ms)`;
  for (const hosts of sizes) {
    const r = await fleet(hosts, hostChanges, globalChanges);
    lines.push(
      `| ${hosts} | ${r.hostPutMs.p50.toFixed(1)} / ${r.hostPutMs.p99.toFixed(1)} ms (${r.hostServerMs.p50.toFixed(1)} / ${r.hostServerMs.p99.toFixed(1)}) | ${gc(r.hostGc)} | ${r.hostCpuMs.median.toFixed(1)} / ${r.hostCpuMs.max.toFixed(1)} ms | ${r.hostClientCpuMs.toFixed(1)} ms | ${r.globalConverge.p50.toFixed(0)} / ${r.globalConverge.p99.toFixed(0)} ms (per change: ${r.globalConvergeP99s.map((v) => v.toFixed(0)).join(', ')}) | ${r.globalCpuMs.map((v) => v.toFixed(0)).join(', ')} ms | ${r.globalClientCpuMs.map((v) => v.toFixed(0)).join(', ')} ms | ${r.probePutMs.p50.toFixed(1)} / ${r.probePutMs.p99.toFixed(1)} ms (${r.probeServerMs.p50.toFixed(1)} / ${r.probeServerMs.p99.toFixed(1)}), ${r.probePutMs.count} | ${gc(r.globalGc)} | ${r.rssMiB.toFixed(0)} MiB |`,
    );
  }
  return lines;
}

// Alone: node dist/bench/fleet.js [sizes, comma-separated] [host changes] [global changes]
if (process.argv[1] === new URL(import.meta.url).pathname) {
  const sizes = (process.argv[2] ?? '10000').split(',').map(Number);
  console.log(`server process: ${shippedEnvLine()}`);
  for (const line of await fleetTable(sizes, Number(process.argv[3] ?? 20), Number(process.argv[4] ?? 3))) console.log(line);
}
