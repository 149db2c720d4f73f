// Route tables in state-of-the-world ADS are incremental (xDS protocol, "Resource types": RDS
// and EDS responses need not carry every subscribed resource, and an omitted one is kept): a
// SotW stream is sent only the tables whose content differs from what it holds. These tests
// hold a real grpc-js client that keeps RDS tables as Envoy does (one by one) to that: one
// edit among 200 tables sends one table; a NACK keeps the old table and the fix goes out
// (with what the NACKed response carried); a new name is sent alone; a client that does not
// answer is sent, once it answers, the newest content of each table that changed meanwhile.
// After each, the client's whole set equals the server's snapshot.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeStrictToJson } from '../../src/envoy/codec.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import type { Policy } from '../../src/policy/model.js';
import type { SnapshotCache } from '../../src/snapshot/cache.js';
import { FakeEnvoy, settle } from '../support/fakeEnvoy.js';
import { rdsCompiler } from '../support/rdsCompiler.js';
import { startHarness, type Harness } from './harness.js';

const RDS = TypeUrl.RouteConfiguration;
const TABLES = 200;

const basePolicies = (): Policy[] =>
  Array.from({ length: TABLES }, (_, i) => ({ name: `vm-${String(i).padStart(3, '0')}`, allow: { sni: [`s${i}.example`, `t${i}.example`] } }));
const withSni = (policies: readonly Policy[], name: string, sni: string[]): Policy[] =>
  policies.map((p) => (p.name === name ? { ...p, allow: { sni } } : p));

