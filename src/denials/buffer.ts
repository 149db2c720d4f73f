// The denials kept in memory: a ring per node, within two bounds that hold
// whatever Envoy sends — records per node, and records in all. Past the total,
// the oldest record of the node written to least recently goes first, so a
// flooding node evicts its own history before anyone else's; nodes hold no
// memory beyond their records (an emptied node is forgotten).
import type { DenialRecord } from './record.js';

export interface StoredDenial extends DenialRecord {
  /** Increases by one per record this process stored: the SSE event id. */
  readonly seq: number;
}

export interface DenialBufferLimits {
  /** Records kept per node. */
  readonly perNode: number;
  /** Records kept in all (≥ perNode). */
  readonly total: number;
}

export const DEFAULT_DENIAL_BUFFER: DenialBufferLimits = { perNode: 10_000, total: 100_000 };

class Ring {
  private slots: (StoredDenial | undefined)[];
  private start = 0;
  size = 0;
  constructor(readonly capacity: number) {
    this.slots = new Array<StoredDenial | undefined>(Math.min(capacity, 1024));
  }
  /** Appends; returns true when the oldest record was overwritten. */
  push(record: StoredDenial): boolean {
    if (this.size < this.capacity && this.size === this.slots.length) {
      // Grow by doubling up to capacity: an idle node costs little.
      const grown = new Array<StoredDenial | undefined>(Math.min(this.capacity, this.slots.length * 2));
      for (let i = 0; i < this.size; i++) grown[i] = this.slots[(this.start + i) % this.slots.length];
      this.slots = grown;
      this.start = 0;
    }
    if (this.size === this.capacity) {
      this.slots[this.start] = record;
      this.start = (this.start + 1) % this.capacity;
      return true;
    }
    this.slots[(this.start + this.size) % this.slots.length] = record;
    this.size += 1;
    return false;
  }
  dropOldest(): void {
    if (this.size === 0) return;
    this.slots[this.start] = undefined;
    this.start = (this.start + 1) % this.slots.length;
    this.size -= 1;
  }
  /** Newest first. */
  *newestFirst(): Generator<StoredDenial> {
    for (let i = this.size - 1; i >= 0; i--) yield this.slots[(this.start + i) % this.slots.length]!;
  }
}

export class DenialBuffer {
  /** Map order is least recently written first (a write moves the node to the end). */
  private readonly rings = new Map<string, Ring>();
  private count = 0;
  private nextSeq = 1;
  readonly limits: DenialBufferLimits;

  constructor(limits: Partial<DenialBufferLimits> = {}) {
    const merged = { ...DEFAULT_DENIAL_BUFFER, ...limits };
    if (!(Number.isSafeInteger(merged.perNode) && merged.perNode >= 1)) throw new RangeError(`denials per node must be a positive integer, not ${merged.perNode}`);
    if (!(Number.isSafeInteger(merged.total) && merged.total >= merged.perNode)) {
      throw new RangeError(`denials in all (${merged.total}) must be an integer at least the per-node bound (${merged.perNode})`);
    }
    this.limits = merged;
  }

  add(record: DenialRecord): StoredDenial {
    const stored: StoredDenial = { seq: this.nextSeq++, ...record };
    let ring = this.rings.get(record.node);
    if (ring) this.rings.delete(record.node);
    else ring = new Ring(this.limits.perNode);
    this.rings.set(record.node, ring);
    if (!ring.push(stored)) this.count += 1;
    while (this.count > this.limits.total) this.evictOne();
    return stored;
  }

  private evictOne(): void {
    for (const [node, ring] of this.rings) {
      if (ring.size === 0) {
        this.rings.delete(node);
        continue;
      }
      ring.dropOldest();
      this.count -= 1;
      if (ring.size === 0) this.rings.delete(node);
      return;
    }
  }

  size(): number {
    return this.count;
  }

  nodeCount(): number {
    return this.rings.size;
  }

  nodes(): string[] {
    return [...this.rings.keys()].sort();
  }

  /** Records of one node, newest first, lazily. */
  *newestFirst(node: string): Generator<StoredDenial> {
    const ring = this.rings.get(node);
    if (ring) yield* ring.newestFirst();
  }

  /** Every node's records, newest first within a node (nodes in no particular order). */
  *byNode(): Generator<Iterable<StoredDenial>> {
    for (const ring of this.rings.values()) yield ring.newestFirst();
  }

  /**
   * Up to `limit` records for which `keep` holds, newest first across nodes: each ring gives
   * at most `limit` (its newest), then one sort. O(records + limit × nodes × log), never the
   * records × nodes of a k-way merge by scanning.
   */
  newest(limit: number, keep: (record: StoredDenial) => boolean, node?: string): StoredDenial[] {
    const take = (records: Iterable<StoredDenial>, out: StoredDenial[]) => {
      let taken = 0;
      for (const record of records) {
        if (taken >= limit) break;
        if (!keep(record)) continue;
        out.push(record);
        taken += 1;
      }
    };
    const out: StoredDenial[] = [];
    if (limit <= 0) return out;
    if (node !== undefined) {
      take(this.newestFirst(node), out);
      return out;
    }
    for (const ring of this.rings.values()) take(ring.newestFirst(), out);
    return out.sort((a, b) => b.seq - a.seq).slice(0, limit);
  }
}
