// The load of bench/fanout.ts: N Envoy-like SotW streams in one process of its
// own (so its CPU is reported apart from the server's), on bare HTTP/2 so that
// the client costs as little as it can: each response's top-level fields are
// read (not its resources), and it is ACKed as Envoy does (version, nonce);
// Listeners are asked for once Clusters arrived. Driven over IPC:
// {connect} → when every stream holds a Listener; {await: {listeners, t0}} →
// when every stream received that many Listener responses, with arrival times
// relative to t0 (process.hrtime.bigint(), one monotonic clock per machine).
import { connect, type ClientHttp2Session } from 'node:http2';
import { BinaryReader, BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { TypeUrl } from '../src/envoy/typeUrls.js';

export type FanoutClientCommand =
  | { connect: { address: string; streams: number; perConnection: number; nodePrefix?: string } }
  | { await: { listeners: number; t0: string; timeoutMs: number } }
  /** Remembers each stream's Listener count, for awaitMore. */
  | { mark: true }
  /** Until `only` (stream indexes; default all) each received `more` Listeners beyond the mark. */
  | { awaitMore: { more: number; t0: string; timeoutMs: number; only?: number[] } }
  | { stop: true };

export interface AwaitResult {
  /** ms from t0 until each stream received the awaited Listener. */
  readonly arrivalsMs: number[];
  /** CPU µs this process spent since the previous await (or connect). */
  readonly clientCpuMicros: number;
}

const PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';

function frame(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

function request(fields: { nodeId?: string; typeUrl: string; version?: string; nonce?: string }): Buffer {
  const w = new BinaryWriter();
  if (fields.version) w.tag(1, WireType.LengthDelimited).string(fields.version);
  if (fields.nodeId) w.tag(2, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(fields.nodeId).join();
  w.tag(4, WireType.LengthDelimited).string(fields.typeUrl);
  if (fields.nonce) w.tag(5, WireType.LengthDelimited).string(fields.nonce);
  return frame(w.finish());
}

function responseHead(bytes: Uint8Array): { version: string; typeUrl: string; nonce: string } {
  const reader = new BinaryReader(bytes);
  let version = '';
  let typeUrl = '';
  let nonce = '';
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) version = reader.string();
    else if (field === 4 && wireType === WireType.LengthDelimited) typeUrl = reader.string();
    else if (field === 5 && wireType === WireType.LengthDelimited) nonce = reader.string();
    else reader.skip(wireType);
  }
  return { version, typeUrl, nonce };
}

interface StreamState {
  listeners: number;
  lastListenerAt: bigint;
  listenerAsked: boolean;
}

const sessions: ClientHttp2Session[] = [];
const states: StreamState[] = [];
let marks: number[] = [];
let lastCpu = process.cpuUsage();

function open(session: ClientHttp2Session, nodeId: string): void {
  const state: StreamState = { listeners: 0, lastListenerAt: 0n, listenerAsked: false };
  states.push(state);
  const stream = session.request({ ':method': 'POST', ':path': PATH, 'content-type': 'application/grpc', te: 'trailers' });
  stream.on('error', () => {});
  let pending: Buffer = Buffer.alloc(0);
  stream.on('data', (chunk: Buffer) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const length = pending.readUInt32BE(1);
      const head = responseHead(pending.subarray(5, 5 + length));
      pending = pending.subarray(5 + length);
      stream.write(request({ typeUrl: head.typeUrl, version: head.version, nonce: head.nonce }));
      if (head.typeUrl === TypeUrl.Listener) {
        state.listeners += 1;
        state.lastListenerAt = process.hrtime.bigint();
      } else if (head.typeUrl === TypeUrl.Cluster && !state.listenerAsked) {
        state.listenerAsked = true;
        stream.write(request({ typeUrl: TypeUrl.Listener }));
      }
    }
  });
  stream.write(request({ nodeId, typeUrl: TypeUrl.Cluster }));
}

function until(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    // Checking on every arrival would be O(N²); a 5 ms poll costs nothing measurable and bounds the error.
    const poll = setInterval(() => {
      if (!predicate()) return;
      clearTimeout(timer);
      clearInterval(poll);
      resolve();
    }, 5);
    const timer = setTimeout(() => {
      clearInterval(poll);
      reject(new Error(`${what}: timed out after ${timeoutMs} ms`));
    }, timeoutMs);
  });
}

process.on('message', (command: FanoutClientCommand) => {
  void (async () => {
    try {
      if ('connect' in command) {
        const { address, streams, perConnection } = command.connect;
        const prefix = command.connect.nodePrefix ?? 'fanout-';
        for (let i = 0; i < streams; i++) {
          if (i % perConnection === 0) {
            const session = connect(`http://${address}`);
            session.on('error', () => {});
            sessions.push(session);
          }
          open(sessions.at(-1)!, `${prefix}${i}`);
          // Let the event loop breathe while opening thousands of streams.
          if (i % 500 === 499) await new Promise((r) => setImmediate(r));
        }
        await until(() => states.every((s) => s.listeners >= 1), 1_200_000, 'initial Listeners');
        lastCpu = process.cpuUsage();
        process.send!({ connected: states.length });
      } else if ('await' in command) {
        const { listeners, t0, timeoutMs } = command.await;
        await until(() => states.every((s) => s.listeners >= listeners), timeoutMs, `Listener ${listeners}`);
        const start = BigInt(t0);
        const cpu = process.cpuUsage(lastCpu);
        lastCpu = process.cpuUsage();
        const result: AwaitResult = { arrivalsMs: states.map((s) => Number(s.lastListenerAt - start) / 1e6), clientCpuMicros: cpu.user + cpu.system };
        process.send!(result);
      } else if ('mark' in command) {
        marks = states.map((s) => s.listeners);
        lastCpu = process.cpuUsage();
        process.send!({ marked: marks.length });
      } else if ('awaitMore' in command) {
        const { more, t0, timeoutMs, only } = command.awaitMore;
        const indexes = only ?? states.map((_, i) => i);
        await until(() => indexes.every((i) => states[i]!.listeners >= marks[i]! + more), timeoutMs, `${more} more Listener(s)`);
        const start = BigInt(t0);
        const cpu = process.cpuUsage(lastCpu);
        lastCpu = process.cpuUsage();
        const result: AwaitResult = { arrivalsMs: indexes.map((i) => Number(states[i]!.lastListenerAt - start) / 1e6), clientCpuMicros: cpu.user + cpu.system };
        process.send!(result);
      } else {
        for (const session of sessions) session.destroy();
        process.exit(0);
      }
    } catch (error) {
      process.send!({ error: String(error) });
    }
  })();
});
process.send!({ ready: true });
