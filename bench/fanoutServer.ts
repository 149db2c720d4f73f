// The server side of bench/fanout.ts, in a process of its own so its CPU and
// memory are its own. argv[2]:
// - "egress": the real control plane (store → cache → ADS); a push is a policy
//   PUT through the store, as an operator's change is.
// - "floor": a minimal grpc-js server on the same ADS method: it answers a
//   stream's first request of a type with pre-encoded bytes and, on a push,
//   writes one pre-encoded Listener response to every stream. What any ADS
//   server must at least spend; the egress server's cost is read against it.
// Driven over IPC: {prepare: k} (floor: encode ahead), {push: k}, {usage}
// (CPU µs and RSS bytes), {stop}.
import { readdirSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { GCProfiler } from 'node:v8';
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { TypeUrl } from '../src/envoy/typeUrls.js';
import type { Policy, PolicySpec } from '../src/policy/model.js';
import { EMBEDDED_DEFAULT_POLICY } from '../src/server/controlPlane.js';
import { SnapshotCache } from '../src/snapshot/cache.js';
import { egressGroupCompiler } from '../src/snapshot/egressGroups.js';
import { encodeSotwResponse } from '../src/xds/wire.js';
import { startBenchControlPlane } from './benchControlPlane.js';
import { readThreadStats } from './threadStats.js';

export type FanoutServerCommand = { push: number } | { prepare: number } | { usage: true } | { stop: true };
export interface FanoutUsage {
  readonly cpuMicros: number;
  readonly rssBytes: number;
  /** V8 heap in use, and memory outside it (Buffers): where RSS growth comes from. */
  readonly heapUsedBytes?: number;
  readonly externalBytes?: number;
  /**
   * Bytes the V8 heap allocated since the process started (in use now plus all
   * that garbage collections freed): the difference between two readings is what
   * the work between them allocated, garbage included.
   */
  readonly allocatedBytes?: number;
  /** CPU ms on each thread since the process started (from /proc/self/task/TID/schedstat), by thread: "main", else "comm:tid". */
  readonly threadCpuMs?: Record<string, number>;
}

/** The policy a push changes: one more SNI per push, so only the Listener changes. */
export const pushSpec = (k: number): PolicySpec => ({ sources: ['172.31.0.0/16'], allow: { sni: [`push-${k}.fanout.example`] } });

const collect = (globalThis as { gc?: () => void }).gc;
// Every collection's before/after sizes, read at each usage report: what was freed.
let gcProfiler = new GCProfiler();
gcProfiler.start();
let freedBytes = 0;
function readFreed(): void {
  const data = gcProfiler.stop();
  for (const gc of data?.statistics ?? []) freedBytes += gc.beforeGC.heapStatistics.usedHeapSize - gc.afterGC.heapStatistics.usedHeapSize;
  gcProfiler = new GCProfiler();
  gcProfiler.start();
}
// Every thread is called "node" here, so threads are told apart by when they appeared: those
// already there when this module runs are "helpers": V8's platform threads (parallel scavenges,
// concurrent marking, optimising compiles) and libuv's pool (the store's journal writes and
// fdatasync), which the ES module loader has started by then, so the two cannot be told apart
// this way; those that appear while the control plane starts are its compile workers.
const threadKinds = new Map<string, string>();
function labelNewThreads(kind: string): void {
  for (const tid of readdirSync('/proc/self/task')) if (tid !== String(process.pid) && !threadKinds.has(tid)) threadKinds.set(tid, kind);
}
labelNewThreads('helpers');

// Per-thread CPU: the main thread, the compile workers, the helpers, so a push's CPU can be split by who spent it.
function threadCpu(): Record<string, number> {
  const { threads, mainWakeups } = readThreadStats();
  const byThread: Record<string, number> = { 'main wake-ups': mainWakeups };
  for (const thread of threads) byThread[thread.main ? 'main' : `${threadKinds.get(thread.tid) ?? thread.comm}:${thread.tid}`] = thread.cpuNs / 1e6;
  return byThread;
}
// FANOUT_MARKS=1: each push's start and each usage report's time on stderr, monotonic µs (a
// --cpu-prof profile's clock), so a profile can be cut to the push windows.
const marks = process.env.FANOUT_MARKS === '1';
const mark = (what: string) => {
  if (marks) process.stderr.write(`fanout-mark ${what} ${Number(process.hrtime.bigint() / 1000n)}\n`);
};
const usage = (): FanoutUsage => {
  mark('usage');
  const threadCpuMs = threadCpu();
  const cpu = process.cpuUsage();
  readFreed();
  const allocatedBytes = process.memoryUsage().heapUsed + freedBytes;
  collect?.();
  readFreed();
  const memory = process.memoryUsage();
  return { cpuMicros: cpu.user + cpu.system, rssBytes: memory.rss, heapUsedBytes: memory.heapUsed, externalBytes: memory.external, allocatedBytes, threadCpuMs };
};

// FANOUT_HEAP_SAMPLE=FILE (diagnosis): V8's sampling heap profiler, garbage included, from the
// first {prepare} (streams connected) until {stop}; open FILE (.heapprofile) in Chrome DevTools.
const heapSampleFile = process.env.FANOUT_HEAP_SAMPLE;
let heapSession: Session | undefined;
async function startHeapSample(): Promise<void> {
  if (!heapSampleFile || heapSession) return;
  heapSession = new Session();
  heapSession.connect();
  // FANOUT_HEAP_SAMPLE_PROMOTED=1: leave out what scavenges freed, so what remains is what was promoted (or is live).
  const promotedOnly = process.env.FANOUT_HEAP_SAMPLE_PROMOTED === '1';
  await heapSession.post('HeapProfiler.startSampling', { samplingInterval: 8192, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: !promotedOnly });
}
async function stopHeapSample(): Promise<void> {
  if (!heapSession) return;
  const { profile } = await heapSession.post('HeapProfiler.stopSampling');
  await writeFile(heapSampleFile!, JSON.stringify(profile));
}

/** Top-level type_url (4) and response_nonce (5) of a DiscoveryRequest, without decoding the rest. */
function requestHead(bytes: Uint8Array): { typeUrl: string; nonce: string } {
  const reader = new BinaryReader(bytes);
  let typeUrl = '';
  let nonce = '';
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 4 && wireType === WireType.LengthDelimited) typeUrl = reader.string();
    else if (field === 5 && wireType === WireType.LengthDelimited) nonce = reader.string();
    else reader.skip(wireType);
  }
  return { typeUrl, nonce };
}

