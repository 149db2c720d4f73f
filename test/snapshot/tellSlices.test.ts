// A change that reaches many streams (a global policy's edit at fleet scale)
// is told to them in slices, with turns of the event loop in between, so the
// admin API, ACKs and health checks are not held behind the push: every node
// is still told exactly once, of its current state, before the apply counts
// as done. Real grpc-js clients (test/support/fakeEnvoy.ts) and real HTTP.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMetrics } from '../../src/metrics/metrics.js';
import { silentLogger } from '../../src/log.js';
import { SnapshotCache, type GroupBuilder } from '../../src/snapshot/cache.js';
import { encodeResource } from '../../src/snapshot/encodedResource.js';
import { NodeRegistry } from '../../src/xds/nodeRegistry.js';
import { startXdsServer, type XdsServer } from '../../src/xds/server.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import type { Policy } from '../../src/policy/model.js';
import { FakeEnvoy } from '../support/fakeEnvoy.js';
import { testCompiler } from '../xds/harness.js';

const N = 40;
const hostPolicy = (i: number): Policy => ({ name: `host-${i}`, nodes: [`host-${i}`], allow: { sni: [`h${i}.example`] } });
const globalPolicy = (tag: string): Policy => ({ name: 'global', allow: { sni: [`global-${tag}.example`] } });
/** Compiles asynchronously, as the worker pool does, but here. */
const builder: GroupBuilder = async (sets) => sets.map((policies) => testCompiler(policies).resources.map((r) => encodeResource(r.typeUrl, r.name, r.json)));
const listenerNames = (envoy: FakeEnvoy): string =>
  JSON.stringify((envoy.state.get(TypeUrl.Listener)?.get('egress_tproxy') as { filterChains?: { filterChainMatch: { serverNames: string[] } }[] } | undefined)?.filterChains?.[0]?.filterChainMatch.serverNames);

describe('telling a change in slices', () => {
  let cache: SnapshotCache;
  let xds: XdsServer;
  let http: Server;
  const envoys: FakeEnvoy[] = [];
  /** Calls of each node's counting watcher (besides its stream's). */
  const told = new Map<string, number>();
  let toldTotal = 0;
  /** toldTotal when the HTTP server handled the request made during the push. */
  let toldWhenAnswered: number | undefined;

  before(async () => {
    // One node per turn of the event loop: the slicing shows in counts, whatever the machine's speed.
    cache = new SnapshotCache(testCompiler, { tellSliceMs: 0 });
    cache.setPolicies([globalPolicy('a'), ...Array.from({ length: N }, (_, i) => hostPolicy(i))]);
    const registry = new NodeRegistry(cache);
    xds = await startXdsServer({ source: cache, registry, metrics: createMetrics(), logger: silentLogger }, '127.0.0.1:0');
    http = createServer((_req, res) => {
      toldWhenAnswered = toldTotal;
      res.end('ok');
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    for (let i = 0; i < N; i++) envoys.push(new FakeEnvoy(`127.0.0.1:${xds.port}`, { nodeId: `host-${i}` }).connect());
    for (const envoy of envoys) await envoy.waitFor('initial listener', () => envoy.state.has(TypeUrl.Listener));
  });
  after(async () => {
    for (const envoy of envoys) envoy.close();
    await xds.close();
    await new Promise((resolve) => http.close(resolve));
  });

  test('every stream gets the change once, over many turns; an HTTP request made meanwhile is answered before the last node is told', async () => {
    const unwatch: (() => void)[] = [];
    let request: Promise<string> | undefined;
    for (let i = 0; i < N; i++) {
      const id = `host-${i}`;
      unwatch.push(
        cache.watch(id, () => {
          told.set(id, (told.get(id) ?? 0) + 1);
          toldTotal += 1;
          // Asked while the first nodes are being told: the HTTP server's turn comes between slices.
          if (toldTotal === 1) request = fetch(`http://127.0.0.1:${(http.address() as AddressInfo).port}/`).then((r) => r.text());
        }),
      );
    }
    const listenersBefore = envoys.map((envoy) => envoy.responsesOf(TypeUrl.Listener).length);
    const turnsBefore = cache.tellTurns;

    await cache.applyChanges(new Map([['global', globalPolicy('b')]]), builder);

    // Complete means told: no node is still owed when the apply resolves.
    assert.equal(toldTotal, N);
    assert.deepEqual([...told.values()], Array(N).fill(1), 'each node told exactly once');
    assert.ok(cache.tellTurns - turnsBefore >= N, `told over ${cache.tellTurns - turnsBefore} turns, expected at least ${N}`);
    assert.equal(await request, 'ok');
    assert.ok(toldWhenAnswered !== undefined && toldWhenAnswered < N, `the HTTP request was answered after ${toldWhenAnswered} of ${N} nodes were told`);

    for (const [i, envoy] of envoys.entries()) {
      await envoy.waitFor('the new listener', () => listenerNames(envoy).includes('global-b.example'));
      assert.equal(envoy.responsesOf(TypeUrl.Listener).length, listenersBefore[i]! + 1, `host-${i}: one new listener`);
    }
    for (const stop of unwatch) stop();
  });

  test('a node that leaves while owed is not told; a watcher that throws does not stop the others, and the apply reports it', async () => {
    const calls = new Map<string, number>();
    const stops = new Map<string, () => void>();
    for (let i = 0; i < N; i++) {
      const id = `host-${i}`;
      stops.set(
        id,
        cache.watch(id, () => {
          calls.set(id, (calls.get(id) ?? 0) + 1);
          // The first node told takes the last one's watcher away: it is owed, then gone.
          if (calls.size === 1) stops.get(`host-${N - 1}`)!();
          if (id === 'host-5') throw new Error('this watcher fails');
        }),
      );
    }
    await assert.rejects(cache.applyChanges(new Map([['global', globalPolicy('c')]]), builder), /this watcher fails/);
    assert.equal(calls.get(`host-${N - 1}`), undefined, 'the node that left was not told');
    assert.equal(calls.size, N - 1);
    assert.ok([...calls.values()].every((n) => n === 1), 'the others once each, the failing one included');
    // The streams, whose watchers did not fail, have the change all the same.
    for (const envoy of envoys) await envoy.waitFor('listener c', () => listenerNames(envoy).includes('global-c.example'));
    for (const [id, stop] of stops) if (id !== `host-${N - 1}`) stop();
  });

  test('the synchronous apply tells every node before it returns', () => {
    let calls = 0;
    const stops = Array.from({ length: N }, (_, i) => cache.watch(`host-${i}`, () => (calls += 1)));
    cache.setPolicies([globalPolicy('d'), ...Array.from({ length: N }, (_, i) => hostPolicy(i))]);
    assert.equal(calls, N);
    for (const stop of stops) stop();
  });
});
