// The nodes owed their group's snapshot, told in the order they were queued, each
// once however often it is queued before its turn (src/snapshot/cache.ts, tell).
//
// WHY not a Set: a push to one group of 10,000 nodes queued all 10,000 and then
// deleted them one by one. A Set's table is rebuilt as it grows and again as it
// shrinks, and tables that large are allocated straight in V8's old generation:
// ~0.85 MiB of old-generation garbage per push at 10,000 streams, the largest
// item of what a push left for a full collection (BENCHMARKS.md, "Fan-out: a
// young generation for the push"), with RSS growing until one ran. Here a flag on
// the item says whether it is queued, and the array is reused from push to push.

export interface Queueable {
  /** Whether the item is in the queue now; only the queue sets it. */
  queued: boolean;
}

export class OwedQueue<T extends Queueable> {
  /** items[head, tail) are queued; the rest are undefined (nothing kept alive), the storage stays. */
  private readonly items: (T | undefined)[] = [];
  private head = 0;
  private tail = 0;

  get size(): number {
    return this.tail - this.head;
  }

  /** Queues the item at the end, unless it is queued already (it keeps its place). */
  add(item: T): void {
    if (item.queued) return;
    item.queued = true;
    this.items[this.tail++] = item;
  }

  /** Takes the first item out (it may be queued again, at the end); undefined when empty. */
  shift(): T | undefined {
    if (this.head === this.tail) return undefined;
    const item = this.items[this.head]!;
    this.items[this.head++] = undefined;
    item.queued = false;
    // Empty: start over at the front, so the array never grows past the most ever queued at once.
    if (this.head === this.tail) this.head = this.tail = 0;
    return item;
  }
}
