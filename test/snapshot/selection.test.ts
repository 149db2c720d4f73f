// The selection index: a change re-selects only the nodes whose selection it
// can change and compiles each new node group once; whatever the changes, each
// connected node holds exactly the policies that select it.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FIRST_COMPILES_HERE_PER_WINDOW, MAX_RULES_COMPILED_HERE, SnapshotCache, type PolicyChanges } from '../../src/snapshot/cache.js';
import { CompilePool } from '../../src/snapshot/compilePool.js';
import { egressGroupCompiler } from '../../src/snapshot/egressGroups.js';
import { encodeResource } from '../../src/snapshot/encodedResource.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';
import type { Policy } from '../../src/policy/model.js';
import { policySelectsNode } from '../../src/policy/nodeSelector.js';

const compiler = egressGroupCompiler();
const counting = () => {
  const calls: string[][] = [];
  const cache = new SnapshotCache((policies) => {
    calls.push(policies.map((p) => p.name));
    return compiler(policies);
  });
  return { cache, calls };
};
const hostPolicy = (i: number, sni = `h${i}.example`): Policy => ({ name: `host-${i}`, nodes: [`host-${i}`], sources: [`10.0.${i}.0/30`], allow: { sni: [sni] } });
const global = (sni = 'github.com'): Policy => ({ name: 'global', sources: ['172.31.0.0/16'], allow: { sni: [sni] } });

test('one host\'s change compiles one group and tells one node; a global change reaches every node, each group compiled once', () => {
  const { cache, calls } = counting();
  const N = 200;
  cache.setPolicies([global(), ...Array.from({ length: N }, (_, i) => hostPolicy(i))]);
  assert.equal(calls.length, 0, 'no node connected: nothing compiled');
  const told = new Map<string, number>();
  for (let i = 0; i < N; i++) cache.watch(`host-${i}`, () => told.set(`host-${i}`, (told.get(`host-${i}`) ?? 0) + 1));
  cache.watch('bystander', () => told.set('bystander', (told.get('bystander') ?? 0) + 1));
  assert.equal(cache.groupCount(), N + 1);
  calls.length = 0;

  cache.applyChangesSync(new Map([['host-7', hostPolicy(7, 'changed.example')]]));
  assert.deepEqual(calls, [['global', 'host-7']]);
  assert.deepEqual([...told], [['host-7', 1]]);

  calls.length = 0;
  told.clear();
  cache.applyChangesSync(new Map([['global', global('gitlab.com')]]));
  assert.equal(calls.length, N + 1, 'every group once (the bystander selects only the global policy)');
  assert.equal(told.size, N + 1);
  assert.equal(cache.groupCount(), N + 1, 'the old groups are gone');

  calls.length = 0;
  told.clear();
  cache.applyChangesSync(new Map([['host-3', undefined]]));
  assert.deepEqual(calls, [], 'host-3 now selects what the bystander selects: that group is reused');
  assert.deepEqual([...told], [['host-3', 1]]);
  assert.equal(cache.groupForNode('host-3'), cache.groupForNode('bystander'));
});

test('a wildcard policy re-selects only the nodes it matches, before or after', () => {
  const { cache, calls } = counting();
  cache.setPolicies([global()]);
  const told: string[] = [];
  for (const id of ['web-1', 'web-2', 'web-10', 'db-1']) cache.watch(id, () => told.push(id));
  calls.length = 0;
  cache.applyChangesSync(new Map([['web', { name: 'web', nodes: ['web-?'], allow: { sni: ['web.example'] } }]]));
  assert.deepEqual(told.sort(), ['web-1', 'web-2']);
  assert.equal(calls.length, 1, 'web-1 and web-2 share one new group');
  told.length = 0;
  cache.applyChangesSync(new Map([['web', { name: 'web', nodes: ['web-1*'], allow: { sni: ['web.example'] } }]]));
  assert.deepEqual(told.sort(), ['web-10', 'web-2'], 'web-1 keeps its group (same content); web-2 leaves it, web-10 joins');
});

