// Route tables over ADS (RDS), in both variants, as the xDS protocol document has them:
// RouteConfiguration is not a wildcard type, so a stream is sent only the names it asks for,
// a request naming new ones gets them, names that do not exist are simply not sent (SotW) or
// reported in removed_resources (Delta), a request naming nothing wants nothing, and a route
// table that appears later is sent then. The client is an Envoy-like one that asks for the
// names its listener's HTTP connection managers use.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import type { SnapshotCache } from '../../src/snapshot/cache.js';
import { FakeEnvoy, settle } from '../support/fakeEnvoy.js';
import { rdsCompiler } from '../support/rdsCompiler.js';
import { policy, startHarness, type Harness } from './harness.js';

const RDS = TypeUrl.RouteConfiguration;
const LDS = TypeUrl.Listener;

const domainsOf = (e: FakeEnvoy, name: string): unknown =>
  (e.state.get(RDS)?.get(name) as { virtualHosts: { domains: string[] }[] } | undefined)?.virtualHosts[0]!.domains;

for (const variant of ['sotw', 'delta'] as const) {
  describe(`RDS over ADS (${variant})`, () => {
    let harness: Harness;
    let cache: SnapshotCache;
    let address: string;
    const envoys: FakeEnvoy[] = [];
    const envoy = (nodeId: string) => {
      const e = new FakeEnvoy(address, { nodeId, variant });
      envoys.push(e);
      return e.connect();
    };

    before(async () => {
      harness = await startHarness([policy('a', ['a.example']), policy('b', ['b.example'])], {}, rdsCompiler);
      ({ cache, address } = harness);
    });
    after(async () => {
      for (const e of envoys) e.close();
      await harness.close();
    });

    test('the route tables the listener names arrive after it, by name; an edit sends the new table, and a new name is asked for and sent', async () => {
      const e = envoy(`${variant}-1`);
      await e.waitFor('both route tables', () => e.state.get(RDS)?.size === 2);
      assert.deepEqual([...e.routeNames].sort(), ['http|a', 'http|b']);
      const order = e.responses.map((r) => r.typeUrl);
      assert.ok(order.indexOf(LDS) < order.indexOf(RDS), 'RDS after the listener that names it');
      assert.deepEqual(domainsOf(e, 'http|a'), ['a.example']);

      cache.setPolicies([policy('a', ['a.example', 'a2.example']), policy('b', ['b.example'])]);
      await e.waitFor('the edited table', () => JSON.stringify(domainsOf(e, 'http|a')) === '["a.example","a2.example"]');
      assert.deepEqual(domainsOf(e, 'http|b'), ['b.example']);
      if (variant === 'delta') {
        // Only what changed.
        const last = e.responsesOf(RDS).at(-1)!;
        assert.deepEqual([...last.resources.keys()], ['http|a']);
      }

      cache.setPolicies([policy('a', ['a.example', 'a2.example']), policy('b', ['b.example']), policy('c', ['c.example'])]);
      await e.waitFor('the new table', () => e.state.get(RDS)?.has('http|c') === true);
      assert.deepEqual(domainsOf(e, 'http|c'), ['c.example']);
    });

    test('never more than the names asked for; a missing name is not sent (SotW) or reported removed (Delta), and sent once it exists', async () => {
      cache.setPolicies([policy('a', ['a.example']), policy('b', ['b.example'])]);
      const e = envoy(`${variant}-2`);
      await e.waitFor('both route tables', () => e.state.get(RDS)?.size === 2);
      const before = e.responsesOf(RDS).length;
      // An Envoy-like client that asks for one existing and one missing table only.
      e.routeNames.clear();
      e.routeNames.add('http|a').add('http|zz');
      if (variant === 'sotw') {
        e.send({ type_url: RDS, version_info: e.acceptedVersions.get(RDS), resource_names: ['http|a', 'http|zz'], response_nonce: e.responsesOf(RDS).at(-1)!.nonce });
      } else {
        e.send({ type_url: RDS, resource_names_unsubscribe: ['http|b'], resource_names_subscribe: ['http|zz'] });
      }
      if (variant === 'sotw') {
        // RDS in SotW is incremental: the client holds http|a already and http|zz does not exist, so nothing is owed.
        await settle();
        assert.equal(e.responsesOf(RDS).length, before);
      } else {
        await e.waitFor('an answer', () => e.responsesOf(RDS).length > before);
        const answer = e.responsesOf(RDS).at(-1)!;
        for (const name of answer.resources.keys()) assert.ok(['http|a'].includes(name), `${name} was not asked for`);
        assert.deepEqual(answer.removed, ['http|zz']);
      }

      cache.setPolicies([policy('a', ['a.example']), policy('b', ['b.example']), policy('zz', ['z.example'])]);
      await e.waitFor('the table that appeared', () => e.responsesOf(RDS).some((r) => r.resources.has('http|zz')));
      const withZz = e.responsesOf(RDS).find((r) => r.resources.has('http|zz'))!;
      assert.ok(!withZz.resources.has('http|b'), 'a name no longer asked for is not sent');
      if (variant === 'sotw') assert.deepEqual([...withZz.resources.keys()], ['http|zz'], 'only the table the client does not hold');
    });

    test('a first RDS request naming nothing is not a wildcard: nothing is sent', async () => {
      const e = new FakeEnvoy(address, { nodeId: `${variant}-3`, variant });
      envoys.push(e);
      // Route tables asked for before anything else, naming none (the stream's first request).
      e.connect();
      e.send(variant === 'sotw'
        ? { node: { id: `${variant}-3`, cluster: 'c' }, type_url: RDS, version_info: '', resource_names: [], response_nonce: '' }
        : { node: { id: `${variant}-3`, cluster: 'c' }, type_url: RDS, resource_names_subscribe: [] });
      await e.waitFor('the listener', () => e.state.has(LDS));
      // The client then asks by name (followRouteNames): only those names come.
      await e.waitFor('the named tables', () => e.routeNames.size === 3 && e.state.get(RDS)?.size === 3);
      await settle();
      // A wildcard reading would have sent both tables at once, then again when named.
      assert.equal(e.responsesOf(RDS).length, 1);
      assert.ok(e.responsesOf(RDS)[0]!.at > e.responsesOf(LDS)[0]!.at);
      assert.equal(e.errors.length, 0, e.errors.join('; '));
    });
  });
}
