// Compaction: the store seals its log into history-FIRST-LAST.jsonl files and
// checkpoints; start-up reads only the checkpoint and the active log; every
// change stays in the history (paged from the sealed logs) until it is past
// retention or over the size bound; a crash between sealing and checkpointing
// loses nothing.
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, rename, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { HISTORY_FILE, openPolicyStore, SEGMENT_PATTERN, STATE_FILE, type FilePolicyStore } from '../../src/store/policyStore.js';
import type { HistoryEntry } from '../../src/store/store.js';
import { allHistory, spec, tempDir } from './helpers.js';

const client = 'test';
const sealed = async (dir: string) => (await readdir(dir)).filter((f) => SEGMENT_PATTERN.test(f)).sort();

/** N writes over a few names (puts, and every fifth a delete), as single writes and batches. */
async function write(store: FilePolicyStore, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i++) {
    const name = `p${i % 7}`;
    if (i % 5 === 4 && store.get(name)) await store.delete(name, { client });
    else if (i % 11 === 10) await store.batch({ put: { [`b${i % 3}`]: spec(`b${i}.example.com`), [name]: spec(`n${i}.example.com`) } }, { client });
    else await store.put(name, spec(`n${i}.example.com`), { client });
  }
}

/** Every entry, newest page first, following `next` to the end. */
async function pagedBackwards(store: FilePolicyStore, limit: number): Promise<HistoryEntry[]> {
  const pages: HistoryEntry[][] = [];
  let before: number | undefined;
  for (let guard = 0; guard < 10_000; guard++) {
    const page = await store.history({ limit, ...(before !== undefined ? { before } : {}) });
    pages.unshift(page.entries);
    if (page.next === undefined) return pages.flat();
    before = page.next;
  }
  throw new Error('history paging did not end');
}

test('compaction keeps every policy and every history entry; pages across sealed logs; restart after compaction', async () => {
  const dir = await tempDir();
  let store = await openPolicyStore(dir.path, { checkpointMinBytes: 2000 });
  try {
    await write(store, 0, 300);
    const policies = store.list();
    const history = await allHistory(store);
    assert.ok((await sealed(dir.path)).length >= 5, `sealed logs: ${(await sealed(dir.path)).join(' ')}`);
    assert.deepEqual([...new Set(history.map((e) => e.storeRevision))], Array.from({ length: store.revision }, (_, i) => i + 1));
    // Newest first, by `next`, in pages that cross sealed logs: the same entries, once each.
    assert.deepEqual(await pagedBackwards(store, 7), history);
    assert.deepEqual(await pagedBackwards(store, 1000), history);
    await store.compact();
    await store.close();

    store = await openPolicyStore(dir.path, { checkpointMinBytes: 2000 });
    assert.deepEqual(store.list(), policies);
    assert.deepEqual(await allHistory(store), history);
    await write(store, 300, 20);
    assert.equal((await allHistory(store)).length > history.length, true);
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('start-up reads the checkpoint and the active log only, not the sealed history', async () => {
  const dir = await tempDir();
  let store = await openPolicyStore(dir.path, { checkpointMinBytes: 2000 });
  await write(store, 0, 200);
  await store.compact();
  await write(store, 200, 5);
  const policies = store.list();
  const revision = store.revision;
  await store.close();
  // Move every sealed log away: the store must open to the same state without them.
  const aside = join(dir.path, 'aside');
  await mkdir(aside);
  for (const file of await sealed(dir.path)) await rename(join(dir.path, file), join(aside, file));
  store = await openPolicyStore(dir.path);
  try {
    assert.equal(store.revision, revision);
    assert.deepEqual(store.list(), policies);
    const page = await store.history({ limit: 1000 });
    assert.deepEqual([...new Set(page.entries.map((e) => e.storeRevision))], [revision - 4, revision - 3, revision - 2, revision - 1, revision]);
    assert.equal(page.next, undefined);
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('a crash between sealing the log and writing the checkpoint loses nothing', async () => {
  const dir = await tempDir();
  let store = await openPolicyStore(dir.path);
  await write(store, 0, 30);
  await store.compact();
  const oldCheckpoint = join(dir.path, 'old-checkpoint');
  await copyFile(join(dir.path, STATE_FILE), oldCheckpoint);
  await write(store, 30, 25);
  const policies = store.list();
  const history = await allHistory(store);
  await store.compact(); // Seals 31..55 and checkpoints at 55 ...
  await store.close();
  await copyFile(oldCheckpoint, join(dir.path, STATE_FILE)); // ... as if killed before the checkpoint landed.
  await writeFile(join(dir.path, HISTORY_FILE), '');
  store = await openPolicyStore(dir.path);
  try {
    assert.deepEqual(store.list(), policies);
    assert.deepEqual(await allHistory(store), history);
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('retention: sealed logs past --history-retention are dropped at compaction, newer ones kept whole; the state is untouched', async () => {
  const dir = await tempDir();
  const day = 86_400_000;
  let store = await openPolicyStore(dir.path, { checkpointMinBytes: 2000, historyRetentionMs: day });
  try {
    await write(store, 0, 120);
    await store.compact();
    const logs = await sealed(dir.path);
    assert.ok(logs.length >= 3, logs.join(' '));
    // The oldest two logs were last written two days ago.
    const old = Date.now() / 1000 - 2 * 86_400;
    for (const file of logs.slice(0, 2)) await utimes(join(dir.path, file), old, old);
    const keptFrom = Number(SEGMENT_PATTERN.exec(logs[2]!)![1]);
    const policies = store.list();
    const before = await allHistory(store);
    await store.close();
    store = await openPolicyStore(dir.path, { checkpointMinBytes: 2000, historyRetentionMs: day });
    await store.compact();
    assert.deepEqual(await sealed(dir.path), logs.slice(2));
    assert.deepEqual(store.list(), policies);
    const after = await allHistory(store);
    assert.deepEqual(after, before.filter((e) => e.storeRevision >= keptFrom));
    const last = await pagedBackwards(store, 10);
    assert.deepEqual(last, after);
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('the history size bound drops the oldest sealed logs first', async () => {
  const dir = await tempDir();
  const store = await openPolicyStore(dir.path, { checkpointMinBytes: 2000, historyMaxBytes: 8000 });
  try {
    await write(store, 0, 200);
    await store.compact();
    const files = await sealed(dir.path);
    let bytes = 0;
    for (const file of files) bytes += (await stat(join(dir.path, file))).size;
    assert.ok(bytes <= 8000, `${bytes} bytes of sealed history`);
    const history = await allHistory(store);
    assert.equal(history.at(-1)!.storeRevision, store.revision);
    assert.ok(history[0]!.storeRevision > 1);
    // Contiguous from the oldest kept commit to the newest.
    const revisions = [...new Set(history.map((e) => e.storeRevision))];
    assert.deepEqual(revisions, Array.from({ length: revisions.length }, (_, i) => revisions[0]! + i));
  } finally {
    await store.close();
    await dir.remove();
  }
});