interface Running {
  readonly port: number;
  push(k: number): Promise<void>;
  /** Floor only: encode push k's bytes ahead, outside the measured window (the floor only writes). */
  prepare?(k: number): void;
  stop(): Promise<void>;
}

async function startEgress(): Promise<Running> {
  const { cp, dataDir } = await startBenchControlPlane('fanout', {
    embeddedDefault: true,
    xdsLimits: { maxStreams: 100_000 },
    // FANOUT_COMPILE_WORKERS=N (diagnosis): compile workers other than the default (0: on the event loop).
    ...(process.env.FANOUT_COMPILE_WORKERS && { compileWorkers: Number(process.env.FANOUT_COMPILE_WORKERS) }),
  });
  await cp.store.put('fanout', pushSpec(0), { client: 'bench' });
  return {
    port: cp.xdsPort,
    push: async (k) => {
      const result = await cp.store.put('fanout', pushSpec(k), { client: 'bench' });
      if (!result.ok) throw new Error(`push ${k}: ${result.error.message}`);
    },
    stop: async () => {
      await cp.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function startFloor(): Promise<Running> {
  // The same resources the egress server sends, encoded by the same code, once per push.
  const cache = new SnapshotCache(egressGroupCompiler());
  const policies = (k: number): Policy[] => [
    { name: EMBEDDED_DEFAULT_POLICY.name, ...EMBEDDED_DEFAULT_POLICY.spec },
    { name: 'fanout', ...pushSpec(k) } as Policy,
  ];
  const responses = new Map<string, Buffer>();
  const prepare = (k: number) => {
    cache.setPolicies(policies(k));
    const snapshot = cache.snapshotFor('floor');
    for (const typeUrl of [TypeUrl.Cluster, TypeUrl.Listener]) responses.set(typeUrl, encodeSotwResponse(typeUrl, snapshot.resourceSet(typeUrl)!, `floor-${k}`).bytes);
  };
  prepare(0);
  const listening = new Set<ServerDuplexStream<Buffer, Buffer>>();
  const server = new Server({ 'grpc.max_concurrent_streams': 100, 'grpc.max_receive_message_length': 4 * 1024 * 1024 });
  const pass = (b: Buffer) => b;
  const method = { path: '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources', requestStream: true, responseStream: true, requestSerialize: pass, requestDeserialize: pass, responseSerialize: pass, responseDeserialize: pass };
  server.addService({ streamAggregatedResources: method }, {
    streamAggregatedResources: (call: ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (request: Buffer) => {
        const { typeUrl, nonce } = requestHead(request);
        if (nonce !== '') return;
        const response = responses.get(typeUrl);
        if (response) call.write(response);
        if (typeUrl === TypeUrl.Listener) listening.add(call);
      });
      const forget = () => listening.delete(call);
      call.on('end', () => {
        forget();
        call.end();
      });
      call.on('error', forget);
      call.on('cancelled', forget);
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  let prepared = 0;
  return {
    port,
    push: async (k) => {
      if (prepared !== k) prepare(k);
      prepared = k;
      const bytes = responses.get(TypeUrl.Listener)!;
      for (const call of listening) call.write(bytes);
    },
    prepare: (k) => {
      prepare(k);
      prepared = k;
    },
    stop: async () => {
      server.forceShutdown();
    },
  };
}

const mode = process.argv[2];
if (mode !== 'egress' && mode !== 'floor') throw new Error('usage: fanoutServer.js egress|floor');
const running = mode === 'egress' ? await startEgress() : await startFloor();
labelNewThreads('worker');
process.on('message', (command: FanoutServerCommand) => {
  void (async () => {
    try {
      if ('push' in command) {
        mark(`push ${command.push}`);
        await running.push(command.push);
        process.send!({ pushed: command.push });
      } else if ('prepare' in command) {
        await startHeapSample();
        running.prepare?.(command.prepare);
        process.send!({ prepared: command.prepare });
      } else if ('usage' in command) {
        process.send!(usage());
      } else {
        await stopHeapSample();
        await running.stop();
        process.exit(0);
      }
    } catch (error) {
      process.send!({ error: String(error) });
    }
  })();
});
process.send!({ port: running.port, usage: usage() });