test('whatever the changes, each connected node holds exactly the policies that select it (property)', () => {
  const ids = ['a-1', 'a-2', 'b-1', 'b-22', 'c'];
  const globs = fc.constantFrom('a-1', 'a-?', 'b-*', '*', 'c', '?-1', 'zz');
  const policy = fc.record({
    name: fc.constantFrom('p1', 'p2', 'p3', 'p4'),
    nodes: fc.option(fc.uniqueArray(globs, { minLength: 1, maxLength: 2 }), { nil: undefined }),
    sni: fc.constantFrom('x.example', 'y.example'),
    remove: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(fc.array(policy, { minLength: 1, maxLength: 3 }), { maxLength: 6 }), fc.subarray(ids), (batches, late) => {
      const cache = new SnapshotCache(compiler);
      const stored = new Map<string, Policy>();
      const watched = ids.filter((id) => !late.includes(id));
      for (const id of watched) cache.watch(id, () => {});
      for (const [k, batch] of batches.entries()) {
        const changes = new Map<string, Policy | undefined>();
        for (const p of batch) {
          const value: Policy | undefined = p.remove ? undefined : { name: p.name, ...(p.nodes ? { nodes: p.nodes } : {}), allow: { sni: [p.sni] } };
          changes.set(p.name, value);
          if (value) stored.set(p.name, value);
          else stored.delete(p.name);
        }
        cache.applyChangesSync(changes);
        if (k === 0) for (const id of late) cache.watch(id, () => {});
      }
      for (const id of ids) {
        const expected = [...stored.values()].filter((p) => policySelectsNode(p, id)).map((p) => p.name).sort();
        assert.deepEqual(cache.groupForNode(id).policies.map((p) => p.name), expected, id);
      }
    }),
    { numRuns: 300 },
  );
});

const pool = new CompilePool({}, 2);
after(() => pool.close());

test('compiled in worker threads: the same versions as compiled here; the previous state is served until the new one is complete', async () => {
  const policies = [global(), ...Array.from({ length: 40 }, (_, i) => hostPolicy(i))];
  const here = new SnapshotCache(compiler);
  here.setPolicies(policies);
  const there = new SnapshotCache(compiler);
  const told: string[] = [];
  for (let i = 0; i < 40; i++) {
    here.watch(`host-${i}`, () => {});
    there.watch(`host-${i}`, () => told.push(`host-${i}`));
  }
  const before = there.snapshotFor('host-5');
  const changes: PolicyChanges = there.diff(policies);
  const applying = there.applyChanges(changes, pool.build);
  assert.equal(there.snapshotFor('host-5'), before, 'nothing changes before the compile completes');
  await applying;
  assert.equal(told.length, 40);
  for (let i = 0; i < 40; i++) {
    for (const type of [TypeUrl.Listener, TypeUrl.Cluster]) assert.equal(there.snapshotFor(`host-${i}`).version(type), here.snapshotFor(`host-${i}`).version(type));
  }
  // A node first seen while compiling is given the new state when the apply commits.
  const next = new Map([['global', global('gitlab.com')]]);
  const applying2 = there.applyChanges(next, pool.build);
  there.watch('newcomer', () => {});
  await applying2;
  here.applyChangesSync(next);
  here.watch('newcomer', () => {});
  assert.equal(there.snapshotFor('newcomer').version(TypeUrl.Listener), here.snapshotFor('newcomer').version(TypeUrl.Listener));
});

test('groups the workers fail to compile are compiled here: the change is applied', async () => {
  const { cache, calls } = counting();
  cache.setPolicies([global(), hostPolicy(1)]);
  cache.watch('host-1', () => {});
  cache.watch('n', () => {});
  const before = cache.snapshotFor('n');
  calls.length = 0;
  const broken = async () => {
    throw new Error('worker died');
  };
  await cache.applyChanges(new Map([['global', global('x.example')]]), broken);
  assert.equal(calls.length, 2, 'both groups compiled here');
  const expected = new SnapshotCache(compiler);
  expected.setPolicies([global('x.example'), hostPolicy(1)]);
  for (const id of ['n', 'host-1']) assert.equal(cache.snapshotFor(id).version(TypeUrl.Listener), expected.snapshotFor(id).version(TypeUrl.Listener), id);
  assert.notEqual(cache.snapshotFor('n').version(TypeUrl.Listener), before.version(TypeUrl.Listener));
});

test('a compile that fails everywhere rejects the apply and leaves the cache as it was; the next apply works', async () => {
  let refuse = true;
  const cache = new SnapshotCache((policies) => {
    if (refuse && policies.some((p) => p.allow.sni?.includes('x.example'))) throw new Error('compile failed');
    return compiler(policies);
  });
  cache.setPolicies([global()]);
  cache.watch('n', () => {});
  const before = cache.snapshotFor('n');
  const broken = async () => {
    throw new Error('worker died');
  };
  await assert.rejects(cache.applyChanges(new Map([['global', global('x.example')]]), broken), /compile failed/);
  assert.equal(cache.snapshotFor('n'), before);
  refuse = false;
  await cache.applyChanges(new Map([['global', global('x.example')]]), async (sets) => sets.map((ps) => compiler(ps).resources.map((r) => encodeResource(r.typeUrl, r.name, r.json))));
  assert.notEqual(cache.snapshotFor('n').version(TypeUrl.Listener), before.version(TypeUrl.Listener));
});

