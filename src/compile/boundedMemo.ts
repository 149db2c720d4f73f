// A bounded memo of compiled parts, keyed by what they are made of: the least recently
// used part goes first when it is full (lru-cache).
//
// Why not a Map used as an LRU (on a hit delete the key and set it again, so the Map's
// insertion order is the recency order; evict `keys().next()`): V8's ordered hash table
// leaves a hole for every delete and rehashes when holes fill it, so every hit paid a
// re-insertion and, at the bound, every eviction scanned the holes left at the front.
// At 10,000 fleet groups those re-insertions were ~45% of a group's compile after a global
// change (0.23 → 0.125 ms a group, `node dist/bench/fleetCompile.js 10000`); lru-cache
// keeps recency in preallocated typed arrays, so a hit is a Map lookup and two index moves.
import { LRUCache } from 'lru-cache';

export class BoundedMemo<V extends object> {
  readonly #parts: LRUCache<string, V>;

  constructor(max: number) {
    this.#parts = new LRUCache<string, V>({ max });
  }

  /** The part memoised under `key`; else `build()`'s, memoised. */
  get(key: string, build: () => V): V {
    let part = this.#parts.get(key);
    if (part === undefined) {
      part = build();
      this.#parts.set(key, part);
    }
    return part;
  }

  get size(): number {
    return this.#parts.size;
  }

  clear(): void {
    this.#parts.clear();
  }
}
