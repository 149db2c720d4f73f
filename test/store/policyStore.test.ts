import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, chmod, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { HISTORY_FILE, openPolicyStore, STATE_FILE, type FilePolicyStore, type PolicyStore } from '../../src/store/policyStore.js';
import { StoreError } from '../../src/store/storeError.js';
import { createLogger } from '../../src/log.js';
import { spec, tempDir } from './helpers.js';

const client = 'test';

test('put, get, list, delete with per-policy and store revisions', async () => {
  const dir = await tempDir();
  const store = await openPolicyStore(dir.path);
  try {
    assert.equal(store.revision, 0);
    const a = await store.put('web', spec('a.example.com'), { client });
    assert.deepEqual(a, { ok: true, value: { name: 'web', revision: 1, storeRevision: 1, changed: true } });
    const b = await store.put('web', spec('b.example.com'), { client });
    assert.ok(b.ok && b.value.revision === 2 && b.value.storeRevision === 2);
    await store.put('api', spec('api.example.com'), { client });
    assert.deepEqual(store.list().map((p) => [p.name, p.revision]), [['api', 1], ['web', 2]]);
    assert.equal(store.count(), 2);
    assert.deepEqual(store.get('web')?.allow, { sni: ['b.example.com'] });
    assert.equal(store.get('web')?.source, 'api');
    const d = await store.delete('web', { client });
    assert.ok(d.ok && d.value.revision === 3 && d.value.storeRevision === 4);
    assert.equal(store.get('web'), undefined);
    assert.equal(store.count(), 1);
    assert.equal(store.revision, 4);
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('a put of the stored spec is a no-op: no revision, no history, no event', async () => {
  const dir = await tempDir();
  const store = await openPolicyStore(dir.path);
  try {
    await store.put('web', spec('a.example.com'), { client });
    let events = 0;
    store.onChange(() => events++);
    const again = await store.put('web', spec('a.example.com'), { client });
    assert.deepEqual(again, { ok: true, value: { name: 'web', revision: 1, storeRevision: 1, changed: false } });
    assert.equal(events, 0);
    assert.equal((await store.history()).entries.length, 1);
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('If-Match and If-None-Match preconditions', async () => {
  const dir = await tempDir();
  const store = await openPolicyStore(dir.path);
  try {
    const missing = await store.put('web', spec('a.example.com'), { client, ifMatch: 1 });
    assert.deepEqual(missing.ok ? undefined : missing.error.code, 'precondition_failed');
    assert.equal(store.revision, 0);
    await store.put('web', spec('a.example.com'), { client, ifNoneMatch: '*' });
    const exists = await store.put('web', spec('b.example.com'), { client, ifNoneMatch: '*' });
    assert.equal(exists.ok ? undefined : exists.error.code, 'precondition_failed');
    const stale = await store.put('web', spec('b.example.com'), { client, ifMatch: 7 });
    assert.equal(stale.ok ? undefined : stale.error.code, 'precondition_failed');
    assert.match(stale.ok ? '' : stale.error.message, /revision 1, not 7/);
    const fresh = await store.put('web', spec('b.example.com'), { client, ifMatch: 1 });
    assert.ok(fresh.ok && fresh.value.revision === 2);
    const staleDelete = await store.delete('web', { client, ifMatch: 1 });
    assert.equal(staleDelete.ok ? undefined : staleDelete.error.code, 'precondition_failed');
    const missingDelete = await store.delete('nope', { client });
    assert.equal(missingDelete.ok ? undefined : missingDelete.error.code, 'not_found');
    const missingDeleteIfMatch = await store.delete('nope', { client, ifMatch: 1 });
    assert.equal(missingDeleteIfMatch.ok ? undefined : missingDeleteIfMatch.error.code, 'precondition_failed');
    assert.equal(store.revision, 2);
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('a policy deleted and created again continues its revisions (no If-Match ABA)', async () => {
  const dir = await tempDir();
  let store = await openPolicyStore(dir.path);
  await store.put('web', spec('a.example.com'), { client });
  await store.delete('web', { client });
  await store.close();
  store = await openPolicyStore(dir.path);
  try {
    const stale = await store.put('web', spec('a.example.com'), { client, ifMatch: 1 });
    assert.equal(stale.ok, false);
    const created = await store.put('web', spec('a.example.com'), { client });
    assert.ok(created.ok && created.value.revision === 3);
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('onChange gets each commit: its revision, the policies put as stored, the names deleted, in commit order', async () => {
  const dir = await tempDir();
  const store = await openPolicyStore(dir.path);
  try {
    const seen: Array<[number, string[], string[]]> = [];
    const off = store.onChange((change) => {
      seen.push([change.revision, change.puts.map((p) => `${p.name}@${p.revision}`), [...change.deletes]]);
    });
    await Promise.all([
      store.put('b', spec('b.example.com'), { client }),
      store.put('a', spec('a.example.com'), { client }),
      store.delete('b', { client }),
    ]);
    off();
    await store.put('c', spec('c.example.com'), { client });
    assert.deepEqual(seen, [[1, ['b@1'], []], [2, ['a@1'], []], [3, [], ['b']]]);
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('history: newest by default, since/limit pages forward, records the client', async () => {
  const dir = await tempDir();
  const store = await openPolicyStore(dir.path);
  try {
    for (let i = 0; i < 5; i++) await store.put(`p${i}`, spec(`p${i}.example.com`), { client: `c${i}` });
    await store.delete('p0', { client: 'remover' });
    const all = (await store.history()).entries;
    assert.deepEqual(all.map((e) => [e.storeRevision, e.action, e.name, e.revision, e.client]), [
      [1, 'put', 'p0', 1, 'c0'], [2, 'put', 'p1', 1, 'c1'], [3, 'put', 'p2', 1, 'c2'],
      [4, 'put', 'p3', 1, 'c3'], [5, 'put', 'p4', 1, 'c4'], [6, 'delete', 'p0', 2, 'remover'],
    ]);
    assert.deepEqual(all[0]?.spec, spec('p0.example.com'));
    const newest = await store.history({ limit: 2 });
    assert.deepEqual(newest.entries.map((e) => e.storeRevision), [5, 6]);
    assert.equal(newest.next, 5);
    const older = await store.history({ limit: 2, before: newest.next! });
    assert.deepEqual(older.entries.map((e) => e.storeRevision), [3, 4]);
    assert.deepEqual((await store.history({ limit: 10, before: 3 })).entries.map((e) => e.storeRevision), [1, 2]);
    assert.equal((await store.history({ limit: 10, before: 3 })).next, undefined);
    assert.deepEqual((await store.history({ since: 2, limit: 2 })).entries.map((e) => e.storeRevision), [3, 4]);
    assert.deepEqual((await store.history({ since: 6 })).entries, []);
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('reopen serves every committed change, with history', async () => {
  const dir = await tempDir();
  let store = await openPolicyStore(dir.path);
  await store.put('web', spec('a.example.com'), { client });
  await store.put('api', spec('api.example.com'), { client });
  await store.delete('api', { client });
  const before = store.list();
  await store.close();
  store = await openPolicyStore(dir.path);
  try {
    assert.deepEqual(store.list(), before);
    assert.equal(store.revision, 3);
    assert.equal((await store.history()).entries.length, 3);
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('a torn temp file and a torn history tail left by a crash are ignored', async () => {
  const dir = await tempDir();
  let store = await openPolicyStore(dir.path);
  await store.put('web', spec('a.example.com'), { client });
  await store.close();
  await writeFile(join(dir.path, `.${STATE_FILE}.tmp`), '{"format":1,"revision":9,"poli');
  await appendFile(join(dir.path, HISTORY_FILE), '{"revision":2,"at":"2026-01-01T00:00:00.000Z","cli');
  store = await openPolicyStore(dir.path);
  try {
    assert.equal(store.revision, 1);
    assert.deepEqual(store.list().map((p) => p.name), ['web']);
    assert.ok(!(await readdir(dir.path)).some((f) => f.endsWith('.tmp')));
    // The torn line was cut off, so the next commit starts a clean line (in
    // whichever history file: the reopen compacted the first commit away).
    await store.put('api', spec('api.example.com'), { client });
    const files = (await readdir(dir.path)).filter((f) => f.startsWith('history')).sort();
    const lines = (await Promise.all(files.map((f) => readFile(join(dir.path, f), 'utf8')))).join('').trimEnd().split('\n');
    assert.deepEqual(lines.map((line) => JSON.parse(line).revision).sort(), [1, 2]);
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('history commits after the checkpoint are replayed (crash between append and checkpoint)', async () => {
  const dir = await tempDir();
  let store = await openPolicyStore(dir.path);
  await store.put('web', spec('a.example.com'), { client });
  await store.compact();
  const checkpoint = await readFile(join(dir.path, STATE_FILE), 'utf8');
  await store.put('web', spec('b.example.com'), { client });
  await store.put('api', spec('api.example.com'), { client });
  await store.close();
  await writeFile(join(dir.path, STATE_FILE), checkpoint); // as if the process died before checkpointing
  store = await openPolicyStore(dir.path);
  try {
    assert.equal(store.revision, 3);
    assert.deepEqual(store.get('web')?.allow.sni, ['b.example.com']);
    assert.equal(store.get('web')?.revision, 2);
    assert.equal(store.get('api')?.revision, 1);
    assert.equal(JSON.parse(await readFile(join(dir.path, STATE_FILE), 'utf8')).revision, 3);
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('an unreadable state file is set aside and rebuilt from history', async () => {
  const dir = await tempDir();
  let store = await openPolicyStore(dir.path);
  await store.put('web', spec('a.example.com'), { client });
  await store.put('api', spec('api.example.com'), { client });
  const before = store.list();
  await store.close();
  await writeFile(join(dir.path, STATE_FILE), 'garbage');
  store = await openPolicyStore(dir.path);
  try {
    assert.deepEqual(store.list(), before);
    assert.ok((await readdir(dir.path)).some((f) => f.startsWith(`${STATE_FILE}.corrupt-`)));
  } finally {
    await store.close();
    await dir.remove();
  }
});

test('garbage in the middle of the history refuses to start, naming the file', async () => {
  const dir = await tempDir();
  const store = await openPolicyStore(dir.path);
  await store.put('web', spec('a.example.com'), { client });
  await store.put('api', spec('api.example.com'), { client });
  await store.close();
  const path = join(dir.path, HISTORY_FILE);
  const lines = (await readFile(path, 'utf8')).split('\n');
  await writeFile(path, ['not json', ...lines].join('\n'));
  await assert.rejects(openPolicyStore(dir.path), (error: unknown) => error instanceof StoreError && error.message.includes(path));
  await dir.remove();
});

test('one data dir, one server: a second open is refused naming the holder; a closed store\'s lock is free again', async () => {
  const dir = await tempDir();
  const store = await openPolicyStore(dir.path);
  await assert.rejects(openPolicyStore(dir.path), /already open in this process/);
  await store.close();
  // A lock file left behind (by an old version, or a killed server) holds nothing by itself: only a live flock does.
  await writeFile(join(dir.path, 'lock'), JSON.stringify({ pid: process.ppid, hostname: 'h', startedAt: 'then' }));
  const reopened = await openPolicyStore(dir.path);
  const holder = JSON.parse(await readFile(join(dir.path, 'lock'), 'utf8')) as { pid: number };
  assert.equal(holder.pid, process.pid);
  await reopened.close();
  await dir.remove();
});

test('two opens of one data dir at the same time in one process: exactly one gets it', async () => {
  const dir = await tempDir();
  const results = await Promise.allSettled([openPolicyStore(dir.path), openPolicyStore(dir.path)]);
  const opened = results.filter((r): r is PromiseFulfilledResult<FilePolicyStore> => r.status === 'fulfilled');
  const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(opened.length, 1);
  assert.match(String(refused[0]?.reason), /already open in this process/);
  await opened[0]!.value.close();
  await dir.remove();
});

test('servers starting on one data dir at the same moment: exactly one gets it', async () => {
  // Each contender is a process, released at once; a lock that another one could
  // read before its content is written would be taken for a dead writer's.
  const contender = fileURLToPath(new URL('./fixtures/lockContender.js', import.meta.url));
  const dirs = await Promise.all([tempDir(), tempDir(), tempDir()]);
  const children = dirs.flatMap((dir) =>
    Array.from({ length: 6 }, () => {
      const child = spawn(process.execPath, [contender, dir.path], { stdio: ['pipe', 'pipe', 'inherit'] });
      const lines = createInterface({ input: child.stdout });
      const next = () => new Promise<string>((resolve, reject) => {
        lines.once('line', resolve);
        child.once('error', reject);
      });
      return { dir: dir.path, child, next };
    }),
  );
  try {
    await Promise.all(children.map(async (c) => assert.equal(await c.next(), 'ready')));
    const outcomes = await Promise.all(children.map((c) => {
      const outcome = c.next();
      c.child.stdin!.write('go\n');
      return outcome;
    }));
    for (const dir of dirs) {
      const mine = outcomes.filter((_, i) => children[i]!.dir === dir.path);
      assert.equal(mine.filter((o) => o.startsWith('locked')).length, 1, mine.join('\n'));
      assert.ok(mine.every((o) => o.startsWith('locked') || o.includes('is in use by')), mine.join('\n'));
    }
  } finally {
    await Promise.all(children.map((c) => new Promise((resolve) => {
      c.child.once('close', resolve);
      c.child.stdin!.end();
    })));
    await Promise.all(dirs.map((dir) => dir.remove()));
  }
});

test('an unusable data dir is a clear error naming the path', async () => {
  const dir = await tempDir();
  const file = join(dir.path, 'a-file');
  await writeFile(file, '');
  const dataDir = join(file, 'data');
  await assert.rejects(openPolicyStore(dataDir), (error: unknown) =>
    error instanceof StoreError && error.message.includes(dataDir) && /not a directory|ENOTDIR|EEXIST/.test(error.message));
  await dir.remove();
});

test('a read-only data dir is refused at start, naming it', { skip: process.getuid?.() === 0 ? 'root can write anywhere' : false }, async () => {
  const dir = await tempDir();
  const dataDir = join(dir.path, 'data');
  await mkdir(dataDir, { mode: 0o555 });
  await assert.rejects(openPolicyStore(dataDir), (error: unknown) =>
    error instanceof StoreError && error.message.startsWith(`data dir ${dataDir} is not writable`));
  await chmod(dataDir, 0o755);
  await dir.remove();
});

test('overlapping closes close once', async () => {
  const dir = await tempDir();
  const lines: string[] = [];
  const store = await openPolicyStore(dir.path, { logger: createLogger({ write: (line) => lines.push(line) }) });
  await Promise.all([store.close(), store.close()]);
  await store.close();
  assert.equal(lines.filter((line) => line.includes('store: closed')).length, 1);
  await dir.remove();
});

test('writes after close are refused', async () => {
  const dir = await tempDir();
  const store = await openPolicyStore(dir.path);
  await store.close();
  await assert.rejects(store.put('web', spec('a.example.com'), { client }), /closed/);
  await dir.remove();
});
