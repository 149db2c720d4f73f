// The etcd store on a real etcd (one member, loopback, temp dir), as several
// replicas would use it: two store instances on one prefix.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { PolicySpec } from '../../src/policy/model.js';
import { createLogger } from '../../src/log.js';
import { openEtcdPolicyStore, type EtcdPolicyStore } from '../../src/store/etcdStore.js';
import type { StoreChange } from '../../src/store/store.js';
import { StoreError } from '../../src/store/storeError.js';
import { etcdAvailable, startEtcd, type EtcdCluster } from '../support/etcdCluster.js';
import { startTcpProxy } from '../support/tcpProxy.js';

const skip = etcdAvailable() ? false : 'no etcd binary (apt-get install etcd-server, or set ETCD_BIN)';
const spec = (...sni: string[]): PolicySpec => ({ allow: { sni } });
const client = { client: 'test' };

/** Resolves when the predicate holds; fails after timeoutMs (polled every 10 ms). */
async function until(what: string, predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('etcd store', { skip }, () => {
  let etcd: EtcdCluster;
  const stores: EtcdPolicyStore[] = [];
  let prefixCount = 0;
  const logs: string[] = [];
  const logger = createLogger({ write: (line) => logs.push(line) });
  const open = async (prefix: string, endpoints?: string[]) => {
    const store = await openEtcdPolicyStore({ endpoints: endpoints ?? etcd.endpoints.split(','), prefix, probeMs: 200, callTimeoutMs: 2000, logger });
    stores.push(store);
    return store;
  };
  const freshPrefix = () => `/test-${process.pid}-${prefixCount++}/`;

  before(async () => {
    etcd = await startEtcd(1);
  });
  after(async () => {
    for (const store of stores) await store.close();
    await etcd?.close();
  });

  test('a write on one replica reaches the other; revisions come from etcd and only grow', async () => {
    const prefix = freshPrefix();
    const a = await open(prefix);
    const b = await open(prefix);
    const seenOnB: StoreChange[] = [];
    b.onChange((change) => seenOnB.push(change));
    assert.equal(a.revision, 0);

    const first = await a.put('web', spec('a.example'), client);
    assert.ok(first.ok && first.value.changed);
    // Read-your-write on the replica written to: answered only once its view has it.
    assert.equal(a.get('web')?.revision, first.value.revision);
    await until('B sees the put', () => b.get('web') !== undefined);
    assert.deepEqual(b.get('web')?.allow, { sni: ['a.example'] });
    assert.equal(b.get('web')?.revision, first.value.revision, 'both replicas number the policy the same');

    const second = await b.put('web', spec('b.example'), client);
    assert.ok(second.ok && second.value.revision > first.value.revision);
    await until('A sees B\'s put', () => a.get('web')?.revision === second.value.revision);
    assert.equal(a.revision, b.revision);
    assert.deepEqual(seenOnB.map((c) => c.revision), [first.value.revision, second.value.revision]);

    // An unchanged put writes nothing; a delete announces the name.
    const same = await a.put('web', spec('b.example'), client);
    assert.ok(same.ok && !same.value.changed);
    const deleted = await a.delete('web', client);
    assert.ok(deleted.ok);
    await until('B sees the delete', () => b.get('web') === undefined);
    assert.deepEqual(seenOnB.at(-1)?.deletes, ['web']);
    const history = await b.history();
    assert.deepEqual(history.entries.map((e) => `${e.action}:${e.name}@${e.storeRevision}`), [
      `put:web@${first.value.revision}`, `put:web@${second.value.revision}`, `delete:web@${deleted.value.storeRevision}`,
    ]);
  });

  test('concurrent conflicting If-Match writes on two replicas: exactly one wins, the other gets 412', async () => {
    const prefix = freshPrefix();
    const a = await open(prefix);
    const b = await open(prefix);
    const created = await a.put('shared', spec('v0.example'), client);
    assert.ok(created.ok);
    await until('B has the policy', () => b.get('shared') !== undefined);
    for (let round = 0; round < 10; round++) {
      const revision = a.get('shared')!.revision;
      await until('B caught up', () => b.get('shared')?.revision === revision);
      const [ra, rb] = await Promise.all([
        a.put('shared', spec(`a${round}.example`), { client: 'a', ifMatch: revision }),
        b.put('shared', spec(`b${round}.example`), { client: 'b', ifMatch: revision }),
      ]);
      const winners = [ra, rb].filter((r) => r.ok);
      assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify([ra, rb])}`);
      const loser = [ra, rb].find((r) => !r.ok)!;
      assert.equal(!loser.ok && loser.error.code, 'precondition_failed');
      const winner = winners[0]!;
      assert.ok(winner.ok);
      await until('both replicas agree', () => a.get('shared')?.revision === winner.value.revision && b.get('shared')?.revision === winner.value.revision);
      assert.deepEqual(a.get('shared')?.allow, b.get('shared')?.allow);
    }
  });

  test('the same policy file content applied by two replicas at once is one commit, not a fight', async () => {
    const prefix = freshPrefix();
    const a = await open(prefix);
    const b = await open(prefix);
    const changes = [{ name: 'p1', spec: spec('one.example') }, { name: 'p2', spec: spec('two.example') }];
    const options = { client: 'policy-file:/etc/p.yaml', source: 'file:/etc/p.yaml' };
    const [ra, rb] = await Promise.all([a.apply(changes, options), b.apply(changes, options)]);
    assert.equal(ra.changed.length + rb.changed.length, 2, 'one replica wrote both, the other nothing');
    await until('both have both', () => a.list().length === 2 && b.list().length === 2);
    assert.equal((await a.history()).entries.length, 2);
    // Again, with nothing changed: nothing written.
    const again = await b.apply(changes, options);
    assert.deepEqual(again.changed, []);
  });

  test('batch: all or nothing, one revision', async () => {
    const a = await open(freshPrefix());
    const ok = await a.batch({ put: { x: spec('x.example'), y: spec('y.example') } }, client);
    assert.ok(ok.ok);
    assert.equal(a.get('x')?.revision, a.get('y')?.revision);
    const refused = await a.batch({ put: { z: spec('z.example') }, delete: ['missing'] }, client);
    assert.ok(!refused.ok && refused.error.code === 'not_found' && refused.error.name === 'missing');
    assert.equal(a.get('z'), undefined);
  });

  test('a replica whose watch falls behind a compaction reloads and announces only what changed', async () => {
    const prefix = freshPrefix();
    const a = await open(prefix);
    const proxy = await startTcpProxy(etcd.members[0]!.clientPort);
    try {
      await a.put('kept', spec('kept.example'), client);
      await a.put('changed', spec('old.example'), client);
      await a.put('removed', spec('gone.example'), client);
      const b = await open(prefix, [`127.0.0.1:${proxy.port}`]);
      assert.equal(b.list().length, 3);
      assert.equal(b.count(), 3);
      const seenOnB: StoreChange[] = [];
      b.onChange((change) => seenOnB.push(change));

      await proxy.cut();
      logs.push(`CUT ${new Date().toISOString()}\n`);
      await until('B notices etcd is gone', () => !b.health().ok);
      const write = await a.put('changed', spec('new.example'), client);
      assert.ok(write.ok);
      await a.delete('removed', client);
      await a.put('added', spec('added.example'), client);
      // Compact everything B has not seen: its watch cannot resume.
      await a.client.kv.compact({ revision: String(a.etcdRevision), physical: true });
      logs.push(`COMPACTED ${new Date().toISOString()}\n`);
      await proxy.heal();

      await until('B recovered', () => b.health().ok && b.get('added') !== undefined, 15_000);
      const compactedAt = logs.findIndex((line) => line.startsWith('COMPACTED'));
      assert.ok(logs.slice(compactedAt).some((line) => line.includes('reloading the whole prefix') && line.includes('fell behind a compaction')), `B went through the reload, not a plain resume:\n${logs.join('')}`);
      assert.deepEqual(b.list(), a.list());
      assert.equal(b.count(), a.list().length);
      const puts = seenOnB.flatMap((c) => c.puts.map((p) => p.name)).sort();
      const deletes = seenOnB.flatMap((c) => c.deletes).sort();
      assert.deepEqual(puts, ['added', 'changed'], 'the unchanged policy is not announced again');
      assert.deepEqual(deletes, ['removed']);
      assert.deepEqual((await b.history()).entries, (await a.history()).entries);
    } finally {
      await proxy.close();
    }
  });

  test('etcd unreachable: the view stays, writes fail naming etcd, health says why; all recover by themselves', async () => {
    const prefix = freshPrefix();
    const proxy = await startTcpProxy(etcd.members[0]!.clientPort);
    try {
      const a = await open(prefix, [`127.0.0.1:${proxy.port}`]);
      await a.put('stay', spec('stay.example'), client);
      await proxy.cut();
      await until('unhealthy', () => !a.health().ok);
      assert.match(a.health().reason ?? '', /etcd/);
      const started = Date.now();
      await assert.rejects(a.put('stay', spec('other.example'), client), (error: unknown) => error instanceof StoreError && /etcd/.test(error.message));
      console.log(`write refused after ${Date.now() - started} ms`);
      assert.deepEqual(a.get('stay')?.allow, { sni: ['stay.example'] }, 'the last state is still served');
      await proxy.heal();
      await until('healthy again', () => a.health().ok, 15_000);
      const after = await a.put('stay', spec('after.example'), client);
      assert.ok(after.ok && after.value.changed);
    } finally {
      await proxy.close();
    }
  });
});