describe('RDS in state of the world: only the tables that changed', () => {
  let harness: Harness;
  let cache: SnapshotCache;
  let address: string;
  const envoys: FakeEnvoy[] = [];
  let nextNode = 0;

  /** A fresh policy set and a fresh client, holding all 200 tables. */
  async function connected(): Promise<{ e: FakeEnvoy; nodeId: string; policies: Policy[] }> {
    const policies = basePolicies();
    cache.setPolicies(policies);
    const nodeId = `sotw-${++nextNode}`;
    const e = new FakeEnvoy(address, { nodeId, variant: 'sotw' });
    envoys.push(e);
    e.connect();
    await e.waitFor('all 200 tables', () => e.state.get(RDS)?.size === TABLES && e.responsesOf(RDS).length >= 1);
    await settle(50);
    return { e, nodeId, policies };
  }

  /** The client holds exactly the server's tables, content for content. */
  function assertInSync(e: FakeEnvoy, nodeId: string): void {
    const set = cache.currentSnapshot(nodeId)!.resourceSet(RDS)!;
    const held = e.state.get(RDS)!;
    assert.deepEqual([...held.keys()].sort(), [...set.items.keys()].sort());
    for (const [name, resource] of set.items) assert.deepEqual(held.get(name), decodeStrictToJson(RDS, resource.bytes), `table ${name}`);
  }

  const domains = (e: FakeEnvoy, name: string): unknown =>
    (e.state.get(RDS)?.get(name) as { virtualHosts: { domains: string[] }[] } | undefined)?.virtualHosts[0]!.domains;

  before(async () => {
    harness = await startHarness(basePolicies(), {}, rdsCompiler);
    ({ cache, address } = harness);
  });
  after(async () => {
    for (const e of envoys) e.close();
    await harness.close();
  });

  test('an edit of one allowlist sends exactly that one table, and the client then holds the server snapshot', async () => {
    const { e, nodeId, policies } = await connected();
    assertInSync(e, nodeId);
    const first = e.responsesOf(RDS)[0]!;
    assert.equal(first.resources.size, TABLES);
    const before = e.responsesOf(RDS).length;

    cache.setPolicies(withSni(policies, 'vm-042', ['s42.example', 't42.example', 'new.example']));
    await e.waitFor('the edited table', () => e.responsesOf(RDS).length > before && e.acceptedVersions.get(RDS) === e.responsesOf(RDS).at(-1)!.version);
    await settle();
    const sent = e.responsesOf(RDS).slice(before);
    assert.equal(sent.length, 1, 'one response');
    assert.deepEqual([...sent[0]!.resources.keys()], ['http|vm-042']);
    // Two orders of magnitude smaller than the whole set (what every edit used to send).
    assert.ok(sent[0]!.bytes * 50 < first.bytes, `${sent[0]!.bytes} B for one table vs ${first.bytes} B for all`);
    // version_info still names the state: the snapshot's version of the route tables.
    assert.equal(sent[0]!.version, cache.currentSnapshot(nodeId)!.resourceSet(RDS)!.version);
    assertInSync(e, nodeId);
    assert.equal(e.errors.length, 0, e.errors.join('; '));
  });

  test('a NACKed table stays as it was and is not re-sent; the fix goes out with what the NACKed response carried', async () => {
    const { e, nodeId, policies } = await connected();
    const before = e.responsesOf(RDS).length;
    e.rejectNextResponse(RDS, 'route table rejected');
    const bad = withSni(withSni(policies, 'vm-007', ['bad.example']), 'vm-008', ['s8.example', 'x8.example']);
    cache.setPolicies(bad);
    await e.waitFor('the NACKed response', () => e.responsesOf(RDS).length === before + 1);
    const nacked = e.responsesOf(RDS).at(-1)!;
    assert.deepEqual([...nacked.resources.keys()].sort(), ['http|vm-007', 'http|vm-008']);
    await settle();
    assert.equal(e.responsesOf(RDS).length, before + 1, 'a rejected version is not sent again');
    assert.deepEqual(domains(e, 'http|vm-007'), ['s7.example', 't7.example'], 'the client keeps the table it had');

    // The fix of vm-007; vm-008 unchanged since the NACK: the client may not hold it, so it goes out again.
    cache.setPolicies(withSni(bad, 'vm-007', ['good.example']));
    await e.waitFor('the fix', () => e.responsesOf(RDS).length === before + 2 && e.acceptedVersions.get(RDS) === e.responsesOf(RDS).at(-1)!.version);
    const fix = e.responsesOf(RDS).at(-1)!;
    assert.deepEqual([...fix.resources.keys()].sort(), ['http|vm-007', 'http|vm-008']);
    assert.deepEqual(domains(e, 'http|vm-007'), ['good.example']);
    assertInSync(e, nodeId);

    // And then only what changes again.
    cache.setPolicies(withSni(withSni(bad, 'vm-007', ['good.example']), 'vm-100', ['other.example']));
    await e.waitFor('the next edit', () => e.responsesOf(RDS).length === before + 3);
    assert.deepEqual([...e.responsesOf(RDS).at(-1)!.resources.keys()], ['http|vm-100']);
    await e.waitFor('in sync', () => e.acceptedVersions.get(RDS) === e.responsesOf(RDS).at(-1)!.version);
    assertInSync(e, nodeId);
  });

  test('a client that subscribes to new names is sent those tables only', async () => {
    const { e, nodeId, policies } = await connected();
    const before = e.responsesOf(RDS).length;
    cache.setPolicies([...policies, { name: 'vm-900', allow: { sni: ['n1.example'] } }, { name: 'vm-901', allow: { sni: ['n2.example'] } }]);
    await e.waitFor('the new tables', () => e.state.get(RDS)?.size === TABLES + 2);
    await settle();
    const sent = e.responsesOf(RDS).slice(before);
    // The new version may go out first with no table (the listener naming the new tables is
    // still on its way); then the new tables, each once, and nothing else.
    assert.ok(sent.length <= 2, `${sent.length} responses`);
    assert.deepEqual(sent.flatMap((r) => [...r.resources.keys()]).sort(), ['http|vm-900', 'http|vm-901']);
    assertInSync(e, nodeId);

    // A name dropped and asked for again is one Envoy no longer holds: it is sent in full again.
    const name = 'http|vm-010';
    e.routeNames.delete(name);
    e.state.get(RDS)!.delete(name);
    const nonce = e.responsesOf(RDS).at(-1)!.nonce;
    e.send({ type_url: RDS, version_info: e.acceptedVersions.get(RDS), resource_names: [...e.routeNames].sort(), response_nonce: nonce });
    await settle();
    e.routeNames.add(name);
    e.send({ type_url: RDS, version_info: e.acceptedVersions.get(RDS), resource_names: [...e.routeNames].sort(), response_nonce: nonce });
    await e.waitFor('the table asked for again', () => e.state.get(RDS)?.has(name) === true);
    assert.deepEqual([...e.responsesOf(RDS).at(-1)!.resources.keys()], [name]);
    assertInSync(e, nodeId);
  });

  test('a table that goes away: no table is sent, but the new version is, so the client acknowledges the latest state', async () => {
    const { e, nodeId, policies } = await connected();
    const before = e.responsesOf(RDS).length;
    cache.setPolicies(policies.filter((p) => p.name !== 'vm-150'));
    const target = cache.currentSnapshot(nodeId)!.resourceSet(RDS)!.version;
    await e.waitFor('the new version acknowledged', () => e.acceptedVersions.get(RDS) === target);
    await settle();
    const sent = e.responsesOf(RDS).slice(before);
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.resources.size, 0);
    assert.ok(!e.routeNames.has('http|vm-150'));
    assertInSync(e, nodeId);
  });

  test('a client that does not answer gets, when it answers, the newest content of every table changed meanwhile', async () => {
    const { e, nodeId, policies } = await connected();
    const before = e.responsesOf(RDS).length;
    e.holdAnswers(RDS);
    let current = withSni(policies, 'vm-001', ['v1.example']);
    cache.setPolicies(current);
    await e.waitFor('the first edit', () => e.responsesOf(RDS).length === before + 1);
    // While that response is unanswered: more edits, of the same table and of others.
    for (let round = 2; round <= 5; round++) {
      current = withSni(current, 'vm-001', [`v${round}.example`]);
      current = withSni(current, `vm-0${10 + round}`, [`w${round}.example`]);
      cache.setPolicies(current);
      await settle(20);
    }
    await settle();
    assert.equal(e.responsesOf(RDS).length, before + 1, 'at most one response in flight');
    e.releaseAnswers(RDS);
    await e.waitFor('the catch-up', () => e.responsesOf(RDS).length === before + 2 && e.acceptedVersions.get(RDS) === e.responsesOf(RDS).at(-1)!.version);
    await settle();
    assert.equal(e.responsesOf(RDS).length, before + 2);
    const catchUp = e.responsesOf(RDS).at(-1)!;
    assert.deepEqual([...catchUp.resources.keys()].sort(), ['http|vm-001', 'http|vm-012', 'http|vm-013', 'http|vm-014', 'http|vm-015']);
    assert.deepEqual(domains(e, 'http|vm-001'), ['v5.example'], 'the newest content, not a stale one');
    for (const response of e.responsesOf(RDS).slice(before)) {
      const vm001 = response.resources.get('http|vm-001') as { virtualHosts: { domains: string[] }[] } | undefined;
      if (vm001) assert.ok(['v1.example', 'v5.example'].includes(vm001.virtualHosts[0]!.domains[0]!), 'never an intermediate version');
    }
    assertInSync(e, nodeId);
  });
});
