// The compiler's bounded memo: one build per key while it is held, never more parts than
// its bound, and the part used last kept over the one used least recently.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BoundedMemo } from '../../src/compile/boundedMemo.js';

test('a key is built once while it is held; the same object is returned', () => {
  const memo = new BoundedMemo<{ key: string }>(10);
  let builds = 0;
  const build = (key: string) => () => ({ key, n: ++builds });
  const first = memo.get('a', build('a'));
  assert.equal(memo.get('a', build('a')), first);
  assert.equal(builds, 1);
  assert.notEqual(memo.get('b', build('b')), first);
  assert.equal(builds, 2);
});

test('never holds more than its bound, and evicts the least recently used first', () => {
  const max = 100;
  const memo = new BoundedMemo<{ i: number }>(max);
  let builds = 0;
  for (let i = 0; i < max; i++) memo.get(`k${i}`, () => ({ i, b: ++builds }));
  // k0 used again: now the most recent; k1 is the least recent.
  memo.get('k0', () => assert.fail('k0 is held'));
  for (let i = max; i < 10 * max; i++) {
    memo.get(`k${i}`, () => ({ i, b: ++builds }));
    if (i === max) {
      memo.get('k0', () => assert.fail('k0 was used last, k1 goes first'));
      let rebuilt = false;
      memo.get('k1', () => ((rebuilt = true), { i: 1 }));
      assert.ok(rebuilt, 'k1, the least recently used, was evicted');
    }
    assert.ok(memo.size <= max, `size ${memo.size} over the bound ${max}`);
  }
  assert.equal(memo.size, max);
  memo.clear();
  assert.equal(memo.size, 0);
});
