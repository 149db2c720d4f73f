// OwedQueue must tell nodes exactly as the Set it replaced did (insertion order, each
// queued node once, one taken out may be queued again at the end), and keep its storage
// from push to push instead of growing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { OwedQueue } from '../../src/snapshot/owedQueue.js';

interface Item {
  readonly id: number;
  queued: boolean;
}

test('OwedQueue: the same order and the same items as an insertion-ordered Set, under any mix of adds and takes', () => {
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.record({ add: fc.integer({ min: 0, max: 15 }) }), fc.constant({ take: true as const })), { maxLength: 300 }), (ops) => {
      const items = Array.from({ length: 16 }, (_, id): Item => ({ id, queued: false }));
      const queue = new OwedQueue<Item>();
      const model = new Set<Item>();
      for (const op of ops) {
        if ('add' in op) {
          queue.add(items[op.add]!);
          model.add(items[op.add]!);
        } else {
          const expected = model.values().next();
          if (!expected.done) model.delete(expected.value);
          assert.equal(queue.shift(), expected.done ? undefined : expected.value);
        }
        assert.equal(queue.size, model.size);
        for (const item of items) assert.equal(item.queued, model.has(item), `item ${item.id} queued`);
      }
      const rest: Item[] = [];
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) rest.push(item);
      assert.deepEqual(rest, [...model]);
    }),
  );
});

test('OwedQueue: pushes of 10,000 nodes reuse one array of 10,000 slots, and hold no node once told', () => {
  const queue = new OwedQueue<Item>();
  const items = Array.from({ length: 10_000 }, (_, id): Item => ({ id, queued: false }));
  for (let push = 0; push < 5; push++) {
    for (const item of items) queue.add(item);
    for (const item of items) queue.add(item); // queued twice before its turn: told once
    let told = 0;
    while (queue.shift() !== undefined) told += 1;
    assert.equal(told, 10_000);
  }
  const storage = (queue as unknown as { items: unknown[] }).items;
  assert.equal(storage.length, 10_000);
  assert.ok(storage.every((slot) => slot === undefined), 'no told node kept alive');
});
