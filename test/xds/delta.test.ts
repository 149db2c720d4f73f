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

  test('a re-subscription to a resource the client holds is answered with it', async () => {
    const e = envoy('d-5').connect();
    await e.waitFor('initial state', () => e.state.has(LDS));
    await settle();
    const before = e.responsesOf(CDS).length;
    e.send({ node: { id: 'd-5' }, type_url: CDS, resource_names_subscribe: ['policy_github'] });
    await e.waitFor('the re-sent cluster', () => e.responsesOf(CDS).length > before);
    const answer = e.responsesOf(CDS).at(-1)!;
    assert.deepEqual([...answer.resources.keys()], ['policy_github'], 'only the re-subscribed resource');
    assert.deepEqual(answer.removed, []);
  });

  test('names subscribed to that do not exist are reported in removed_resources, once; sent when they appear', async () => {
    const e = new FakeEnvoy(harness.address, { nodeId: 'd-6', variant: 'delta' });
    envoys.push(e);
    e.connect();
    await e.waitFor('initial state', () => e.state.has(LDS));
    await settle();
    const before = e.responsesOf(CDS).length;
    e.send({ node: { id: 'd-6' }, type_url: CDS, resource_names_subscribe: ['policy_nowhere'] });
    await e.waitFor('the report', () => e.responsesOf(CDS).length > before);
    const report = e.responsesOf(CDS).at(-1)!;
    assert.deepEqual(report.removed, ['policy_nowhere']);
    assert.equal(report.resources.size, 0);
    // Another change of this node's resources does not repeat the report.
    harness.cache.setPolicies([policy('github', ['github.com']), policy('other', ['other.example'])]);
    await e.waitFor('the added cluster', () => e.state.get(CDS)?.has('policy_other') === true);
    assert.ok(e.responsesOf(CDS).slice(before + 1).every((r) => !r.removed.includes('policy_nowhere')), 'reported once');
    harness.cache.setPolicies([policy('github', ['github.com']), policy('nowhere', ['nowhere.example'])]);
    await e.waitFor('the missing resource, once it exists', () => e.state.get(CDS)?.has('policy_nowhere') === true);
    harness.cache.setPolicies([policy('github', ['github.com'])]);
    await e.waitFor('its removal', () => e.state.get(CDS)?.has('policy_nowhere') === false);
  });

  test('a NACK of a superseded response is recorded', async () => {
    const e = envoy('d-7').connect();
    await e.waitFor('initial state', () => e.state.has(LDS));
    await settle();
    const first = e.responsesOf(LDS)[0]!;
    harness.cache.setPolicies([policy('github', ['github.com', 'superseding.example'])]);
    await e.waitFor('the next listener', () => listenerText(e).includes('superseding.example'));
    e.send({ node: { id: 'd-7' }, type_url: LDS, response_nonce: first.nonce, error_detail: { code: 3, message: 'late rejection (test)' } });
    await e.waitFor('the NACK recorded', () => harness.registry.list().find((n) => n.id === 'd-7')?.resources[LDS]?.nack !== undefined);
    const nack = harness.registry.list().find((n) => n.id === 'd-7')!.resources[LDS]!.nack!;
    assert.equal(nack.message, 'late rejection (test)');
    assert.equal(nack.version, first.version, 'the version that response carried');
    assert.equal(nack.superseded, true);
  });

  test('one response per type in flight: subscription changes and pushes wait for the answer, then the latest state goes out', async () => {
    const e = envoy('d-8');
    e.holdAnswers(CDS);
    e.connect();
    await e.waitFor('the first clusters', () => e.responsesOf(CDS).length === 1);
    for (let i = 0; i < 50; i++) {
      e.send({ node: { id: 'd-8' }, type_url: CDS, resource_names_unsubscribe: ['policy_github'] });
      e.send({ node: { id: 'd-8' }, type_url: CDS, resource_names_subscribe: ['policy_github'] });
    }
    harness.cache.setPolicies([policy('github', ['github.com']), policy('held', ['held.example'])]);
    await settle(300);
    assert.equal(e.responsesOf(CDS).length, 1, 'nothing more while the first is unanswered');
    e.releaseAnswers(CDS);
    await e.waitFor('the latest clusters', () => e.state.get(CDS)?.has('policy_held') === true);
    assert.ok(harness.registry.list().find((n) => n.id === 'd-8')!.upToDate !== undefined);
    await e.waitFor('up to date in node status', () => harness.registry.list().find((n) => n.id === 'd-8')?.upToDate === true);
    harness.cache.setPolicies([policy('github', ['github.com'])]);
  });
});
