// Group commit: writes issued together are planned in call order against the
// commits still being written, and each is answered only once durable.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { HISTORY_FILE, openPolicyStore } from '../../src/store/policyStore.js';
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

/**
 * Watches every fdatasync of this process: the size of the file it covers (taken
 * as it starts) once it has completed. Slowed by `delayMs`, like a busy disk, so
 * that writers pile up behind it. Restores the original on `restore()`.
 */
async function watchDatasyncs(probeDir: string, delayMs: number) {
  const probe = await open(join(probeDir, 'probe'), 'w');
  const proto = Object.getPrototypeOf(probe) as { datasync: (this: FileHandle) => Promise<void> };
  await probe.close();
  const original = proto.datasync;
  const durable = new Map<number, number>(); // fd → bytes covered by a completed fdatasync
  let calls = 0;
  proto.datasync = async function (this: FileHandle) {
    calls += 1;
    const covered = (await this.stat()).size;
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    await original.call(this);
    durable.set(this.fd, Math.max(durable.get(this.fd) ?? 0, covered));
  };
  return {
    calls: () => calls,
    /** The history's bytes made durable by completed fdatasyncs (any fd of that file). */
    durableBytes: () => Math.max(0, ...durable.values()),
    restore: () => {
      proto.datasync = original;
    },
  };
}

test('every write is answered only after the fdatasync that covers its line; concurrent writers share fsyncs', async () => {
  const dir = await tempDir();
  const store = await openPolicyStore(dir.path);
  const syncs = await watchDatasyncs(dir.path, 5);
  try {
    const history = join(dir.path, HISTORY_FILE);
    const answeredEarly: number[] = [];
    const check = (storeRevision: number) => {
      // At the moment of the answer: the commit's line must lie in the durable prefix.
      const durable = readFileSync(history).subarray(0, syncs.durableBytes()).toString('utf8');
      if (!durable.split('\n').some((line) => line.startsWith(`{"revision":${storeRevision},`))) answeredEarly.push(storeRevision);
    };
    // One writer at a time: each its own fsync.
    for (let i = 0; i < 5; i++) {
      const r = await store.put(`solo-${i}`, spec(`solo${i}.example.com`), { client });
      assert.ok(r.ok);
      check(r.value.storeRevision);
    }
    const soloSyncs = syncs.calls();
    assert.equal(store.groupCommit().fsyncs, 5);
    // 200 writers at once: they queue behind the fsync in progress and share the next ones.
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        store.put(`p${i % 50}`, spec(`n${i}.example.com`), { client }).then((r) => {
          assert.ok(r.ok);
          check(r.value.storeRevision);
          return r;
        }),
      ),
    );
    assert.equal(results.length, 200);
    assert.deepEqual(answeredEarly, [], 'answered before their line was fsynced');
    const { commits, fsyncs, largestGroup } = store.groupCommit();
    assert.equal(commits, 205);
    // The concurrent writes took a handful of fsyncs, not 200: the group follows the writers in flight.
    assert.ok(fsyncs - 5 <= 10, `${fsyncs - 5} fsyncs for 200 concurrent writes`);
    assert.ok(largestGroup >= 100, `largest group ${largestGroup}`);
    assert.ok(syncs.calls() - soloSyncs <= 10);
  } finally {
    syncs.restore();
    await store.close();
    await dir.remove();
  }
});
