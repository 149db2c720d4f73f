import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import { FakeEnvoy, settle } from '../support/fakeEnvoy.js';
import { policy, startHarness, type Harness } from './harness.js';

const LDS = TypeUrl.Listener;
const CDS = TypeUrl.Cluster;
const serverNames = (envoy: FakeEnvoy): unknown =>
  (envoy.state.get(LDS)?.get('egress_tproxy') as { filterChains?: { filterChainMatch: { serverNames: string[] } }[] } | undefined)
    ?.filterChains?.[0]?.filterChainMatch.serverNames;

describe('ADS state of the world', () => {
  let harness: Harness;
  const envoys: FakeEnvoy[] = [];
  const envoy = (nodeId: string, options: Partial<ConstructorParameters<typeof FakeEnvoy>[1]> = {}) => {
    const e = new FakeEnvoy(harness.address, { nodeId, ...options });
    envoys.push(e);
    return e;
  };

  before(async () => {
    harness = await startHarness([policy('github', ['github.com', 'www.github.com'])]);
  });
  after(async () => {
    for (const e of envoys) e.close();
    await harness.close();
  });

  test('Clusters, then the Listener, each with a version and a fresh nonce; ACKs trigger nothing', async () => {
    const e = envoy('host-1').connect();
    await e.waitFor('cluster and listener', () => e.state.has(CDS) && e.state.has(LDS));
    await settle();
    assert.deepEqual(e.responses.map((r) => r.typeUrl), [CDS, LDS], 'exactly one response per type, clusters first');
    assert.deepEqual([...e.state.get(CDS)!.keys()], ['policy_github', 'reject_cluster']);
    assert.deepEqual(serverNames(e), ['github.com', 'www.github.com']);
    for (const r of e.responses) assert.match(r.version, /^[0-9a-f]{16}$/);
    assert.equal(new Set(e.responses.map((r) => r.nonce)).size, e.responses.length, 'nonces are unique');
    const status = harness.registry.list().find((n) => n.id === 'host-1')!;
    assert.equal(status.resources[LDS]!.acked, e.acceptedVersions.get(LDS));
    assert.equal(status.resources[CDS]!.sent, status.resources[CDS]!.acked);
  });

  test('a change is pushed at once; unchanged types are not re-sent', async () => {
    const e = envoy('host-2').connect();
    await e.waitFor('initial state', () => e.state.has(LDS));
    const clustersBefore = e.responsesOf(CDS).length;
    harness.cache.setPolicies([policy('github', ['github.com', 'www.github.com', 'api.github.com'])]);
    await e.waitFor('new listener', () => JSON.stringify(serverNames(e)).includes('api.github.com'));
    await settle();
    // The cluster set is unchanged (same names, same content): no CDS response.
    assert.equal(e.responsesOf(CDS).length, clustersBefore);
    assert.equal(e.responsesOf(LDS).length, 2);
  });

  test('a change of Clusters and Listener: the Listener goes out once the Clusters are ACKed, after them', async () => {
    const e = envoy('host-2b').connect();
    await e.waitFor('initial state', () => e.state.has(LDS));
    const before = e.responses.length;
    harness.cache.setPolicies([policy('github', ['github.com', 'www.github.com']), policy('gitlab', ['gitlab.com'])]);
    await e.waitFor('new listener', () => JSON.stringify(e.state.get(LDS)?.get('egress_tproxy') ?? {}).includes('gitlab.com'));
    await settle();
    assert.deepEqual(e.responses.slice(before).map((r) => r.typeUrl), [CDS, LDS], 'one Cluster response, then one Listener response');
    assert.ok(e.state.get(CDS)!.has('policy_gitlab'));
    const status = harness.registry.list().find((n) => n.id === 'host-2b')!;
    assert.equal(status.upToDate, true, 'both types acknowledged at their latest versions');
  });

  test('a NACK is recorded, the rejected version is not re-sent, and the next change goes out', async () => {
    const e = envoy('host-3').connect();
    await e.waitFor('initial state', () => e.state.has(LDS));
    const goodVersion = e.acceptedVersions.get(LDS)!;
    e.rejectNextResponse(LDS, 'filter chain match overlap (test)');
    harness.cache.setPolicies([policy('github', ['github.com', 'nacked.example'])]);
    await e.waitFor('the NACK to be recorded', () => harness.registry.list().find((n) => n.id === 'host-3')?.resources[LDS]?.nack !== undefined);
    const status = harness.registry.list().find((n) => n.id === 'host-3')!.resources[LDS]!;
    assert.equal(status.nack!.message, 'filter chain match overlap (test)');
    assert.equal(status.acked, goodVersion, 'the last good version stays acked');
    assert.notEqual(status.sent, goodVersion);
    const count = e.responsesOf(LDS).length;
    await settle(300);
    assert.equal(e.responsesOf(LDS).length, count, 'the rejected version is not re-sent');
    assert.equal(e.acceptedVersions.get(LDS), goodVersion);
    harness.cache.setPolicies([policy('github', ['github.com', 'fixed.example'])]);
    await e.waitFor('the fixed listener', () => JSON.stringify(serverNames(e)).includes('fixed.example'));
    await e.waitFor('the NACK to clear on the next ACK', () => harness.registry.list().find((n) => n.id === 'host-3')?.resources[LDS]?.nack === undefined);
  });

  test('a request with a stale nonce gets no response', async () => {
    const e = envoy('host-4').connect();
    await e.waitFor('initial state', () => e.state.has(LDS));
    const firstNonce = e.responsesOf(LDS)[0]!.nonce;
    harness.cache.setPolicies([policy('github', ['github.com', 'stale.example'])]);
    await e.waitFor('second listener', () => e.responsesOf(LDS).length === 2);
    const count = e.responses.length;
    e.send({ node: { id: 'host-4' }, type_url: LDS, version_info: 'whatever', response_nonce: firstNonce, resource_names: [] });
    e.send({ node: { id: 'host-4' }, type_url: LDS, version_info: '', response_nonce: 'no-such-nonce', resource_names: [] });
    await settle(300);
    assert.equal(e.responses.length, count);
  });

  test('an unknown type_url is ignored and never disturbs the served types', async () => {
    const e = envoy('host-5').connect();
    await e.waitFor('initial state', () => e.state.has(LDS));
    e.send({ node: { id: 'host-5' }, type_url: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration', resource_names: ['x'], response_nonce: '' });
    e.send({ node: { id: 'host-5' }, type_url: '', response_nonce: '' });
    harness.cache.setPolicies([policy('github', ['github.com', 'after-unknown.example'])]);
    await e.waitFor('the listener change', () => JSON.stringify(serverNames(e)).includes('after-unknown.example'));
    assert.ok(e.responses.every((r) => r.typeUrl === LDS || r.typeUrl === CDS));
    assert.equal(e.errors.length, 0);
  });

  test('a reconnecting Envoy gets the current state at once', async () => {
    const first = envoy('host-6').connect();
    await first.waitFor('initial state', () => first.state.has(LDS));
    const version = first.acceptedVersions.get(LDS)!;
    first.close();
    const again = envoy('host-6', { initialVersions: { [LDS]: version, [CDS]: first.acceptedVersions.get(CDS)! } }).connect();
    await again.waitFor('state after reconnect', () => again.state.has(LDS) && again.state.has(CDS));
    assert.equal(again.acceptedVersions.get(LDS), version);
  });

  test('a stream whose first request has no node id is refused with INVALID_ARGUMENT', async () => {
    const e = envoy('');
    e.connect();
    await e.waitFor('the stream status', () => e.status !== undefined);
    assert.equal(e.status!.code, grpc.status.INVALID_ARGUMENT);
    assert.match(e.status!.details, /node\.id/);
  });

  test('a change reaches only the nodes whose resources it changes; one compile per node group', async () => {
    harness.cache.setPolicies([policy('github', ['github.com']), policy('team-a', ['a.example'], ['team-a-*'])]);
    const a = envoy('team-a-1').connect();
    const a2 = envoy('team-a-2').connect();
    const b = envoy('team-b-1').connect();
    await Promise.all([a, a2, b].map((e) => e.waitFor('initial state', () => e.state.has(LDS))));
    const bCount = b.responses.length;
    const compilesBefore = harness.compileCalls();
    harness.cache.setPolicies([policy('github', ['github.com']), policy('team-a', ['a.example', 'a2.example'], ['team-a-*'])]);
    await Promise.all([a, a2].map((e) => e.waitFor('team-a change', () => JSON.stringify(serverNames(e)).includes('a2.example'))));
    await settle();
    assert.equal(b.responses.length, bCount, 'team-b is not told of a change that does not concern it');
    // team-a's group is compiled once for both of its nodes; team-b's and this test's other nodes' groups are reused.
    assert.equal(harness.compileCalls() - compilesBefore, 1);
    const bodies = [a, a2].map((e) => JSON.stringify([...e.state.get(LDS)!]));
    assert.equal(bodies[0], bodies[1]);
  });

  test('a repeated first request costs nothing: no second response, no reset of what was sent', async () => {
    const e = envoy('host-7').connect();
    await e.waitFor('initial state', () => e.state.has(LDS));
    await settle();
    const count = e.responses.length;
    for (let i = 0; i < 200; i++) e.send({ node: { id: 'host-7' }, type_url: CDS, version_info: '', resource_names: [], response_nonce: '' });
    for (let i = 0; i < 200; i++) e.send({ node: { id: 'host-7' }, type_url: LDS, version_info: e.acceptedVersions.get(LDS), resource_names: [], response_nonce: e.responsesOf(LDS).at(-1)!.nonce });
    await settle(300);
    assert.equal(e.responses.length, count);
  });

  test('a slow Envoy: one response per type in flight; changes made meanwhile arrive as the latest state only', async () => {
    const e = envoy('host-8');
    e.connect();
    await e.waitFor('initial state', () => e.state.has(LDS));
    e.holdAnswers(LDS);
    harness.cache.setPolicies([policy('github', ['github.com', 'slow-0.example'])]);
    await e.waitFor('the first change', () => e.responsesOf(LDS).length === 2);
    for (let i = 1; i <= 20; i++) harness.cache.setPolicies([policy('github', ['github.com', `slow-${i}.example`])]);
    await settle(300);
    assert.equal(e.responsesOf(LDS).length, 2, 'nothing more while the change is unanswered');
    assert.equal(harness.registry.list().find((n) => n.id === 'host-8')!.upToDate, false);
    e.releaseAnswers(LDS);
    await e.waitFor('the latest state', () => JSON.stringify(serverNames(e)).includes('slow-20.example'));
    await settle();
    assert.equal(e.responsesOf(LDS).length, 3, 'the 20 changes made meanwhile arrive as one response');
    await e.waitFor('up to date in node status', () => harness.registry.list().find((n) => n.id === 'host-8')?.upToDate === true);
    const status = harness.registry.list().find((n) => n.id === 'host-8')!.resources[LDS]!;
    assert.equal(status.latest, status.acked);
  });
});

describe('ADS stream limits', () => {
  test('beyond maxStreams new streams are shed with RESOURCE_EXHAUSTED; a freed place is taken again', async () => {
    const harness = await startHarness([policy('github', ['github.com'])], { limits: { maxStreams: 2 } });
    const envoys = ['cap-1', 'cap-2'].map((id) => new FakeEnvoy(harness.address, { nodeId: id }).connect());
    try {
      await Promise.all(envoys.map((e) => e.waitFor('initial state', () => e.state.has(LDS))));
      const shed = new FakeEnvoy(harness.address, { nodeId: 'cap-3' }).connect();
      envoys.push(shed);
      await shed.waitFor('the stream status', () => shed.status !== undefined);
      assert.equal(shed.status!.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(shed.status!.details, /at most 2 ADS streams/);
      assert.equal(shed.responses.length, 0);
      assert.equal((await harness.metrics.streamsRefused.get()).values.find((v) => v.labels.reason === 'capacity')?.value, 1);
      envoys[0]!.close();
      const again = new FakeEnvoy(harness.address, { nodeId: 'cap-4' });
      envoys.push(again);
      // The server learns of the closed stream asynchronously: retry as Envoy would, bounded.
      for (let attempt = 0; attempt < 50 && harness.server.openStreams() >= 2; attempt++) await settle(20);
      again.connect();
      await again.waitFor('initial state', () => again.state.has(LDS));
    } finally {
      for (const e of envoys) e.close();
      await harness.close();
    }
  });

  test('a node id longer than maxNodeIdBytes is refused with INVALID_ARGUMENT naming node.id', async () => {
    const harness = await startHarness([policy('github', ['github.com'])], { limits: { maxNodeIdBytes: 8 } });
    const ok = new FakeEnvoy(harness.address, { nodeId: '12345678' }).connect();
    const long = new FakeEnvoy(harness.address, { nodeId: '123456789' }).connect();
    try {
      await ok.waitFor('initial state', () => ok.state.has(LDS));
      await long.waitFor('the stream status', () => long.status !== undefined);
      assert.equal(long.status!.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(long.status!.details, 'node.id is 9 bytes long; at most 8 are accepted');
      assert.deepEqual(harness.registry.list().map((n) => n.id), ['12345678']);
    } finally {
      ok.close();
      long.close();
      await harness.close();
    }
  });
});

test('closing the server disconnects the Envoys connected to it (they reconnect elsewhere; nothing is left open)', async () => {
  // grpc-js destroys open connections on forceShutdown only while it tracks them, which it
  // does not with channelz off: this is what keeps that option as it is in src/xds/server.ts.
  const harness = await startHarness([policy('github', ['github.com'])]);
  const e = new FakeEnvoy(harness.address, { nodeId: 'closing' }).connect();
  try {
    await e.waitFor('its configuration', () => e.state.has(LDS));
    await harness.close();
    await e.waitFor('the stream to end', () => e.status !== undefined, 10_000);
    assert.notEqual(e.status!.code, grpc.status.OK);
  } finally {
    e.close();
  }
});