test('with a builder, newly connected nodes beyond the first few compile in the workers: no snapshot until ready, then told; a change meanwhile is not lost', async () => {
  const cache = new SnapshotCache(compiler);
  cache.setPolicies([global(), ...Array.from({ length: 30 }, (_, i) => hostPolicy(i))]);
  cache.useBuilder(pool.build);
  const ready = new Map<string, number>();
  const all = Promise.all(
    Array.from({ length: 30 }, (_, i) => new Promise<void>((resolve) => {
      cache.watch(`host-${i}`, () => {
        ready.set(`host-${i}`, (ready.get(`host-${i}`) ?? 0) + 1);
        resolve();
      });
      // The first few of a storm are compiled at once, here: they have their snapshot already.
      if (cache.currentSnapshot(`host-${i}`)) resolve();
    })),
  );
  assert.equal(cache.currentSnapshot('host-29'), undefined, 'beyond the first few, not ready before its group compiled');
  // A change while the first groups compile: host-5's new policy must be what it ends up with.
  cache.applyChangesSync(new Map([['host-5', hostPolicy(5, 'late.example')]]));
  await all;
  for (let i = 0; i < 30; i++) assert.ok(cache.currentSnapshot(`host-${i}`), `host-${i} has a snapshot`);
  // The first few of the storm, and host-5's new group (applyChangesSync compiles here by definition);
  // the stale round of the others was compiled again in the workers.
  assert.ok(cache.compiledGroups <= FIRST_COMPILES_HERE_PER_WINDOW + 1, `${cache.compiledGroups} compiled on the event loop`);
  const expected = new SnapshotCache(compiler);
  expected.setPolicies([global(), ...Array.from({ length: 30 }, (_, i) => (i === 5 ? hostPolicy(5, 'late.example') : hostPolicy(i)))]);
  for (let i = 0; i < 30; i++) {
    assert.equal(cache.currentSnapshot(`host-${i}`)!.version(TypeUrl.Listener), expected.snapshotFor(`host-${i}`).version(TypeUrl.Listener), `host-${i}`);
  }
});

test('a node whose group is too big to compile on the event loop waits for the workers even when it connects alone', async () => {
  const cache = new SnapshotCache(compiler);
  // One host of many microVMs: more rules than MAX_RULES_COMPILED_HERE in one group.
  const microVms = Array.from({ length: 60 }, (_, i): Policy => ({
    name: `vm-${i}`,
    sources: [`10.1.${i}.0/30`],
    allow: { sni: Array.from({ length: 20 }, (_, k) => `n${k}.vm${i}.example`) },
  }));
  assert.ok(microVms.reduce((n, p) => n + p.allow.sni.length + (p.sources?.length ?? 0), 0) > MAX_RULES_COMPILED_HERE);
  cache.setPolicies(microVms);
  cache.useBuilder(pool.build);
  const told = new Promise<void>((resolve) => cache.watch('big-host', () => resolve()));
  assert.equal(cache.currentSnapshot('big-host'), undefined, 'not compiled here, on the event loop');
  assert.equal(cache.compiledGroups, 0);
  await told;
  assert.equal(cache.compiledGroups, 0, 'compiled by the workers');
  const expected = new SnapshotCache(compiler);
  expected.setPolicies(microVms);
  assert.equal(cache.currentSnapshot('big-host')!.version(TypeUrl.Listener), expected.snapshotFor('big-host').version(TypeUrl.Listener));
  // A small group connecting alone is still compiled here at once.
  const small = new SnapshotCache(compiler);
  small.setPolicies([global()]);
  small.useBuilder(pool.build);
  small.watch('small-host', () => {});
  assert.ok(small.currentSnapshot('small-host'), 'a small group is ready at once');
});

test('the compile pool sends each policy once and then its id: a sequence of edits compiles to what the event loop compiles', async () => {
  const one = new CompilePool({}, 1);
  try {
    let policies: Policy[] = [global(), ...Array.from({ length: 8 }, (_, i) => hostPolicy(i))];
    const here = (set: readonly Policy[]) => compiler(set).resources.map((r) => encodeResource(r.typeUrl, r.name, r.json).version);
    for (let step = 0; step < 6; step++) {
      // Two sets sharing most policy objects, as two groups of one change do.
      const sets = [policies, policies.slice(0, 4)];
      const results = await one.build(sets);
      results.forEach((resources, k) => assert.deepEqual(resources.map((r) => r.version), here(sets[k]!), `step ${step}, set ${k}`));
      // The next change: one policy replaced by a new object (the others are the same objects).
      const i = step % policies.length;
      policies = policies.map((p, k) => (k === i ? { ...p, allow: { sni: [...p.allow.sni, `step${step}.example`] } } : p));
    }
  } finally {
    await one.close();
  }
});
