// What SotW and Delta streams share: identifying the node, following its
// snapshot, nonces, writing with metrics and status, and the one ordering rule
// of ADS that matters here: Clusters reach Envoy before the Listener that uses them.
import { type ServerDuplexStream, status as GrpcStatus } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { typeLabel } from '../metrics/metrics.js';
import type { Snapshot } from '../snapshot/snapshot.js';
import { RESOURCE_TYPE_ORDER, TypeUrl, isServedResourceType } from '../envoy/typeUrls.js';
import type { NodeRegistry } from './nodeRegistry.js';
import type { SnapshotSource } from './snapshotSource.js';

export interface XdsDependencies {
  readonly source: SnapshotSource;
  readonly registry: NodeRegistry;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

export interface NodeIdentity {
  readonly id: string;
  readonly cluster: string;
}

interface RequestWithNode {
  node?: { id: string; cluster: string } | undefined;
}

let lastStreamId = 0;

export abstract class AdsStream<Request extends RequestWithNode> {
  readonly streamId = ++lastStreamId;
  protected node?: NodeIdentity;
  protected snapshot?: Snapshot;
  protected logger: Logger;
  private unwatch?: () => void;
  private lastNonce = 0;
  private readonly ignoredTypes = new Set<string>();
  /** Snapshots made after this carry a change the stream is pushing; their latency is measured. */
  private connectedAt = 0n;
  private closed = false;

  constructor(
    protected readonly deps: XdsDependencies,
    private readonly call: ServerDuplexStream<Request, Buffer>,
    private readonly variant: 'sotw' | 'delta',
  ) {
    this.logger = deps.logger.child({ stream: this.streamId, variant });
  }

  start(): void {
    this.deps.metrics.connectedStreams.inc({ variant: this.variant });
    this.call.on('data', (request: Request) => this.receive(request));
    this.call.on('end', () => {
      this.close('client closed the stream');
      this.call.end();
    });
    this.call.on('error', (error: Error) => this.close(`stream error: ${error.message}`));
    this.call.on('cancelled', () => this.close('cancelled'));
  }

  /** Handles one request of a type; the node is known by then. */
  protected abstract onRequest(request: Request): void;

  /** Sends what the stream owes for a type, if anything (called on requests, answers and snapshot changes). */
  protected abstract flush(typeUrl: string): void;

  /** Types this stream has subscribed to. */
  protected abstract subscribedTypes(): string[];

  /** True while a response of that type is sent and neither ACKed nor NACKed. */
  protected abstract awaitingAnswer(typeUrl: string): boolean;

  private receive(request: Request): void {
    if (this.closed) return;
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
      this.fail(GrpcStatus.INVALID_ARGUMENT, 'the first discovery request of a stream must carry node.id');
      return false;
    }
    this.node = { id, cluster: request.node?.cluster ?? '' };
    this.connectedAt = process.hrtime.bigint();
    this.logger = this.logger.child({ node: id });
    this.deps.registry.open(this.streamId, this.node);
    this.snapshot = this.deps.source.snapshotFor(id);
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
    const subscribed = this.subscribedTypes();
    for (const typeUrl of RESOURCE_TYPE_ORDER) if (subscribed.includes(typeUrl)) this.flush(typeUrl);
  }

  /** A Listener waits while its Clusters are in flight; it goes out when they are answered. */
  protected mustWaitForClusters(typeUrl: string): boolean {
    return typeUrl === TypeUrl.Listener && this.awaitingAnswer(TypeUrl.Cluster);
  }

  protected nextNonce(): string {
    this.lastNonce += 1;
    return String(this.lastNonce);
  }

  protected write(typeUrl: string, version: string, bytes: Buffer): void {
    this.call.write(bytes);
    const type = typeLabel(typeUrl);
    this.deps.metrics.responsesSent.inc({ type });
    // Also when the change waited for an ACK of an earlier response: that wait is part of the latency.
    if (this.snapshot && this.snapshot.changedAt > this.connectedAt) {
      this.deps.metrics.pushLatency.observe({ type }, Number(process.hrtime.bigint() - this.snapshot.changedAt) / 1e9);
    }
    this.deps.registry.sent(this.streamId, typeUrl, version);
    this.logger.debug('response sent', { type, version });
  }

  protected recordAck(typeUrl: string, version: string): void {
    this.deps.metrics.acks.inc({ type: typeLabel(typeUrl) });
    this.deps.registry.acked(this.streamId, typeUrl, version);
  }

  protected recordNack(typeUrl: string, version: string, message: string): void {
    this.deps.metrics.nacks.inc({ type: typeLabel(typeUrl) });
    this.deps.registry.nacked(this.streamId, typeUrl, version, message);
    this.logger.warn('envoy rejected a configuration (NACK); the last good one stays in force', {
      type: typeLabel(typeUrl),
      version,
      error: message,
    });
  }

  private fail(code: GrpcStatus, details: string): void {
    this.logger.warn('closing stream', { code: GrpcStatus[code], details });
    this.call.emit('error', { code, details });
    this.close(details);
  }

  private close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.unwatch?.();
    this.deps.metrics.connectedStreams.dec({ variant: this.variant });
    if (this.node) {
      this.deps.registry.close(this.streamId);
      this.logger.info('envoy disconnected', { reason });
    }
  }
}
