// The load of bench/fanout.ts: N Envoy-like SotW streams in one process of its
// own (so its CPU is reported apart from the server's), on bare HTTP/2 so that
// the client costs as little as it can: each response's top-level fields are
// read (not its resources), and it is ACKed as Envoy does (version, nonce);
// Listeners are asked for once Clusters arrived. Driven over IPC:
// {connect} → when every stream holds a Listener; {await: {listeners, t0}} →
// when every stream received that many Listener responses, with arrival times
// relative to t0 (process.hrtime.bigint(), one monotonic clock per machine).
import { connect, type ClientHttp2Session } from 'node:http2';
import { TypeUrl } from '../src/envoy/typeUrls.js';
import { discoveryRequest, responseHead, type RequestFields } from './sotwWire.js';

export type FanoutClientCommand =
  /** Opens `streams` more streams (a second connect adds to the first). */
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

const request = (fields: RequestFields): Buffer => frame(discoveryRequest(fields));

interface StreamState {
  listeners: number;
  lastListenerAt: bigint;
  listenerAsked: boolean;
}

// Like Envoy, a connection that fails is opened again after a jittered
// backoff, and one that shows no sign of life is given up: Envoy detects a
// dead xDS connection by TCP errors (and HTTP/2 keepalive PINGs when its
// bootstrap configures them) and reconnects. Without this, a storm of 10,000 connects loses the few whose
// handshake the kernel dropped (listen queue full: the client sees the
// connection established, the server never accepts it) and waits forever.
// Generous: during the storm the server answered PINGs only after more than 15 s on half
// the connections (a 15 s timeout reopened 5,039 of 10,000); a dropped handshake is reset
// by the kernel after about a minute anyway. The PING is the net under that.
const PING_TIMEOUT_MS = 90_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 10_000;

interface Connection {
  readonly streams: number[];
  session?: ClientHttp2Session;
  attempts: number;
  /** The PING deadline of the session being opened; cleared by the PING's answer or the first response. */
  deadline?: NodeJS.Timeout;
}

/** The connection shows a sign of life (its PING answered, or a response arrived): no need to give it up. */
function alive(connection: Connection): void {
  if (connection.deadline === undefined) return;
  clearTimeout(connection.deadline);
  connection.deadline = undefined;
  connection.attempts = 0;
}

const connections: Connection[] = [];
const states: StreamState[] = [];
const nodeIds: string[] = [];
let address = '';
let stopping = false;
/** Why connections were opened again (error code or 'ping timeout' → count): the storm's casualties. */
const reconnects = new Map<string, number>();
let marks: number[] = [];
let lastCpu = process.cpuUsage();

function reconnectLater(connection: Connection, session: ClientHttp2Session, cause: string): void {
  if (stopping || connection.session !== session) return; // already handled for this session
  delete connection.session;
  session.destroy();
  reconnects.set(cause, (reconnects.get(cause) ?? 0) + 1);
  connection.attempts += 1;
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(connection.attempts, 10));
  setTimeout(() => openConnection(connection), Math.random() * ceiling).unref();
}

function openConnection(connection: Connection): void {
  if (stopping) return;
  const session = connect(`http://${address}`);
  connection.session = session;
  session.on('error', (error: NodeJS.ErrnoException) => reconnectLater(connection, session, error.code ?? error.message));
  session.on('close', () => reconnectLater(connection, session, 'closed'));
  // A PING that the server's HTTP/2 layer never acknowledges: it never accepted the connection
  // (the client's side is established all the same; the kernel resets it only a minute later).
  // Sent once connected: Node cancels a PING asked for while connecting.
  // A response on any of its streams is as good a sign as the PING's answer: in a connect storm a
  // server busy with thousands of first requests answered PINGs late, and connections already
  // serving their streams were given up and opened again, disturbing what was measured next.
  if (connection.deadline !== undefined) clearTimeout(connection.deadline);
  connection.deadline = setTimeout(() => reconnectLater(connection, session, 'ping timeout'), PING_TIMEOUT_MS).unref();
  session.once('connect', () =>
    session.ping((error) => {
      if (error) return; // the session failed: its error or close handler reconnects
      if (connection.session === session) alive(connection);
    }),
  );
  for (const index of connection.streams) open(connection, session, index);
}

function open(connection: Connection, session: ClientHttp2Session, index: number): void {
  const state = states[index]!;
  state.listenerAsked = false;
  const stream = session.request({ ':method': 'POST', ':path': PATH, 'content-type': 'application/grpc', te: 'trailers' });
  stream.on('error', () => {});
  // A stream the server ended (shed, reset) on a live connection is opened again, as Envoy's gRPC mux does.
  stream.on('close', () => {
    if (stopping || connection.session !== session || session.destroyed || session.closed) return;
    reconnects.set('stream closed', (reconnects.get('stream closed') ?? 0) + 1);
    setTimeout(() => {
      if (connection.session === session && !session.destroyed && !session.closed) open(connection, session, index);
    }, BACKOFF_BASE_MS * (1 + Math.random())).unref();
  });
  let pending: Buffer = Buffer.alloc(0);
  stream.on('data', (chunk: Buffer) => {
    if (connection.session === session) alive(connection);
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
  stream.write(request({ nodeId: nodeIds[index]!, typeUrl: TypeUrl.Cluster }));
}

function until(predicate: () => boolean, timeoutMs: number, what: string, detail = () => ''): Promise<void> {
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
      reject(new Error(`${what}: timed out after ${timeoutMs} ms ${detail()}`));
    }, timeoutMs);
  });
}

process.on('message', (command: FanoutClientCommand) => {
  void (async () => {
    try {
      if ('connect' in command) {
        const { streams, perConnection } = command.connect;
        address = command.connect.address;
        const prefix = command.connect.nodePrefix ?? 'fanout-';
        // A second connect adds streams (on connections of their own) beside those already open.
        const first = states.length;
        const firstConnection = connections.length;
        for (let i = first; i < first + streams; i++) {
          states.push({ listeners: 0, lastListenerAt: 0n, listenerAsked: false });
          nodeIds.push(`${prefix}${i}`);
          if ((i - first) % perConnection === 0) connections.push({ streams: [], attempts: 0 });
          connections.at(-1)!.streams.push(i);
        }
        for (const [k, connection] of connections.slice(firstConnection).entries()) {
          openConnection(connection);
          // Let the event loop breathe while opening thousands of streams.
          if (k % Math.max(1, Math.floor(500 / perConnection)) === 0) await new Promise((r) => setImmediate(r));
        }
        await until(() => states.every((s) => s.listeners >= 1), 1_200_000, 'initial Listeners', () => `reconnects ${JSON.stringify(Object.fromEntries(reconnects))}`);
        lastCpu = process.cpuUsage();
        process.send!({ connected: states.length, reconnects: Object.fromEntries(reconnects) });
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
        stopping = true;
        for (const connection of connections) connection.session?.destroy();
        process.exit(0);
      }
    } catch (error) {
      process.send!({ error: String(error) });
    }
  })();
});
process.send!({ ready: true });
