// Fan-out cost: N Envoy-like streams of one node group, then pushes (one
// Listener change each). The egress-xds server beside a floor server (a
// minimal grpc-js server writing one pre-encoded response to every stream),
// each in its own process, the load in a third. Per push: server CPU (from
// the push until every stream has the Listener, plus 200 ms for the ACKs),
// converge-all (push → last stream has it), the load client's CPU; per
// stream: the server's RSS growth while connecting; RSS after the first and
// the last push (flat means no per-push leak). The first push after
// connecting is a warm-up, reported apart (see the loop).
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { AwaitResult, FanoutClientCommand } from './fanoutClient.js';
import type { FanoutServerCommand, FanoutUsage } from './fanoutServer.js';
import { summarize } from './stats.js';
import { shippedEnv, shippedEnvLine, shippedNodeFlags } from './shippedEnv.js';

export interface FanoutRow {
  readonly server: 'egress' | 'floor';
  readonly streams: number;
  readonly pushes: number;
  /** Server CPU ms per push: median over the pushes. */
  readonly serverCpuMs: number;
  readonly clientCpuMs: number;
  /** ms from the push until the last stream had the Listener. */
  readonly convergeAll: ReturnType<typeof summarize>;
  /** The same, push by push. */
  readonly convergePerPush: readonly number[];
  /** Converge-all of the warm-up push (the first after connecting), not among the measured pushes. */
  readonly firstPushMs: number;
  /** Server RSS growth while connecting, over the streams: the one-time growth included. */
  readonly kbPerStream: number;
  /** The same over the second half of the streams only: what one more stream costs. */
  readonly kbPerAddedStream: number;
  readonly rssFirstMiB: number;
  readonly rssLastMiB: number;
  /** After each push: RSS, V8 heap used, external (Buffers), MiB. */
  readonly memoryPerPush: readonly { rss: number; heap: number; external: number }[];
  /** V8 heap bytes allocated per push (garbage included), MiB: median over the pushes. */
  readonly allocatedMiB: number;
  /** Server CPU ms per push by thread kind ("main", else the thread's name, tids merged): median over the pushes. */
  readonly threadCpuMs: Record<string, number>;
  /** Server CPU ms per second with the streams connected and nothing pushed. */
  readonly idleCpuMsPerS: number;
  readonly idleThreadCpuMs: Record<string, number>;
}

/** Per thread kind: CPU ms between two usage reports ("main" kept, else the name before ":tid"; threads summed by name). */
function threadDelta(before: FanoutUsage, after: FanoutUsage): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [thread, ms] of Object.entries(after.threadCpuMs ?? {})) {
    const kind = thread === 'main' || !thread.includes(':') ? thread : thread.slice(0, thread.lastIndexOf(':'));
    out[kind] = (out[kind] ?? 0) + ms - (before.threadCpuMs?.[thread] ?? 0);
  }
  return out;
}

export class Child<Command> {
  private constructor(private readonly process: ChildProcess) {}

