// What SotW and Delta streams share: identifying the node (bounded, and bound
// to the client certificate), following its snapshot, nonces, writing with
// metrics and status, the bounds a client cannot lift (a response the client
// does not take resets the stream), and the one ordering rule of ADS that
// matters here: Clusters reach Envoy before the Listener that uses them.
import { type ServerDuplexStream, status as GrpcStatus } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { typeLabel } from '../metrics/metrics.js';
import type { Snapshot } from '../snapshot/snapshot.js';
import { RESOURCE_TYPE_ORDER, TypeUrl, isServedResourceType } from '../envoy/typeUrls.js';
import { connectionBytesWritten, resetCall } from './callTransport.js';
import { readRequests } from './requestReader.js';
import { responseWriter, type ResponseWriter } from './responseWriter.js';
import type { XdsLimits } from './limits.js';
import { checkNodeIdentity, type NodeIdentityRule } from './nodeIdentity.js';
import type { NodeRegistry, StreamRecord } from './nodeRegistry.js';
import type { SnapshotSource } from './snapshotSource.js';
import { Stall, type GuardedStream, type StreamGuard } from './streamGuard.js';

export interface XdsDependencies {
  readonly source: SnapshotSource;
  readonly registry: NodeRegistry;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

/** What startXdsServer adds for its streams: the bounds, the server-wide guard, the identity rule. */
export interface StreamContext extends XdsDependencies {
  readonly limits: XdsLimits;
  readonly guard: StreamGuard;
  readonly nodeIdentity: NodeIdentityRule;
}

export interface NodeIdentity {
  readonly id: string;
  readonly cluster: string;
}

interface RequestWithNode {
  node?: { id: string; cluster: string } | undefined;
}

/**
 * A counter's increments added up and handed to prom-client once per turn of
 * the event loop: prom-client hashes the labels on every inc, and a push makes
 * one write and one ACK per stream (20,000 incs per push at 10,000 streams).
 * A scrape runs in a later turn, so it never misses a count.
 */
class BatchedCount {
  private pending = 0;
  constructor(private readonly target: { inc(value: number): void }) {}

  inc(): void {
    if (this.pending === 0) scheduleFlush(this);
    this.pending += 1;
  }

  flush(): void {
    const value = this.pending;
    this.pending = 0;
    if (value > 0) this.target.inc(value);
  }
}

let toFlush: BatchedCount[] = [];
function scheduleFlush(count: BatchedCount): void {
  if (toFlush.length === 0) {
    setImmediate(() => {
      const counts = toFlush;
      toFlush = [];
      for (const c of counts) c.flush();
    });
  }
  toFlush.push(count);
}

/** Per-type metric children, looked up once: labelling on every write and ACK showed in the push profile. */
interface TypeMetrics {
  readonly label: string;
  readonly sent: BatchedCount;
  readonly acks: BatchedCount;
  readonly nacks: BatchedCount;
  readonly latency: { observe(seconds: number): void };
}

const typeMetricsCache = new WeakMap<Metrics, Map<string, TypeMetrics>>();

/** The server's per-type children, name → children; a stream looks this map up once, not per write and ACK (it showed in the profile). */
function typeMetricsOf(metrics: Metrics): Map<string, TypeMetrics> {
  let byType = typeMetricsCache.get(metrics);
  if (!byType) typeMetricsCache.set(metrics, (byType = new Map()));
  return byType;
}

function typeMetrics(metrics: Metrics, typeUrl: string, byType = typeMetricsOf(metrics)): TypeMetrics {
  let children = byType.get(typeUrl);
  if (!children) {
    const type = typeLabel(typeUrl);
    children = {
      label: type,
      sent: new BatchedCount(metrics.responsesSent.labels({ type })),
      acks: new BatchedCount(metrics.acks.labels({ type })),
      nacks: new BatchedCount(metrics.nacks.labels({ type })),
      latency: metrics.pushLatency.labels({ type }),
    };
    byType.set(typeUrl, children);
  }
  return children;
}

let lastStreamId = 0;
const RECENT_NONCES = 16;

export abstract class AdsStream<Request extends RequestWithNode> implements GuardedStream {
  readonly streamId = ++lastStreamId;
  protected node?: NodeIdentity;
  protected snapshot?: Snapshot;
  protected logger: Logger;
  private unwatch?: () => void;
  private lastNonce = 0;
  /**
   * The last few nonces sent and the version each carried (a ring, filled in
   * place: a map churned by every push showed in the fan-out profile), to
   * record a late NACK of a superseded response.
   */
  private readonly recentNonces: string[] = [];
  private readonly recentVersions: string[] = [];
  private recentNext = 0;
  private readonly ignoredTypes = new Set<string>();
  /** Snapshots made after this carry a change the stream is pushing; their latency is measured. */
  private connectedAt = 0n;
  private closed = false;
  /** Responses handed to grpc-js whose bytes the client has not taken yet. */
  private unwritten = 0;
  private completedWrites = 0;
  readonly stall = new Stall();
  private readonly writer: ResponseWriter;
  /** SotW: the previous request's bytes (a copy), to drop an identical one undecoded. */
  private lastRequest?: Buffer;
  private lastRequestLength = 0;
  private readonly metricsByType: Map<string, TypeMetrics>;
  /** The registry's record of this stream (from open), written on every response and ACK without a lookup. */
  private registered?: StreamRecord;

