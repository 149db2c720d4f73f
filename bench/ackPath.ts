// The server's own synchronous work per stream and push, with grpc-js and HTTP/2 left out:
// N SotW streams on in-process stand-ins for grpc-js calls (EventEmitters whose write takes the
// bytes at once); a push hands every stream's watch a new snapshot (one Listener response per
// stream) and then feeds each stream its ACK. Timed: the watch callbacks and the ACK deliveries
// only (building the ACKs is the client's work). What the fan-out bench's server-CPU figure
// cannot resolve under load: the part of a push that src/xds itself costs per stream.
//   node dist/bench/ackPath.js [streams=1000] [pushes=300]
import { EventEmitter } from 'node:events';
import { SotwStream } from '../src/xds/sotwStream.js';
import { NodeRegistry } from '../src/xds/nodeRegistry.js';
import { StreamGuard } from '../src/xds/streamGuard.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { silentLogger } from '../src/log.js';
import { Snapshot } from '../src/snapshot/snapshot.js';
import { TypeUrl } from '../src/envoy/typeUrls.js';
import type { StreamContext } from '../src/xds/adsStream.js';
import { discoveryRequest, responseHead, type RequestFields } from './sotwWire.js';

const streams = Number(process.argv[2] ?? 1000);
const pushes = Number(process.argv[3] ?? 300);

const request = (fields: RequestFields): Buffer => Buffer.from(discoveryRequest(fields));

let generation = 0;
const resource = (typeUrl: string, name: string, version: string) => ({ typeUrl, name, version, bytes: new Uint8Array(2000) });
const nextSnapshot = () => {
  generation += 1;
  return new Snapshot([resource(TypeUrl.Cluster, 'c', 'c1'), resource(TypeUrl.Listener, 'l', `l${generation}`)], process.hrtime.bigint());
};
let current = nextSnapshot();
const watchers = new Set<(snapshot: Snapshot) => void>();
const source = {
  watch: (_id: string, callback: (snapshot: Snapshot) => void) => {
    watchers.add(callback);
    return () => watchers.delete(callback);
  },
  currentSnapshot: () => current,
};
const metrics = createMetrics();
const guard = new StreamGuard(1e9, 60_000);
const deps = {
  source,
  registry: new NodeRegistry(source, () => ({ latest: generation, served: generation })),
  metrics,
  logger: silentLogger,
  limits: { maxNodeIdBytes: 1024, stuckWriteMs: 60_000 },
  guard,
  nodeIdentity: { kind: 'none' },
} as unknown as StreamContext;

interface FakeCall extends EventEmitter {
  pending: Buffer[];
  last: Map<string, Buffer>;
}
const calls: FakeCall[] = [];
for (let i = 0; i < streams; i++) {
  const call = Object.assign(new EventEmitter(), {
    pending: [] as Buffer[],
    last: new Map<string, Buffer>(),
    write(message: Buffer, done: () => void) {
      call.pending.push(message);
      done();
      return true;
    },
    sendMetadata() {},
    getPeer: () => 'bench',
    end() {},
  });
  guard.admit();
  new SotwStream(deps, call as never, 'sotw').start();
  call.emit('data', request({ nodeId: `n${i}`, typeUrl: TypeUrl.Cluster }));
  call.emit('data', request({ typeUrl: TypeUrl.Listener }));
  calls.push(call);
}
const sortOut = () => {
  for (const call of calls) {
    for (const message of call.pending) call.last.set(responseHead(message).typeUrl, message);
    call.pending.length = 0;
  }
};
const ackOf = (call: FakeCall, typeUrl: string): Buffer | undefined => {
  const message = call.last.get(typeUrl);
  if (!message) return undefined;
  call.last.delete(typeUrl);
  const h = responseHead(message);
  return request({ typeUrl: h.typeUrl, version: h.version, nonce: h.nonce });
};
for (const typeUrl of [TypeUrl.Cluster, TypeUrl.Listener]) {
  sortOut();
  for (const call of calls) {
    const ack = ackOf(call, typeUrl);
    if (ack) call.emit('data', ack);
  }
}
let ns = 0n;
const cpu0 = process.cpuUsage();
for (let p = 0; p < pushes; p++) {
  current = nextSnapshot();
  const t0 = process.hrtime.bigint();
  for (const watcher of watchers) watcher(current);
  ns += process.hrtime.bigint() - t0;
  sortOut();
  const acks = calls.map((call) => ackOf(call, TypeUrl.Listener)!);
  const t1 = process.hrtime.bigint();
  for (let i = 0; i < streams; i++) calls[i]!.emit('data', acks[i]);
  ns += process.hrtime.bigint() - t1;
  // Lets the batched counters flush, as the event loop would between pushes.
  if (p % 20 === 19) await new Promise((resolve) => setImmediate(resolve));
}
await new Promise((resolve) => setImmediate(resolve));
const cpu = process.cpuUsage(cpu0);
const acked = (await metrics.acks.get()).values.find((v) => v.labels.type === 'Listener')?.value;
console.log(
  `${streams} streams, ${pushes} pushes: ${(Number(ns) / pushes / streams).toFixed(0)} ns of the server's own work per stream per push (write + ACK); ` +
    `process CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms in all (client side included); Listener ACKs counted ${acked}`,
);
