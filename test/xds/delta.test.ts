import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { FakeEnvoy, settle } from '../support/fakeEnvoy.js';
import { policy, startHarness, type Harness } from './harness.js';

const LDS = TypeUrl.Listener;
const CDS = TypeUrl.Cluster;
const listenerText = (e: FakeEnvoy): string => JSON.stringify(e.state.get(LDS)?.get('egress_tproxy') ?? null);

describe('ADS delta (incremental)', () => {
  let harness: Harness;
  const envoys: FakeEnvoy[] = [];
  const envoy = (nodeId: string) => {
    const e = new FakeEnvoy(harness.address, { nodeId, variant: 'delta' });
    envoys.push(e);
    return e;
  };

  before(async () => {
    harness = await startHarness([policy('github', ['github.com'])]);
  });
  after(async () => {
    for (const e of envoys) e.close();
    await harness.close();
  });

  test('initial state: all Clusters, then the Listener', async () => {
    const e = envoy('d-1').connect();
    await e.waitFor('initial state', () => e.state.has(LDS));
    await settle();
    assert.deepEqual(e.responses.map((r) => r.typeUrl), [CDS, LDS]);
    assert.deepEqual([...e.state.get(CDS)!.keys()].sort(), ['policy_github', 'reject_cluster']);
  });

  test('a change sends only the resources that changed, and names the removed ones', async () => {
    const e = envoy('d-2').connect();
    await e.waitFor('initial state', () => e.state.has(LDS));
    harness.cache.setPolicies([policy('github', ['github.com']), policy('extra', ['extra.example'])]);
    await e.waitFor('the added cluster', () => e.state.get(CDS)?.has('policy_extra') === true);
    const added = e.responsesOf(CDS).at(-1)!;
    assert.deepEqual([...added.resources.keys()], ['policy_extra'], 'only the new cluster is sent');
    await e.waitFor('the new listener', () => listenerText(e).includes('extra.example'));

    harness.cache.setPolicies([policy('github', ['github.com'])]);
    await e.waitFor('the removal', () => e.state.get(CDS)?.has('policy_extra') === false);
    const removal = e.responsesOf(CDS).at(-1)!;
    assert.deepEqual(removal.removed, ['policy_extra']);
    assert.equal(removal.resources.size, 0);
  });

  test('a NACK is recorded and nothing is re-sent until the resources change again', async () => {
    const e = envoy('d-3').connect();
    await e.waitFor('initial state', () => e.state.has(LDS));
    e.rejectNextResponse(LDS, 'rejected by test');
    harness.cache.setPolicies([policy('github', ['github.com', 'nack.example'])]);
    await e.waitFor('NACK recorded', () => harness.registry.list().find((n) => n.id === 'd-3')?.resources[LDS]?.nack?.message === 'rejected by test');
    const count = e.responses.length;
    await settle(300);
    assert.equal(e.responses.length, count);
    harness.cache.setPolicies([policy('github', ['github.com', 'after-nack.example'])]);
    await e.waitFor('next change', () => listenerText(e).includes('after-nack.example'));
  });

  test('a reconnecting client that announces the versions it holds is sent only what differs', async () => {
    const first = envoy('d-4').connect();
    await first.waitFor('initial state', () => first.state.has(LDS));
    first.close();
    const clusters = harness.cache.snapshotFor('d-4').resourceSet(CDS)!;
    const held = Object.fromEntries([...clusters.items.values()].map((r) => [r.name, r.version]));
    const again = new FakeEnvoy(harness.address, { nodeId: 'd-4', variant: 'delta', initialResourceVersions: { [CDS]: held } });
    envoys.push(again);
    again.connect();
    // An initialised Envoy re-subscribes to every type at once on a new stream.
    again.subscribe(LDS);
    await again.waitFor('listener', () => again.state.has(LDS));
    await settle();
    assert.equal(again.responsesOf(CDS).length, 0, 'the clusters it holds are current: none is sent');
  });
});