  constructor(
    protected readonly deps: StreamContext,
    private readonly call: ServerDuplexStream<Buffer, Buffer>,
    private readonly variant: 'sotw' | 'delta',
  ) {
    this.logger = deps.logger.child({ stream: this.streamId, variant });
    this.writer = responseWriter(call as ServerDuplexStream<unknown, Buffer>);
    this.metricsByType = typeMetricsOf(deps.metrics);
  }

  private typeMetrics(typeUrl: string): TypeMetrics {
    return this.metricsByType.get(typeUrl) ?? typeMetrics(this.deps.metrics, typeUrl, this.metricsByType);
  }

  /** The request message from its bytes (throws on malformed input). */
  protected abstract decode(bytes: Buffer): Request;

  /**
   * True when a request identical to the previous one of the stream can change nothing, so
   * it is dropped before it is decoded (SotW: the same names, version and nonce again, as
   * a client flooding its first request sends). Not Delta: subscribing again to a resource
   * already held asks for it to be sent again.
   */
  protected abstract readonly repeatsChangeNothing: boolean;

  /** Call only after deps.guard.admit() said yes; the stream releases its place when it closes. */
  start(): void {
    this.deps.metrics.connectedStreams.inc({ variant: this.variant });
    const path = readRequests(this.call, this.deps.limits.maxRequestBytes, {
      message: (bytes) => this.receive(bytes),
      end: () => {
        this.close('client closed the stream');
        this.call.end();
      },
      refuse: (reason, code, details) => this.refuse(reason, code, details),
    });
    this.deps.metrics.streamsRead.inc({ path });
    this.call.on('error', (error: Error) => this.close(`stream error: ${error.message}`));
    this.call.on('cancelled', () => this.close('cancelled'));
  }

  /** Handles one request of a type; the node is known by then. */
  protected abstract onRequest(request: Request): void;

  /** Sends what the stream owes for a type, if anything (called on requests, answers and snapshot changes). */
  protected abstract flush(typeUrl: string): void;

  /** Whether this stream has subscribed to the type. */
  protected abstract subscribed(typeUrl: string): boolean;

  /** True while a response of that type is sent and neither ACKed nor NACKed. */
  protected abstract awaitingAnswer(typeUrl: string): boolean;

