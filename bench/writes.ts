// Single-policy writes with a fleet connected (issue 8 point 3, check (c)):
// the whole control plane in a process of its own, N Envoy-like SotW streams
// (one per host, node id host-i) in a load-client process, and this driver
// writing over HTTP from W concurrent writers. Each write is a PUT of one
// host's own policy (bench/fleetSpecs.ts), so each also recompiles that host's
// group and pushes it to that one stream. Phases:
//   1. create: the N hosts' policies, PUT by the W writers (each host goes from
//      the shared global group to a group of its own);
//   2. sustained: updates of the hosts' policies for S seconds, then every
//      written host must receive a Listener after its write (push latency:
//      PUT sent → Listener at the host, for hosts written once);
//   3. durability: writes again, and SIGKILL the server while they are in
//      flight; the data dir, reopened, must hold every write that got a 200.
// Before anything: the disk's own append + fdatasync latency, since every
// write waits for one. Server CPU is the server process's (compile workers
// included); the load is the stream client's CPU plus this driver's.
import { Agent, request } from 'node:http';
import { shippedEnv, shippedNodeFlags } from './shippedEnv.js';
import { rm } from 'node:fs/promises';
import { openPolicyStore } from '../src/store/policyStore.js';
import { Child } from './fanout.js';
import type { AwaitResult, FanoutClientCommand } from './fanoutClient.js';
import { hostSpec } from './fleetSpecs.js';
import { summarize } from './stats.js';
import { fsyncLatency } from './storeWrites.js';
import type { WritesServerCommand, WritesServerUsage } from './writesServer.js';

export interface WritesOptions {
  readonly hosts: number;
  readonly writers: number;
  readonly seconds: number;
  /** Seconds of writing before the SIGKILL of phase 3. */
  readonly killAfterSeconds: number;
}

interface PhaseResult {
  readonly writes: number;
  /** From the first PUT to the last 200. */
  readonly seconds: number;
  readonly perSecond: number;
  /** Writes per second from the first PUT until every written host had its Listener and the server was idle. */
  readonly pushedPerSecond: number;
  readonly putMs: ReturnType<typeof summarize>;
  /** PUT sent → Listener at that host (hosts written once in the phase). */
  readonly pushMs: ReturnType<typeof summarize>;
  /** Server CPU-seconds per second while the PUTs ran. */
  readonly serverCores: number;
  /** Server CPU from the first PUT until idle (every push done), per write. */
  readonly serverCpuMsPerWrite: number;
  /** Of which on the event loop's thread (HTTP, store, selection, push; not the compile workers). */
  readonly loopCpuMsPerWrite: number;
  readonly driverCores: number;
  readonly streamClientCores: number;
  /** Store commits per fsync over the phase, when the store reports them. */
  readonly commitsPerFsync?: number;
  /** Store commits per push (cache apply) over the phase. */
  readonly commitsPerPush: number;
}

export interface WritesResult {
  readonly hosts: number;
  readonly writers: number;
  readonly disk: ReturnType<typeof summarize>;
  readonly connectS: number;
  readonly create: PhaseResult;
  readonly sustained: PhaseResult;
  /** Absent when phase 3 was skipped (killAfterSeconds 0, for profiling). */
  readonly durability?: { readonly acked: number; readonly missing: number; readonly killedInFlight: number };
  readonly rssMiB: number;
}

interface Ack {
  readonly revision: number;
  readonly tag: string;
}

function put(agent: Agent, port: number, name: string, body: string): Promise<{ status: number; revision: number }> {
  return new Promise((resolve, reject) => {
    const req = request({ agent, host: '127.0.0.1', port, method: 'PUT', path: `/v1/policies/${name}`, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`PUT ${name}: ${res.statusCode} ${Buffer.concat(chunks).toString()}`));
        resolve({ status: 200, revision: (JSON.parse(Buffer.concat(chunks).toString()) as { revision: number }).revision });
      });
      res.once('error', reject);
    });
    req.once('error', reject);
    req.end(body);
  });
}

