// What the ADS streams need from the snapshot layer: the current snapshot of a
// node and a way to hear of changes. Streams never compile or encode.
import type { Snapshot } from '../snapshot/snapshot.js';

export interface SnapshotSource {
  snapshotFor(nodeId: string): Snapshot;
  /** The snapshot of a watched node, or undefined while it is being prepared (the watch reports it when ready). */
  currentSnapshot(nodeId: string): Snapshot | undefined;
  watch(nodeId: string, onChange: (snapshot: Snapshot) => void): () => void;
}