  private receive(bytes: Buffer): void {
    if (this.closed) return;
    if (this.repeatsChangeNothing) {
      const length = bytes.length;
      if (this.lastRequest !== undefined && this.lastRequestLength === length && bytes.compare(this.lastRequest, 0, length) === 0) {
        this.deps.metrics.repeatedRequests.inc();
        return;
      }
      // A copy (the bytes may be a view into a larger buffer of grpc-js's), into the stream's own
      // buffer while it fits: a new one per request, kept until the next push, was old-generation
      // garbage of every stream at every push. A large one (a first request with node metadata)
      // is held no longer than before: until a small one comes.
      let room = this.lastRequest;
      if (room === undefined || room.length < length || (room.length > 4096 && length <= 4096)) this.lastRequest = room = Buffer.allocUnsafe(Math.max(length, 256));
      bytes.copy(room, 0, 0, length);
      this.lastRequestLength = length;
    }
    let request: Request;
    try {
      request = this.decode(bytes);
    } catch (error) {
      this.refuse('malformed', GrpcStatus.INVALID_ARGUMENT, `the discovery request could not be decoded: ${error instanceof Error ? error.message : String(error)}`);
      return;
    }
    try {
      if (!this.node && !this.identify(request)) return;
      this.onRequest(request);
    } catch (error) {
      this.logger.error('failed to handle a discovery request', { error });
      this.fail(GrpcStatus.INTERNAL, 'internal error while handling the discovery request');
    }
  }

  private identify(request: Request): boolean {
    const id = request.node?.id ?? '';
    if (id === '') {
      this.refuse('node_id', GrpcStatus.INVALID_ARGUMENT, 'the first discovery request of a stream must carry node.id');
      return false;
    }
    // Before anything matches, logs or stores it: node globs and logs are not for 100 KB ids.
    const idBytes = Buffer.byteLength(id);
    if (idBytes > this.deps.limits.maxNodeIdBytes) {
      this.refuse('node_id', GrpcStatus.INVALID_ARGUMENT, `node.id is ${idBytes} bytes long; at most ${this.deps.limits.maxNodeIdBytes} are accepted`);
      return false;
    }
    if (this.deps.nodeIdentity.kind !== 'none') {
      const check = checkNodeIdentity(this.deps.nodeIdentity, this.call.getAuthContext().sslPeerCertificate, id);
      if (!check.ok) {
        this.refuse('identity', GrpcStatus.PERMISSION_DENIED, check.message, { peer: this.call.getPeer() });
        return false;
      }
    }
    this.node = { id, cluster: request.node?.cluster ?? '' };
    this.connectedAt = process.hrtime.bigint();
    this.logger = this.logger.child({ node: id });
    this.registered = this.deps.registry.open(this.streamId, this.node);
    // Watch first: a node whose group compiles in a worker has no snapshot yet, and is sent
    // its configuration when the watch reports it.
    this.unwatch = this.deps.source.watch(id, (snapshot) => {
      this.snapshot = snapshot;
      // One stream's failure must not stop the cache from telling the others.
      try {
        this.flushAll();
      } catch (error) {
        this.logger.error('failed to push a change', { error });
        this.fail(GrpcStatus.INTERNAL, 'internal error while pushing a change');
      }
    });
    this.snapshot = this.deps.source.currentSnapshot(id);
    this.logger.info('envoy connected', { cluster: this.node.cluster });
    return true;
  }

  /**
   * False for a type this control plane does not serve: such requests are never
   * answered, so they cannot disturb the served types (Envoy's initial fetch
   * timeout covers them). Logged once per type and stream.
   */
  protected serves(typeUrl: string): boolean {
    if (isServedResourceType(typeUrl)) return true;
    if (!this.ignoredTypes.has(typeUrl)) {
      this.ignoredTypes.add(typeUrl);
      this.logger.warn('request for a resource type this control plane does not serve; ignored', { typeUrl });
    }
    return false;
  }

  /** Clusters first, then the listener (only served types are ever subscribed). */
  protected flushAll(): void {
    for (const typeUrl of RESOURCE_TYPE_ORDER) if (this.subscribed(typeUrl)) this.flush(typeUrl);
  }

  /** A Listener waits while its Clusters are in flight; it goes out when they are answered. */
  protected mustWaitForClusters(typeUrl: string): boolean {
    return typeUrl === TypeUrl.Listener && this.awaitingAnswer(TypeUrl.Cluster);
  }

  protected nextNonce(): string {
    this.lastNonce += 1;
    return String(this.lastNonce);
  }

