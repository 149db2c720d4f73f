// Three replicas on a real three-member etcd cluster (loopback, temp dirs):
// a change made on one reaches the Envoys of the others; If-Match races have
// one winner; losing an etcd member does not stop writes; losing all of them
// stops writes (503 naming etcd) but not the Envoys, and everything recovers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ControlPlane } from '../../src/server/controlPlane.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { FakeEnvoy } from '../support/fakeEnvoy.js';
import { etcdAvailable, startEtcd, type EtcdCluster } from '../support/etcdCluster.js';
import { allowedNames, api, startReplica, until } from './support.js';

const skip = etcdAvailable() ? false : 'no etcd binary (apt-get install etcd-server, or set ETCD_BIN)';

describe('three replicas on a three-member etcd', { skip }, () => {
  let etcd: EtcdCluster;
  const replicas: ControlPlane[] = [];
  const envoys: FakeEnvoy[] = [];
  const connect = (replica: ControlPlane, nodeId: string) => {
    const envoy = new FakeEnvoy(`127.0.0.1:${replica.xdsPort}`, { nodeId }).connect();
    envoys.push(envoy);
    return envoy;
  };

  before(async () => {
    etcd = await startEtcd(3);
    for (const id of ['A', 'B', 'C']) replicas.push(await startReplica(etcd.endpoints, '/replicas-test/', id));
  });
  after(async () => {
    for (const envoy of envoys) envoy.close();
    for (const replica of replicas) await replica.close();
    await etcd?.close();
  });

  test('a change on A reaches Envoys on B and C; /v1/nodes on any replica lists the whole fleet', async () => {
    const [a, b, c] = replicas as [ControlPlane, ControlPlane, ControlPlane];
    const onB = connect(b, 'host-b');
    const onC = connect(c, 'host-c');
    const put = await api(a.admin.port, 'PUT', '/v1/policies/web', { allow: { sni: ['first.example'] } });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    for (const envoy of [onB, onC]) await envoy.waitFor('the change made on A', () => allowedNames(envoy).includes('first.example'), 10_000);
    // Same revision everywhere.
    for (const replica of replicas) assert.equal((await api(replica.admin.port, 'GET', '/v1/policies/web')).body.revision, put.body.revision);

    await until('A lists the nodes of B and C with their replica', async () => {
      const nodes = (await api(a.admin.port, 'GET', '/v1/nodes')).body as { id: string; replica: string; upToDate?: boolean }[];
      const b_ = nodes.find((n) => n.id === 'host-b');
      const c_ = nodes.find((n) => n.id === 'host-c');
      return b_?.replica === 'B' && c_?.replica === 'C' && b_.upToDate === true && c_.upToDate === true;
    });
  });

  test('concurrent conflicting If-Match writes through two replicas: exactly one 200, one 412', async () => {
    const [a, b] = replicas as [ControlPlane, ControlPlane];
    const created = await api(a.admin.port, 'PUT', '/v1/policies/race', { allow: { sni: ['race0.example'] } });
    assert.equal(created.status, 200);
    let revision = created.body.revision as number;
    for (let round = 1; round <= 5; round++) {
      await until('B caught up', async () => (await api(b.admin.port, 'GET', '/v1/policies/race')).body.revision === revision);
      const [ra, rb] = await Promise.all([
        api(a.admin.port, 'PUT', '/v1/policies/race', { allow: { sni: [`a${round}.example`] } }, { 'if-match': `"${revision}"` }),
        api(b.admin.port, 'PUT', '/v1/policies/race', { allow: { sni: [`b${round}.example`] } }, { 'if-match': `"${revision}"` }),
      ]);
      assert.deepEqual([ra.status, rb.status].sort(), [200, 412], `round ${round}: ${JSON.stringify([ra.body, rb.body])}`);
      revision = (ra.status === 200 ? ra : rb).body.revision;
    }
  });

  test('one etcd member killed: writes continue and reach the Envoys', async () => {
    const [a, , c] = replicas as [ControlPlane, ControlPlane, ControlPlane];
    const onC = connect(c, 'host-c2');
    await etcd.kill(0);
    try {
      for (let i = 0; i < 3; i++) {
        const put = await api(a.admin.port, 'PUT', `/v1/policies/quorum-${i}`, { allow: { sni: [`quorum${i}.example`] } });
        assert.equal(put.status, 200, JSON.stringify(put.body));
      }
      await onC.waitFor('the writes made with one member down', () => allowedNames(onC).includes('quorum2.example'), 10_000);
    } finally {
      await etcd.restart(0);
    }
  });

  test('every etcd member stopped: Envoys keep being served, writes 503 naming etcd, /readyz not ready; all recover', async () => {
    const [a, b, c] = replicas as [ControlPlane, ControlPlane, ControlPlane];
    const onC = connect(c, 'host-c3');
    await onC.waitFor('the current state', () => allowedNames(onC).includes('first.example'));
    await etcd.stopAll();
    try {
      await until('A reports not ready', async () => (await api(a.admin.port, 'GET', '/readyz')).status === 503);
      await until('the store-ready gauge drops', async () => /^egress_xds_store_ready 0$/m.test((await api(a.admin.port, 'GET', '/metrics')).body as string));
      const ready = await api(a.admin.port, 'GET', '/readyz');
      assert.match(ready.body.reason, /etcd/);
      const refused = await api(a.admin.port, 'PUT', '/v1/policies/while-down', { allow: { sni: ['down.example'] } });
      assert.equal(refused.status, 503);
      assert.match(refused.body.error.message, /etcd/);
      // Reads and xDS go on from the last state, for Envoys already connected and new ones.
      assert.equal((await api(b.admin.port, 'GET', '/v1/policies/web')).status, 200);
      const late = connect(b, 'host-late');
      await late.waitFor('the last state from B while etcd is down', () => allowedNames(late).includes('first.example'), 10_000);
      assert.ok(allowedNames(onC).includes('first.example'));
    } finally {
      await etcd.startAll();
    }
    for (const replica of replicas) {
      await until('ready again', async () => (await api(replica.admin.port, 'GET', '/readyz')).status === 200, 30_000);
    }
    const put = await api(a.admin.port, 'PUT', '/v1/policies/after', { allow: { sni: ['after.example'] } });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    await onC.waitFor('a write after recovery', () => allowedNames(onC).includes('after.example'), 10_000);
    assert.equal((await api(c.admin.port, 'GET', '/v1/policies/while-down')).status, 404, 'the refused write did not happen');
    assert.ok(onC.state.has(TypeUrl.Cluster));
  });
});
