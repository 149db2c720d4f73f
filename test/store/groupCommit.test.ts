// Group commit: writes issued together are planned in call order against the
// commits still being written, and each is answered only once durable.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openPolicyStore } from '../../src/store/policyStore.js';
import { allHistory, spec, tempDir } from './helpers.js';

const client = 'test';

test('concurrent writes to one policy get revisions in call order; the last one wins; history in order', async () => {
  const dir = await tempDir();
  const store = await openPolicyStore(dir.path);
  try {
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => store.put('a', spec(`n${i}.example.com`), { client })));
    assert.deepEqual(results.map((r) => r.ok && r.value.revision), Array.from({ length: 100 }, (_, i) => i + 1));
    assert.deepEqual(results.map((r) => r.ok && r.value.storeRevision), Array.from({ length: 100 }, (_, i) => i + 1));
    assert.deepEqual(store.get('a')?.allow.sni, ['n99.example.com']);
    assert.deepEqual((await allHistory(store)).map((e) => e.spec?.allow.sni[0]), Array.from({ length: 100 }, (_, i) => `n${i}.example.com`));
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('preconditions and no-ops see the writes queued before them, and answer only once those are durable', async () => {
  const dir = await tempDir();
  let store = await openPolicyStore(dir.path);
  try {
    const [first, same, matched, created, again, gone] = await Promise.all([
      store.put('a', spec('x.example.com'), { client }),
      store.put('a', spec('x.example.com'), { client }), // a no-op on top of the queued put
      store.put('a', spec('y.example.com'), { client, ifMatch: 1 }), // If-Match the queued revision
      store.put('b', spec('b.example.com'), { client, ifNoneMatch: '*' }),
      store.put('b', spec('c.example.com'), { client, ifNoneMatch: '*' }), // b is queued: refused
      store.delete('a', { client, ifMatch: 1 }), // a moved on to 2 in the queue: refused
    ]);
    assert.deepEqual(first.ok && first.value, { name: 'a', revision: 1, storeRevision: 1, changed: true });
    assert.equal(same.ok && same.value.changed, false);
    assert.equal(same.ok && same.value.revision, 1);
    assert.equal(matched.ok && matched.value.revision, 2);
    assert.equal(created.ok, true);
    assert.equal(!again.ok && again.error.code, 'precondition_failed');
    assert.equal(!gone.ok && gone.error.code, 'precondition_failed');
    // Everything answered is on disk: a reopen (which reads only the files) agrees.
    const listed = store.list();
    await store.close();
    store = await openPolicyStore(dir.path);
    assert.deepEqual(store.list(), listed);
    assert.equal(store.revision, 3);
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('a batch queued behind single writes is planned against them, all or nothing', async () => {
  const dir = await tempDir();
  const store = await openPolicyStore(dir.path);
  try {
    const before = store.put('a', spec('a.example.com'), { client });
    const ok = store.batch({ put: { b: spec('b.example.com') }, delete: ['a'], ifMatch: { a: 1 } }, { client });
    const refused = store.batch({ put: { c: spec('c.example.com') }, delete: ['a'] }, { client });
    await before;
    const done = await ok;
    assert.deepEqual(done.ok && done.value, { storeRevision: 2, changed: ['b', 'a'] });
    const no = await refused;
    assert.equal(!no.ok && no.error.code, 'not_found');
    assert.equal(!no.ok && no.error.name, 'a');
    assert.deepEqual(store.list().map((p) => p.name), ['b']);
    assert.equal(store.revision, 2);
  } finally {
    await store.close();
    await dir.remove();
  }
});