const cpuMicros = (usage: NodeJS.CpuUsage) => usage.user + usage.system;

export async function writesWithFleet(options: WritesOptions): Promise<WritesResult> {
  const { hosts, writers } = options;
  const diskSamples = await fsyncLatency(200);
  // WRITES_SERVER_ARGS: node flags for the server (e.g. --perf-basic-prof, to read it with perf).
  const serverArgs = process.env.WRITES_SERVER_ARGS?.split(' ').filter(Boolean) ?? [];
  const { child: srv, hello } = await Child.start<WritesServerCommand>('./writesServer.js', [], [...shippedNodeFlags(), ...serverArgs], 120_000, shippedEnv());
  if (serverArgs.length > 0) console.error(`writes: server pid ${String(hello.pid)}`);
  const { child: load } = await Child.start<FanoutClientCommand>('./fanoutClient.js', []);
  const adminPort = hello.adminPort as number;
  const dataDir = hello.dataDir as string;
  const serverPid = hello.pid as number;
  const agent = new Agent({ keepAlive: true, maxSockets: writers });
  const acked = new Map<string, Ack>();
  let killed = false;
  try {
    const c0 = performance.now();
    const connected = await load.ask<{ reconnects: Record<string, number> }>({ connect: { address: `127.0.0.1:${String(hello.xdsPort)}`, streams: hosts, perConnection: 1, nodePrefix: 'host-' } });
    const connectS = (performance.now() - c0) / 1000;
    console.error(`writes: ${hosts} hosts connected in ${connectS.toFixed(1)} s; reopened: ${JSON.stringify(connected.reconnects)}`);
    await srv.ask({ idle: true });

    /**
     * W writers take write numbers from one counter until `more(k)` says stop;
     * write k PUTs host `hostOf(k)` with tag `tagOf(k)`. Then every host
     * written must receive a Listener after the phase began (`hosts` of the
     * load client's awaitMore: the stream indexes), and the server must be
     * idle: the CPU per write counts the pushes that finished after the last
     * 200, and "pushed/s" the rate at which the whole pipeline kept up.
     */
    const phase = async (more: (k: number, elapsedMs: number) => boolean, hostOf: (k: number) => number, tagOf: (k: number) => string, profile?: string) => {
      const before = await srv.ask<WritesServerUsage>({ usage: true });
      await load.ask({ mark: true });
      if (profile) await srv.ask({ profile: 'start' });
      const driver0 = process.cpuUsage();
      const latencies: number[] = [];
      const sentAt = new Map<number, bigint[]>();
      let next = 0;
      const t0 = performance.now();
      const h0 = process.hrtime.bigint();
      await Promise.all(Array.from({ length: writers }, async () => {
        for (;;) {
          const k = next;
          if (!more(k, performance.now() - t0)) return;
          next += 1;
          const host = hostOf(k);
          const tag = tagOf(k);
          const name = `host-${host}`;
          const sent = process.hrtime.bigint();
          const list = sentAt.get(host);
          if (list) list.push(sent);
          else sentAt.set(host, [sent]);
          const started = performance.now();
          const reply = await put(agent, adminPort, name, JSON.stringify(hostSpec(host, tag)));
          latencies.push(performance.now() - started);
          const previous = acked.get(name);
          if (!previous || previous.revision < reply.revision) acked.set(name, { revision: reply.revision, tag });
        }
      }));
      const seconds = (performance.now() - t0) / 1000;
      const driverCpu = cpuMicros(process.cpuUsage(driver0));
      const during = await srv.ask<WritesServerUsage>({ usage: true });
      const written = [...sentAt.keys()];
      const arrived = await load.ask<AwaitResult>({ awaitMore: { more: 1, t0: h0.toString(), timeoutMs: 900_000, only: written } });
      await srv.ask({ idle: true });
      const pushedSeconds = (performance.now() - t0) / 1000;
      if (profile) await srv.ask({ profile });
      const after = await srv.ask<WritesServerUsage>({ usage: true });
      // PUT sent → the host's Listener, for hosts written exactly once (one written twice may show the first push).
      const pushMs: number[] = [];
      written.forEach((host, i) => {
        const sends = sentAt.get(host)!;
        if (sends.length === 1) pushMs.push(arrived.arrivalsMs[i]! - Number(sends[0]! - h0) / 1e6);
      });
      const result: PhaseResult = {
        writes: latencies.length,
        seconds,
        perSecond: latencies.length / seconds,
        pushedPerSecond: latencies.length / pushedSeconds,
        putMs: summarize(latencies),
        pushMs: summarize(pushMs),
        serverCores: (during.cpuMicros - before.cpuMicros) / 1e6 / seconds,
        serverCpuMsPerWrite: (after.cpuMicros - before.cpuMicros) / 1000 / latencies.length,
        loopCpuMsPerWrite: (after.loopCpuMicros - before.loopCpuMicros) / 1000 / latencies.length,
        driverCores: driverCpu / 1e6 / seconds,
        streamClientCores: arrived.clientCpuMicros / 1e6 / pushedSeconds,
        ...(after.commits !== undefined && before.commits !== undefined && after.fsyncs! > before.fsyncs!
          ? { commitsPerFsync: (after.commits - before.commits) / (after.fsyncs! - before.fsyncs!) }
          : {}),
        commitsPerPush: (after.appliedCommits - before.appliedCommits) / Math.max(1, after.applies - before.applies),
      };
      return result;
    };

    // 1. Create every host's own policy (each host leaves the shared group for one of its own).
    const created = await phase((k) => k < hosts, (k) => k, () => 'a');
    // 2. Sustained updates for S seconds; write k updates host k mod N.
    // WRITES_CPU_PROF=FILE: the server's event loop profiled over this phase (node:inspector).
    const sustained = await phase((_, elapsed) => elapsed < options.seconds * 1000, (k) => k % hosts, (k) => `s${k}`, process.env.WRITES_CPU_PROF);
    const rss = (await srv.ask<WritesServerUsage>({ usage: true })).rssBytes;

    const base = {
      hosts,
      writers,
      disk: diskSamples,
      connectS,
      create: created,
      sustained,
      rssMiB: rss / 2 ** 20,
    };
    // (Profiling: no kill, so the server can write its profile on a clean stop.)
    if (options.killAfterSeconds <= 0) return { ...base };

    // 3. SIGKILL in flight, then every 200 must be in the data dir.
    const inFlightAtKill = { count: 0 };
    const killer = setTimeout(() => {
      killed = true;
      process.kill(serverPid, 'SIGKILL');
    }, options.killAfterSeconds * 1000);
    let k3 = 0;
    await Promise.all(Array.from({ length: writers }, async () => {
      while (!killed) {
        const host = k3++ % hosts;
        const tag = `k${k3}`;
        const name = `host-${host}`;
        try {
          const reply = await put(agent, adminPort, name, JSON.stringify(hostSpec(host, tag)));
          const previous = acked.get(name);
          if (!previous || previous.revision < reply.revision) acked.set(name, { revision: reply.revision, tag });
        } catch {
          inFlightAtKill.count += 1; // the server died with this one unanswered
          return;
        }
      }
    }));
    clearTimeout(killer);
    // Wait until it is gone (Child.stop would write to its closed IPC channel: an EPIPE 'error' event).
    for (let i = 0; i < 200; i++) {
      try {
        process.kill(serverPid, 0);
      } catch {
        break; // ESRCH: exited and reaped
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const store = await openPolicyStore(dataDir);
    let missing = 0;
    try {
      for (const [name, ack] of acked) {
        const stored = store.get(name);
        const expected = hostSpec(Number(name.slice('host-'.length)), ack.tag).allow.sni;
        // Nothing else writes: the stored policy is the last acknowledged, or a later write that was in flight.
        if (!stored || stored.revision < ack.revision || (stored.revision === ack.revision && stored.allow.sni?.[0] !== expected?.[0])) missing += 1;
      }
    } finally {
      await store.close();
    }
    return { ...base, durability: { acked: acked.size, missing, killedInFlight: inFlightAtKill.count } };
  } finally {
    agent.destroy();
    // A child that died already must not hide the error that ended the run.
    await load.stop().catch(() => {});
    if (!killed) await srv.stop().catch(() => {});
    await rm(dataDir, { recursive: true, force: true });
  }
}

export async function writesTable(runs: readonly WritesOptions[]): Promise<string[]> {
  const lines: string[] = [];
  for (const options of runs) {
    const r = await writesWithFleet(options);
    const f = (n: number) => n.toFixed(2);
    lines.push(`(disk just before: append + fdatasync p50 ${f(r.disk.p50)} ms, p99 ${f(r.disk.p99)} ms; ${r.hosts.toLocaleString('en')} hosts connected in ${r.connectS.toFixed(1)} s; ${r.writers} writers)`);
    lines.push('| phase | writes | writes/s (200s) | pushed/s (all hosts have it) | PUT p50 / p99 | PUT → Listener p50 / p99 | server CPU while writing | server CPU / write, all in (event loop) | commits / fsync | commits / push | load: streams + writers CPU |');
    lines.push('|---|---|---|---|---|---|---|---|---|---|---|');
    for (const [what, p] of [[`create ${r.hosts.toLocaleString('en')}`, r.create], [`sustained ${r.sustained.seconds.toFixed(0)} s`, r.sustained]] as const) {
      lines.push(`| ${what} | ${p.writes} | **${p.perSecond.toFixed(0)}** | ${p.pushedPerSecond.toFixed(0)} | ${p.putMs.p50.toFixed(1)} / ${p.putMs.p99.toFixed(1)} ms | ${p.pushMs.count > 0 ? `${p.pushMs.p50.toFixed(0)} / ${p.pushMs.p99.toFixed(0)} ms (n=${p.pushMs.count})` : '– (no host written once)'} | ${f(p.serverCores)} cores | ${f(p.serverCpuMsPerWrite)} ms (${f(p.loopCpuMsPerWrite)} ms) | ${p.commitsPerFsync?.toFixed(1) ?? '–'} | ${p.commitsPerPush.toFixed(1)} | ${f(p.streamClientCores)} + ${f(p.driverCores)} cores |`);
    }
    lines.push('');
    lines.push(`- every written host received a Listener after its write; server RSS ${r.rssMiB.toFixed(0)} MiB.`);
    // What the server could carry if it had the CPU: the rate is CPU-bound once the disk's fsyncs are shared.
    const perCore = 1000 / r.sustained.serverCpuMsPerWrite;
    lines.push(`- sustained: ${f(r.sustained.serverCpuMsPerWrite)} ms of server CPU per write (all threads) is ${perCore.toFixed(0)} writes/s per core of server CPU; its event loop alone (one thread) would allow ${(1000 / r.sustained.loopCpuMsPerWrite).toFixed(0)}/s.`);
    if (r.durability) lines.push(`- durability: SIGKILL during writes (${r.durability.killedInFlight} PUTs unanswered); reopened, the data dir holds every acknowledged write: **${r.durability.missing === 0 ? 'yes' : `NO, ${r.durability.missing} missing`}** (${r.durability.acked.toLocaleString('en')} policies checked).`);
  }
  return lines;
}

// Alone: node dist/bench/writes.js [HOSTS] [WRITERS] [SECONDS]
if (process.argv[1] === new URL(import.meta.url).pathname) {
  const hosts = Number(process.argv[2] ?? 10_000);
  const writers = Number(process.argv[3] ?? 64);
  const seconds = Number(process.argv[4] ?? 10);
  for (const line of await writesTable([{ hosts, writers, seconds, killAfterSeconds: Number(process.env.WRITES_KILL_AFTER ?? 1) }])) console.log(line);
}
