// The host scenario through the server (issue 7: "the event loop never blocked longer than
// 50 ms by a compile"): the real control plane (store, push scheduler, compile workers,
// snapshot cache, ADS) in its own process with the 1,000-microVM host stored, an Envoy-like
// client on ADS (Clusters, then Listeners, every response ACKed), then edits through the
// admin API. Per phase: the server's longest event-loop block (monitorEventLoopDelay on its
// main thread), its CPU (every thread), and the wall time until the client has the listener.
//   cold:   the client connects; its group (the whole host) is compiled and pushed
//   own:    one microVM's policy gains a name
//   shared: the policy shared by every microVM gains a name
import { spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { shippedEnv, shippedNodeFlags } from './shippedEnv.js';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { DiscoveryRequestSchema, DiscoveryResponseSchema, type DiscoveryResponse } from '../src/gen/envoy/service/discovery/v3/discovery_pb.js';
import { TypeUrl } from '../src/envoy/typeUrls.js';
import { hostPolicies, withExtraName } from './hostScenario.js';
import { summarize } from './stats.js';
import { defaultCompileWorkers } from '../src/snapshot/compilePool.js';

const ADS = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';

/** Just enough of Envoy for this: subscribe, ACK, remember the latest listener version. */
class AdsClient {
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<Uint8Array, DiscoveryResponse>;
  readonly versions = new Map<string, string>();
  listenerBytes = 0;
  private waiter?: () => void;

  constructor(address: string, nodeId: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
    this.call = this.client.makeBidiStreamRequest(ADS, (m: Uint8Array) => Buffer.from(m), (b: Buffer) => fromBinary(DiscoveryResponseSchema, b));
    const node = { id: nodeId, cluster: 'bench' };
    this.call.on('data', (response: DiscoveryResponse) => {
      this.versions.set(response.typeUrl, response.versionInfo);
      if (response.typeUrl === TypeUrl.Listener) this.listenerBytes = response.resources.reduce((n, r) => n + r.value.length, 0);
      this.send({ node, typeUrl: response.typeUrl, versionInfo: response.versionInfo, responseNonce: response.nonce });
      if (response.typeUrl === TypeUrl.Cluster && !this.versions.has(TypeUrl.Listener)) this.send({ node, typeUrl: TypeUrl.Listener });
      this.waiter?.();
    });
    this.call.on('error', () => {});
    this.send({ node, typeUrl: TypeUrl.Cluster });
  }

  private send(request: Record<string, unknown>): void {
    this.call.write(toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, request)));
  }

  /** Resolves once the listener's version is not `version`. */
  async listenerOtherThan(version: string | undefined, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.versions.get(TypeUrl.Listener) === version || !this.versions.has(TypeUrl.Listener)) {
      if (Date.now() > deadline) throw new Error(`no new listener within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, 100);
      });
    }
  }

  close(): void {
    this.call.end();
    this.client.close();
  }
}

interface Phase {
  maxBlockMs: number;
  cpuMs: number;
  wallMs: number;
  /** The server's minor page faults (fresh memory touched) in the phase. */
  faults: number;
  /** CPU by thread: the main thread (event loop), the compile worker(s), and every other thread (V8's compiler and GC helpers, libuv's pool). */
  threads: { main: number; workers: number; helpers: number };
}

/** ms per thread id as the server process answers a mark ("main" for the event loop). */
type ThreadMs = Record<string, number>;

export interface HostServerResult {
  microVms: number;
  listenerBytes: number;
  cold: Phase;
  own: Phase[];
  shared: Phase[];
}

/**
 * When the client connects (the server's compile workers warm up only for 'after-warm-up', as
 * with serve --compile-warmup true): 'at-once' as the server is ready (the host stored through the store
 * after the start), 'after-warm-up' once the compile workers have warmed up, 'after-restart' at
 * once to a new server process started on a data dir that holds the host (a restart).
 */
export type ConnectWhen = 'at-once' | 'after-warm-up' | 'after-restart';

export async function hostServer(microVms: number, rounds: number, workers?: number, when: ConnectWhen = 'at-once'): Promise<HostServerResult> {
  const args = [fileURLToPath(new URL('./hostServerProcess.js', import.meta.url)), String(microVms), ...(workers === undefined ? [] : [String(workers)])];
  const nodeArgs = [...shippedNodeFlags(), ...(process.env['HOST_SERVER_NODE_ARGS']?.split(' ').filter(Boolean) ?? [])];
  let env: NodeJS.ProcessEnv = { ...shippedEnv(), ...(when === 'after-warm-up' && { HOST_SERVER_WARM: '1' }) };
  if (when === 'after-restart') {
    env = { ...env, HOST_SERVER_DATA_DIR: await mkdtemp(join(tmpdir(), 'egress-xds-hostserver-restart-')) };
    const first = spawn(process.execPath, [...nodeArgs, ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...env, HOST_SERVER_POPULATE: '1' } });
    first.stdout!.resume();
    const code = await new Promise<number | null>((resolve) => first.once('exit', resolve));
    if (code !== 0) throw new Error(`storing the host for the restart exited with ${String(code)}`);
  }
  const child = spawn(process.execPath, [...nodeArgs, ...args], { stdio: ['pipe', 'pipe', 'inherit'], env });
  const lines = createInterface({ input: child.stdout! });
  const queue: string[] = [];
  let wake: (() => void) | undefined;
  lines.on('line', (line) => {
    // Anything else the server prints (--trace-gc through HOST_SERVER_NODE_ARGS) goes to stderr.
    if (!line.startsWith('{')) return void process.stderr.write(`${line}\n`);
    queue.push(line);
    wake?.();
  });
  const nextLine = async (timeoutMs: number): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    while (queue.length === 0) {
      if (Date.now() > deadline) throw new Error(`the server process said nothing within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 100);
      });
    }
    return queue.shift()!;
  };
  // The compile workers: the threads besides the main one that used the most CPU in the cold phase (they compile the host).
  let workerIds: string[] = [];
  type Answer = { maxBlockMs: number; cpuMs: number; faults: number; threads: ThreadMs };
  const mark = async (): Promise<Answer> => {
    child.stdin!.write('mark\n');
    return JSON.parse(await nextLine(10_000)) as Answer;
  };
  const phaseOf = ({ maxBlockMs, cpuMs, faults, threads }: Answer, wallMs: number): Phase => {
    const main = threads['main'] ?? 0;
    const workers = workerIds.reduce((sum, id) => sum + (threads[id] ?? 0), 0);
    const all = Object.values(threads).reduce((sum, ms) => sum + ms, 0);
    return { maxBlockMs, cpuMs, faults, wallMs, threads: { main, workers, helpers: all - main - workers } };
  };
  const ports = JSON.parse(await nextLine(120_000)) as { xds: number; admin: number };
  const base = hostPolicies(microVms);
  let client: AdsClient | undefined;
  try {
    await mark();
    const started = process.hrtime.bigint();
    client = new AdsClient(`127.0.0.1:${ports.xds}`, 'host-0');
    await client.listenerOtherThan(undefined, 120_000);
    const coldMark = await mark();
    const workerCount = workers ?? defaultCompileWorkers();
    workerIds = Object.entries(coldMark.threads).filter(([id]) => id !== 'main').sort((a, b) => b[1] - a[1]).slice(0, workerCount).map(([id]) => id);
    const cold = phaseOf(coldMark, Number(process.hrtime.bigint() - started) / 1e6);
    const edit = async (name: string, serverName: string): Promise<Phase> => {
      const policy = withExtraName(base, name, serverName).find((p) => p.name === name)!;
      const { name: _, ...spec } = policy;
      const before = client!.versions.get(TypeUrl.Listener);
      const at = process.hrtime.bigint();
      const response = await fetch(`http://127.0.0.1:${ports.admin}/v1/policies/${name}`, { method: 'PUT', body: JSON.stringify(spec), headers: { 'content-type': 'application/json' } });
      if (response.status !== 200) throw new Error(`PUT ${name} answered ${response.status}: ${await response.text()}`);
      await response.arrayBuffer();
      await client!.listenerOtherThan(before, 60_000);
      const wallMs = Number(process.hrtime.bigint() - at) / 1e6;
      await new Promise((resolve) => setTimeout(resolve, 50));
      return phaseOf(await mark(), wallMs);
    };
    const own: Phase[] = [];
    const shared: Phase[] = [];
    for (let r = 0; r < rounds; r++) {
      own.push(await edit('vm-00001', `edit${r}.example.com`));
      shared.push(await edit('common-deps', `new${r}.common.dev`));
    }
    return { microVms, listenerBytes: client.listenerBytes, cold, own, shared };
  } finally {
    client?.close();
    child.stdin!.end();
    await new Promise((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => resolve(clearTimeout(timer)));
    });
  }
}

