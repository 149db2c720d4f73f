// Connected Envoys and, per stream and resource type, what was sent, acked and
// rejected. Several streams may share a node id (an Envoy reconnecting before
// the old stream is reaped, or two Envoys misconfigured with one id).
import type { NodeStatus, ResourceTypeStatus } from './nodeStatus.js';
import type { Snapshot } from '../snapshot/snapshot.js';
import type { SnapshotSource } from './snapshotSource.js';

/** A stream's entry; open() returns it so the stream writes its sends and ACKs without a lookup. */
export interface StreamRecord {
  readonly nodeId: string;
  readonly cluster: string;
  readonly connectedAt: Date;
  readonly resources: Map<string, ResourceTypeStatus>;
  /** The served store revision when this stream last had acknowledged its whole snapshot. */
  ackedRevision?: number;
}

type CurrentSnapshot = Pick<Snapshot, 'typeUrls' | 'version'>;

/** The stream's status of the type, made empty at first. */
function statusIn(stream: StreamRecord, typeUrl: string): ResourceTypeStatus {
  let status = stream.resources.get(typeUrl);
  if (!status) stream.resources.set(typeUrl, (status = {}));
  return status;
}

/** The store revision committed last, and the one whose state the snapshots hold now. */
export type RevisionSource = () => { readonly latest: number; readonly served: number };

export class NodeRegistry {
  private readonly streams = new Map<number, StreamRecord>();

  /** With a source, list() says per node and type whether the latest version is acknowledged. */
  constructor(
    private readonly source?: Pick<SnapshotSource, 'currentSnapshot'>,
    private readonly revisions?: RevisionSource,
  ) {}

  open(streamId: number, node: { id: string; cluster: string }): StreamRecord {
    const record: StreamRecord = { nodeId: node.id, cluster: node.cluster, connectedAt: new Date(), resources: new Map() };
    this.streams.set(streamId, record);
    return record;
  }

  close(streamId: number): void {
    this.streams.delete(streamId);
  }

  private typeStatus(streamId: number, typeUrl: string): ResourceTypeStatus | undefined {
    const stream = this.streams.get(streamId);
    return stream && statusIn(stream, typeUrl);
  }

  /** On the record open() returned (a closed stream's record is no longer listed: writing it changes nothing seen). */
  sent(stream: StreamRecord, typeUrl: string, version: string): void {
    statusIn(stream, typeUrl).sent = version;
  }

  /** current: the node's current snapshot when the caller holds it (an ADS stream does), saving a lookup per ACK. */
  acked(stream: StreamRecord, typeUrl: string, version: string, current?: CurrentSnapshot): void {
    const status = statusIn(stream, typeUrl);
    status.acked = version;
    if (status.nack !== undefined) delete status.nack;
    if (this.revisions && this.source && this.acknowledgesAll(stream.nodeId, stream.resources, current)) stream.ackedRevision = this.revisions().served;
  }

  /** Every type of the node's current snapshot acknowledged at its latest version. */
  private acknowledgesAll(nodeId: string, resources: ReadonlyMap<string, ResourceTypeStatus>, current?: CurrentSnapshot): boolean {
    const snapshot = current ?? this.source!.currentSnapshot(nodeId);
    if (snapshot === undefined) return false;
    for (const typeUrl of snapshot.typeUrls()) if (resources.get(typeUrl)?.acked !== snapshot.version(typeUrl)) return false;
    return true;
  }

  nacked(streamId: number, typeUrl: string, version: string, message: string, superseded = false): void {
    const status = this.typeStatus(streamId, typeUrl);
    if (status) status.nack = { version, message, at: new Date().toISOString(), ...(superseded ? { superseded } : {}) };
  }

  /** One entry per node id; the newest stream's resource status, the oldest stream's connect time. */
  list(): NodeStatus[] {
    const byNode = new Map<string, StreamRecord[]>();
    for (const record of this.streams.values()) {
      const list = byNode.get(record.nodeId) ?? [];
      list.push(record);
      byNode.set(record.nodeId, list);
    }
    return [...byNode.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([id, records]) => {
        const oldest = records.reduce((a, b) => (a.connectedAt <= b.connectedAt ? a : b));
        const newest = records.reduce((a, b) => (a.connectedAt > b.connectedAt ? a : b));
        const resources: Record<string, ResourceTypeStatus> = Object.fromEntries([...newest.resources].map(([type, status]) => [type, { ...status }]));
        if (!this.source) return { id, cluster: newest.cluster, connectedAt: oldest.connectedAt.toISOString(), streams: records.length, resources };
        const snapshot = this.source.currentSnapshot(id);
        let upToDate = snapshot !== undefined;
        for (const typeUrl of snapshot?.typeUrls() ?? []) {
          const latest = snapshot!.version(typeUrl)!;
          const status = (resources[typeUrl] ??= {});
          status.latest = latest;
          status.upToDate = status.acked === latest;
          upToDate &&= status.upToDate;
        }
        if (!this.revisions) return { id, cluster: newest.cluster, connectedAt: oldest.connectedAt.toISOString(), streams: records.length, upToDate, resources };
        const { latest, served } = this.revisions();
        // Acknowledged up to `served` when up to date now (a change that did not touch this node
        // moves it along too); else the served revision at its last complete acknowledgement.
        const acknowledged = upToDate ? served : (newest.ackedRevision ?? null);
        return {
          id,
          cluster: newest.cluster,
          connectedAt: oldest.connectedAt.toISOString(),
          streams: records.length,
          upToDate,
          revision: { latest, served, acknowledged },
          resources,
        };
      });
  }

  private newestStream(nodeId: string): StreamRecord | undefined {
    let newest: StreamRecord | undefined;
    for (const record of this.streams.values()) {
      if (record.nodeId === nodeId && (!newest || record.connectedAt > newest.connectedAt)) newest = record;
    }
    return newest;
  }

  /** The version of a type the node's newest stream acknowledged (what the node runs); O(streams). */
  ackedVersion(nodeId: string, typeUrl: string): string | undefined {
    return this.newestStream(nodeId)?.resources.get(typeUrl)?.acked;
  }

  /** The store revision whose state the node runs (as list() says "acknowledged"); undefined when unknown or not connected. */
  acknowledgedRevision(nodeId: string): number | undefined {
    const newest = this.newestStream(nodeId);
    if (!newest || !this.revisions || !this.source) return undefined;
    return this.acknowledgesAll(nodeId, newest.resources) ? this.revisions().served : newest.ackedRevision;
  }

  streamCount(): number {
    return this.streams.size;
  }
}
