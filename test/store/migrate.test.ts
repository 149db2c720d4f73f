// egress-xds store migrate, as an operator runs it: a file store with history
// moved into a real etcd and back, nothing lost; a non-empty target refused
// unless --force (which, for a data dir, also removes sealed history files).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { openPolicyStore } from '../../src/store/policyStore.js';
import { openEtcdPolicyStore } from '../../src/store/etcdStore.js';
import type { HistoryEntry, PolicyStore } from '../../src/store/store.js';
import { etcdAvailable, startEtcd, type EtcdCluster } from '../support/etcdCluster.js';

const skip = etcdAvailable() ? false : 'no etcd binary (apt-get install etcd-server, or set ETCD_BIN)';
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const migrate = (...args: string[]) =>
  promisify(execFile)(process.execPath, [cli, 'store', 'migrate', ...args], { timeout: 60_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );

let etcd: EtcdCluster;
let root: string;
before(async () => {
  if (skip) return;
  etcd = await startEtcd(1);
  root = await mkdtemp(join(tmpdir(), 'egress-xds-migrate-'));
});
after(async () => {
  await etcd?.close();
  if (root) await rm(root, { recursive: true, force: true });
});

async function everything(store: PolicyStore): Promise<{ policies: unknown[]; history: HistoryEntry[] }> {
  const history: HistoryEntry[] = [];
  for (let since = 0, page = 0; page < 100; page++) {
    const { entries } = await store.history({ since, limit: 1000 });
    if (entries.length === 0) break;
    history.push(...entries);
    since = entries.at(-1)!.storeRevision;
  }
  return { policies: store.list().map(({ revision: _r, ...rest }) => rest), history };
}

test('file store → etcd → file store: policies and history without loss; revisions only grow', { skip, timeout: 120_000 }, async () => {
  const source = join(root, 'source');
  const file = await openPolicyStore(source);
  await file.put('web', { allow: { sni: ['web.example'] } }, { client: 'alice' });
  await file.put('web', { sources: ['10.0.0.0/8'], allow: { sni: ['web2.example'] } }, { client: 'bob' });
  await file.put('gone', { allow: { sni: ['gone.example'] } }, { client: 'alice' });
  await file.delete('gone', { client: 'alice' });
  await file.batch({ put: { a: { allow: { sni: ['a.example'] } }, b: { mode: 'audit', allow: { sni: ['b.example'] } } } }, { client: 'carol' });
  await file.apply([{ name: 'fromfile', spec: { allow: { sni: ['f.example'] } } }], { client: 'policy-file:/p.yaml', source: 'file:/p.yaml' });
  const original = await everything(file);
  const fileRevision = file.revision;
  await file.close();

  const url = etcd.url;
  const into = await migrate('--from', source, '--to', url, '--etcd-prefix', '/migrated');
  assert.equal(into.code, 0, into.stderr);
  assert.match(into.stdout, /migrated 4 policies and 7 history entries/);

  const inEtcd = await openEtcdPolicyStore({ endpoints: etcd.endpoints.split(','), prefix: '/migrated/' });
  try {
    assert.deepEqual(await everything(inEtcd), original);
    assert.ok(inEtcd.revision >= fileRevision);
    assert.ok(inEtcd.list().every((p) => p.revision > fileRevision), 'an ETag from before the move never matches after it');
    // New commits continue above the migrated history.
    const next = await inEtcd.put('new', { allow: { sni: ['new.example'] } }, { client: 'dave' });
    assert.ok(next.ok && next.value.storeRevision > fileRevision);
    assert.ok((await inEtcd.history({ since: fileRevision })).entries.some((e) => e.name === 'new'));
  } finally {
    await inEtcd.close();
  }

  // A non-empty target is refused, and nothing is changed.
  const refused = await migrate('--from', source, '--to', url, '--etcd-prefix', '/migrated');
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /already holds \d+ keys; refusing to overwrite them \(--force/);

  // Back into a data dir: the same policies (with their etcd revisions) and the whole history.
  const back = join(root, 'back');
  const out = await migrate('--from', url, '--etcd-prefix', '/migrated', '--to', back);
  assert.equal(out.code, 0, out.stderr);
  const reopened = await openPolicyStore(back);
  const inEtcdAgain = await openEtcdPolicyStore({ endpoints: etcd.endpoints.split(','), prefix: '/migrated/' });
  try {
    assert.deepEqual(reopened.list(), inEtcdAgain.list(), 'revisions kept exactly');
    assert.deepEqual(await everything(reopened), await everything(inEtcdAgain));
    assert.equal(reopened.revision, inEtcdAgain.revision);
    const after = await reopened.put('web', { allow: { sni: ['after.example'] } }, { client: 'erin', ifMatch: reopened.get('web')!.revision });
    assert.ok(after.ok, 'the file store goes on from the migrated revisions');
  } finally {
    await reopened.close();
    await inEtcdAgain.close();
  }

  // Into a non-empty data dir: refused; with --force the old store files go, sealed segments included.
  const refusedDir = await migrate('--from', url, '--etcd-prefix', '/migrated', '--to', back);
  assert.equal(refusedDir.code, 1);
  assert.match(refusedDir.stderr, /already holds a store/);
  await writeFile(join(back, 'history-000000000001-000000000005.jsonl'), 'sealed segment of an older store\n');
  const forced = await migrate('--from', url, '--etcd-prefix', '/migrated', '--to', back, '--force');
  assert.equal(forced.code, 0, forced.stderr);
  assert.ok(!(await readdir(back)).includes('history-000000000001-000000000005.jsonl'));
});

test('store migrate: bad flags are usage errors naming the flag', async () => {
  const noTo = await migrate('--from', './data');
  assert.equal(noTo.code, 2);
  assert.match(noTo.stderr, /--to is required/);
  const badUrl = await migrate('--from', './data', '--to', 'etcd://nohost');
  assert.equal(badUrl.code, 2);
  assert.match(badUrl.stderr, /--to "nohost" is not HOST:PORT/);
  const twoDirs = await migrate('--from', './a', '--to', './b');
  assert.equal(twoDirs.code, 2);
});
