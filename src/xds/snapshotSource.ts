// What the ADS streams need from the snapshot layer: the current snapshot of a
// node and a way to hear of changes. Streams never compile or encode.
import type { Snapshot } from '../snapshot/snapshot.js';

export interface SnapshotSource {
  snapshotFor(nodeId: string): Snapshot;
  watch(nodeId: string, onChange: (snapshot: Snapshot) => void): () => void;
}