  /**
   * Hands a response to grpc-js. The callback runs once HTTP/2 took the bytes
   * (flow control lets a client that does not read hold them back); until
   * then the guard's clock runs, and progress restarts it. The streams keep at
   * most one response per type unanswered, so a slow client holds at most one
   * response per type in buffers, never a queue.
   */
  protected write(typeUrl: string, version: string, nonce: string, bytes: Buffer, framed: Buffer): void {
    this.recentNonces[this.recentNext] = nonce;
    this.recentVersions[this.recentNext] = version;
    this.recentNext = (this.recentNext + 1) % RECENT_NONCES;
    this.unwritten += 1;
    this.deps.guard.writing(this);
    this.writer.write(bytes, framed, this.onWritten);
    const metrics = this.typeMetrics(typeUrl);
    metrics.sent.inc();
    // Also when the change waited for an ACK of an earlier response: that wait is part of the latency.
    if (this.snapshot && this.snapshot.changedAt > this.connectedAt) {
      metrics.latency.observe(Number(process.hrtime.bigint() - this.snapshot.changedAt) / 1e9);
    }
    this.deps.registry.sent(this.registered!, typeUrl, version);
  }

  /** One callback for all of the stream's writes (not a closure per write). */
  private readonly onWritten = (): void => {
    this.unwritten -= 1;
    this.completedWrites += 1;
    if (this.closed) return;
    if (this.unwritten === 0) this.deps.guard.written(this);
    else this.deps.guard.writing(this);
  };

  protected recordAck(typeUrl: string, version: string): void {
    this.typeMetrics(typeUrl).acks.inc();
    // The stream's snapshot is the node's current one (the watch keeps it so): no lookup per ACK.
    this.deps.registry.acked(this.registered!, typeUrl, version, this.snapshot);
  }

  /** The version a recent response of this stream carried, by its nonce. */
  protected versionOfNonce(nonce: string): string | undefined {
    const at = this.recentNonces.indexOf(nonce);
    return at < 0 ? undefined : this.recentVersions[at];
  }

  /** superseded: the NACK names a response older than the one in flight (recorded all the same: Envoy said no to it). */
  protected recordNack(typeUrl: string, version: string, message: string, superseded = false): void {
    this.typeMetrics(typeUrl).nacks.inc();
    this.deps.registry.nacked(this.streamId, typeUrl, version, message, superseded);
    this.logger.warn('envoy rejected a configuration (NACK); the last good one stays in force', {
      type: typeLabel(typeUrl),
      version,
      error: message,
      ...(superseded ? { superseded } : {}),
    });
  }

  /** The text of a NACK's error_detail. */
  protected static nackMessage(detail: { message: string; code: number }): string {
    return detail.message || `gRPC code ${detail.code}`;
  }

  progress(): number {
    return this.completedWrites + connectionBytesWritten(this.call);
  }

  abortStuck(stalledMs: number): void {
    if (this.closed) return;
    this.deps.metrics.streamsRefused.inc({ reason: 'stuck' });
    this.logger.warn('resetting a stream whose client does not read its responses', {
      node: this.node?.id,
      stalledMs,
      limitMs: this.deps.limits.stuckWriteMs,
      peer: this.call.getPeer(),
    });
    this.close('the client did not read its responses');
    resetCall(this.call);
  }

  private refuse(reason: string, code: GrpcStatus, details: string, fields: Record<string, unknown> = {}): void {
    this.deps.metrics.streamsRefused.inc({ reason });
    this.fail(code, details, fields);
  }

  private fail(code: GrpcStatus, details: string, fields: Record<string, unknown> = {}): void {
    this.logger.warn('closing stream', { code: GrpcStatus[code], details, ...fields });
    this.call.emit('error', { code, details });
    this.close(details);
  }

  private close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.deps.guard.release(this);
    this.unwatch?.();
    this.deps.metrics.connectedStreams.dec({ variant: this.variant });
    if (this.node) {
      this.deps.registry.close(this.streamId);
      this.logger.info('envoy disconnected', { reason });
    }
  }
}