  /** env: shippedEnv() for a process that stands in for the server; the load client keeps this process's. */
  static async start<Command>(script: string, args: string[], execArgv: string[] = [], startMs = 30_000, env: NodeJS.ProcessEnv = process.env): Promise<{ child: Child<Command>; hello: Record<string, unknown> }> {
    const process_ = fork(fileURLToPath(new URL(script, import.meta.url)), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv, env });
    const child = new Child<Command>(process_);
    const hello = await child.next(startMs);
    return { child, hello };
  }

  private next(timeoutMs: number): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      this.process.once('message', (message: Record<string, unknown>) => {
        clearTimeout(timer);
        if ('error' in message) reject(new Error(String(message.error)));
        else resolve(message);
      });
    });
  }

  async ask<T>(command: Command, timeoutMs = 600_000): Promise<T> {
    const answer = this.next(timeoutMs);
    this.process.send(command as object);
    return (await answer) as T;
  }

  async stop(): Promise<void> {
    if (this.process.exitCode !== null) return;
    const exited = new Promise((resolve) => this.process.once('exit', resolve));
    this.process.send({ stop: true });
    const timer = setTimeout(() => this.process.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const MiB = 1024 * 1024;

export async function fanout(server: 'egress' | 'floor', streams: number, pushes: number): Promise<FanoutRow> {
  // FANOUT_CPU_PROF=DIR: the server writes a V8 CPU profile there (node --cpu-prof) for the push path.
  const profile = process.env.FANOUT_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.FANOUT_CPU_PROF}`] : [];
  // FANOUT_GC=1 (diagnosis): the server collects garbage before each usage report, so RSS and heap say what is retained.
  if (process.env.FANOUT_GC === '1') profile.push('--expose-gc');
  // FANOUT_SERVER_FLAGS="--flag ...": V8/Node flags for the server process (GC tuning experiments).
  if (process.env.FANOUT_SERVER_FLAGS) profile.push(...process.env.FANOUT_SERVER_FLAGS.split(' ').filter(Boolean));
  const { child: srv, hello } = await Child.start<FanoutServerCommand>('./fanoutServer.js', [server], [...shippedNodeFlags(), ...profile], 30_000, shippedEnv());
  const { child: load } = await Child.start<FanoutClientCommand>('./fanoutClient.js', []);
  try {
    const idle = hello.usage as FanoutUsage;
    // In two halves: the second half's growth is what a stream costs beyond the one-time growth of
    // the first connections (the young generation growing to its size, the first compile).
    const half = Math.floor(streams / 2);
    await load.ask({ connect: { address: `127.0.0.1:${String(hello.port)}`, streams: half, perConnection: 100 } });
    await pause(500);
    const halfConnected = await srv.ask<FanoutUsage>({ usage: true });
    await load.ask({ connect: { address: `127.0.0.1:${String(hello.port)}`, streams: streams - half, perConnection: 100 } });
    await pause(500);
    const connected = await srv.ask<FanoutUsage>({ usage: true });
    // The server's CPU with nothing pushed, over 1 s (keepalives, timers, metrics): the part of a
    // push's window (about 200-300 ms) that is not the push's own.
    await pause(1000);
    const quiet = await srv.ask<FanoutUsage>({ usage: true });
    const idleCpuMsPerS = (quiet.cpuMicros - connected.cpuMicros) / 1000;
    const idleThreads = threadDelta(connected, quiet);
    const cpu: number[] = [];
    const clientCpu: number[] = [];
    const converge: number[] = [];
    const rss: number[] = [];
    const memoryPerPush: { rss: number; heap: number; external: number }[] = [];
    const allocated: number[] = [];
    const threads: Record<string, number[]> = {};
    // Push 1 is a warm-up, not measured (its convergence is reported on its own): it pays for the
    // connect storm's garbage (at 10,000 streams a scavenge of the last connections' state and a
    // mark-compact, 120 ms of pauses in one run), which says nothing about a push to a fleet
    // already connected. Then `pushes` measured pushes.
    let firstPushMs = 0;
    for (let k = 1; k <= pushes + 1; k++) {
      await srv.ask({ prepare: k });
      const before = await srv.ask<FanoutUsage>({ usage: true });
      const t0 = process.hrtime.bigint();
      await srv.ask({ push: k });
      const result = await load.ask<AwaitResult>({ await: { listeners: k + 1, t0: t0.toString(), timeoutMs: 120_000 } });
      await pause(200);
      const after = await srv.ask<FanoutUsage>({ usage: true });
      if (k === 1) {
        firstPushMs = Math.max(...result.arrivalsMs);
        continue;
      }
      cpu.push((after.cpuMicros - before.cpuMicros) / 1000);
      for (const [kind, ms] of Object.entries(threadDelta(before, after))) (threads[kind] ??= []).push(ms);
      allocated.push(((after.allocatedBytes ?? 0) - (before.allocatedBytes ?? 0)) / MiB);
      clientCpu.push(result.clientCpuMicros / 1000);
      converge.push(Math.max(...result.arrivalsMs));
      rss.push(after.rssBytes);
      memoryPerPush.push({ rss: after.rssBytes / MiB, heap: (after.heapUsedBytes ?? 0) / MiB, external: (after.externalBytes ?? 0) / MiB });
    }
    return {
      server,
      streams,
      pushes,
      serverCpuMs: median(cpu),
      clientCpuMs: median(clientCpu),
      convergeAll: summarize(converge),
      convergePerPush: converge,
      firstPushMs,
      kbPerStream: (connected.rssBytes - idle.rssBytes) / streams / 1024,
      kbPerAddedStream: (connected.rssBytes - halfConnected.rssBytes) / (streams - half) / 1024,
      rssFirstMiB: rss[0]! / MiB,
      rssLastMiB: rss.at(-1)! / MiB,
      memoryPerPush,
      allocatedMiB: median(allocated),
      idleCpuMsPerS,
      idleThreadCpuMs: idleThreads,
      threadCpuMs: Object.fromEntries(Object.entries(threads).map(([kind, values]) => [kind, median(values)])),
    };
  } finally {
    await load.stop();
    await srv.stop();
  }
}

const threadLine = (row: FanoutRow) =>
  Object.entries(row.threadCpuMs)
    .filter(([, ms]) => ms >= 0.05)
    .sort((a, b) => b[1] - a[1])
    .map(([kind, ms]) => `${kind} ${ms.toFixed(1)}`)
    .join(', ');

/** bench/run.ts's table: for each size, the floor then egress-xds, and the ratio of server CPU per push. */
export async function fanoutTable(sizes: readonly number[], pushes: number, detail?: (line: string) => void): Promise<string[]> {
  const lines = [
    '| streams | server | server CPU / push | ratio to floor | converge-all p50 | p99 | warm-up push (not measured): converge-all | load client CPU / push | server RSS per stream (all; second half) | RSS after the first measured push → last |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  // FANOUT_EGRESS_ONLY=1 (diagnosis): skip the floor.
  if (process.env.FANOUT_EGRESS_ONLY === '1') {
    for (const streams of sizes) {
      const row = await fanout('egress', streams, pushes);
      detail?.(`egress ${row.streams}: RSS / heap / external MiB after each push: ${row.memoryPerPush.map((m) => `${m.rss.toFixed(0)}/${m.heap.toFixed(0)}/${m.external.toFixed(0)}`).join(' ')}; converge-all ms: warm-up push ${row.firstPushMs.toFixed(0)}, then after each measured push ${row.convergePerPush.map((ms) => ms.toFixed(0)).join(' ')}; V8 heap allocated per push ${row.allocatedMiB.toFixed(1)} MiB; CPU ms per push by thread (median): ${threadLine(row)}; idle: ${row.idleCpuMsPerS.toFixed(1)} ms CPU per s (${threadLine({ ...row, threadCpuMs: row.idleThreadCpuMs })})`);
      lines.push(`| ${row.streams} | egress | ${row.serverCpuMs.toFixed(0)} ms | – | ${row.convergeAll.p50.toFixed(0)} ms | ${row.convergeAll.p99.toFixed(0)} ms | ${row.firstPushMs.toFixed(0)} ms | ${row.clientCpuMs.toFixed(0)} ms | ${row.kbPerStream.toFixed(1)} KB; ${row.kbPerAddedStream.toFixed(1)} KB | ${row.rssFirstMiB.toFixed(0)} → ${row.rssLastMiB.toFixed(0)} MiB |`);
    }
    return lines;
  }
  for (const streams of sizes) {
    const floor = await fanout('floor', streams, pushes);
    const egress = await fanout('egress', streams, pushes);
    for (const row of [floor, egress]) {
      detail?.(`${row.server} ${row.streams}: RSS / heap / external MiB after each push: ${row.memoryPerPush.map((m) => `${m.rss.toFixed(0)}/${m.heap.toFixed(0)}/${m.external.toFixed(0)}`).join(' ')}; converge-all ms: warm-up push ${row.firstPushMs.toFixed(0)}, then after each measured push ${row.convergePerPush.map((ms) => ms.toFixed(0)).join(' ')}; V8 heap allocated per push ${row.allocatedMiB.toFixed(1)} MiB; CPU ms per push by thread (median): ${threadLine(row)}; idle: ${row.idleCpuMsPerS.toFixed(1)} ms CPU per s (${threadLine({ ...row, threadCpuMs: row.idleThreadCpuMs })})`);
      const ratio = row === egress ? `${(egress.serverCpuMs / floor.serverCpuMs).toFixed(2)}×` : '1';
      lines.push(
        `| ${row.streams} | ${row.server} | ${row.serverCpuMs.toFixed(0)} ms | ${ratio} | ${row.convergeAll.p50.toFixed(0)} ms | ${row.convergeAll.p99.toFixed(0)} ms | ${row.firstPushMs.toFixed(0)} ms | ${row.clientCpuMs.toFixed(0)} ms | ${row.kbPerStream.toFixed(1)} KB; ${row.kbPerAddedStream.toFixed(1)} KB | ${row.rssFirstMiB.toFixed(0)} → ${row.rssLastMiB.toFixed(0)} MiB |`,
      );
    }
  }
  return lines;
}

// Alone: node dist/bench/fanout.js [sizes, comma-separated] [pushes]
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const sizes = (process.argv[2] ?? '1000,5000,10000').split(',').map(Number);
  const pushes = Number(process.argv[3] ?? 20);
  console.log(`server processes: ${shippedEnvLine()}`);
  for (const line of await fanoutTable(sizes, pushes, (line) => console.error(line))) console.log(line);
}