/**
 * The BENCHMARKS.md table of the server path. Server CPU is split by thread: the event loop
 * (main), the compile worker(s), and V8's helpers (optimising compiles, concurrent marking)
 * with libuv's. connect: one row per ConnectWhen (the compile workers' warm-up:
 * src/snapshot/compileWarmup.ts).
 */
export async function hostServerTable(sizes: readonly number[], rounds: number, workers?: number, connect: readonly ConnectWhen[] = ['at-once']): Promise<string[]> {
  const lines = [
    '| microVMs | client connects | listener bytes | cold (connect → ACK): wall / server CPU (main + workers + helpers) / max block | one microVM gains a name: wall / server CPU (main + workers + helpers) / max block (p50, max) | the shared policy gains a name: same |',
    '|---|---|---|---|---|---|',
  ];
  const f = (v: number) => v.toFixed(1);
  const split = (t: Phase['threads']) => `(${t.main.toFixed(0)} + ${t.workers.toFixed(0)} + ${t.helpers.toFixed(0)})`;
  const phases = (list: Phase[]) => {
    const wall = summarize(list.map((p) => p.wallMs));
    const cpu = summarize(list.map((p) => p.cpuMs));
    const block = summarize(list.map((p) => p.maxBlockMs));
    const faults = summarize(list.map((p) => p.faults));
    const threads = { main: summarize(list.map((p) => p.threads.main)).p50, workers: summarize(list.map((p) => p.threads.workers)).p50, helpers: summarize(list.map((p) => p.threads.helpers)).p50 };
    return `${f(wall.p50)} / ${f(cpu.p50)} ${split(threads)} / ${f(block.p50)} ms (max block ${f(block.max)} ms; ${faults.p50.toFixed(0)} page faults; CPU per round ${list.map((p) => p.cpuMs.toFixed(0)).join(', ')})`;
  };
  for (const n of sizes) {
    for (const when of connect) {
      const r = await hostServer(n, rounds, workers, when);
      lines.push(`| ${n} | ${when} | ${r.listenerBytes} | ${f(r.cold.wallMs)} / ${f(r.cold.cpuMs)} ${split(r.cold.threads)} / ${f(r.cold.maxBlockMs)} ms (${r.cold.faults} page faults) | ${phases(r.own)} | ${phases(r.shared)} |`);
    }
  }
  return lines;
}
