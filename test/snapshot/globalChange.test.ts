// A change that reaches many node groups (a global policy's edit at fleet
// scale): each affected group is compiled once, in the workers, and what the
// workers produce with their warm memos (fragments, chains and bytes kept from
// earlier compiles, policies kept by id) is byte for byte what a cold compile
// of the group gives. Nodes move to their new group slice by slice, as their
// groups are compiled, never to a half-built one.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { APPLY_SLICE, SnapshotCache, type GroupBuilder } from '../../src/snapshot/cache.js';
import { CompilePool } from '../../src/snapshot/compilePool.js';
import { egressGroupCompiler } from '../../src/snapshot/egressGroups.js';
import { encodeResource, type EncodedResource } from '../../src/snapshot/encodedResource.js';
import { resetChainCache } from '../../src/compile/hardenedListener.js';
import { resetCompileCaches } from '../../src/compile/hardenedMatcher.js';
import type { Policy } from '../../src/policy/model.js';
import { TypeUrl } from '../../src/envoy/typeUrls.js';

const compiler = egressGroupCompiler();
const pool = new CompilePool({}, 2);
after(() => pool.close());

const hostPolicy = (i: number, tag: string): Policy => ({ name: `host-${i}`, nodes: [`host-${i}`], sources: [`10.${1 + (i >> 8)}.${i & 255}.0/30`], allow: { sni: [`h${i}-${tag}.example`] } });
const globalPolicy = (tag: string, withSource: boolean): Policy => ({
  name: 'global',
  ...(withSource ? { sources: ['172.31.0.0/16'] } : {}),
  allow: { sni: ['github.com', `global-${tag}.example`] },
});

/** The group's resources compiled from nothing: every memo of this thread emptied first. */
function cold(policies: readonly Policy[]): EncodedResource[] {
  resetChainCache();
  resetCompileCaches();
  // A copy of each policy: no memo keyed by policy object can answer either.
  const copies = policies.map((p) => JSON.parse(JSON.stringify(p)) as Policy);
  return compiler(copies).resources.map((r) => encodeResource(r.typeUrl, r.name, r.json));
}

/** Every set the builder is given, counted. */
function counting(build: GroupBuilder) {
  const sets: string[] = [];
  const builder: GroupBuilder = (given) => {
    for (const set of given) sets.push(set.map((p) => `${p.name}@${JSON.stringify(p)}`).join(','));
    return build(given);
  };
  return { sets, builder };
}

function assertSameAsCold(cache: SnapshotCache, id: string) {
  const group = cache.groupForNode(id);
  const expected = cold(group.policies);
  for (const typeUrl of [TypeUrl.Listener, TypeUrl.Cluster]) {
    const set = cache.snapshotFor(id).resourceSet(typeUrl)!;
    const want = expected.filter((r) => r.typeUrl === typeUrl);
    assert.deepEqual([...set.items.keys()], want.map((r) => r.name).sort(), `${id}: ${typeUrl} names`);
    for (const resource of want) {
      const got = set.items.get(resource.name)!;
      assert.equal(got.version, resource.version, `${id}: ${resource.name} version`);
      assert.ok(Buffer.from(got.bytes).equals(Buffer.from(resource.bytes)), `${id}: ${resource.name} bytes`);
    }
  }
}

test('a global change compiles each affected group once, in the workers, and gives each node what a cold compile of its group gives (property)', async () => {
  const N = 12;
  const change = fc.oneof(
    fc.record({ kind: fc.constant('global' as const), tag: fc.constantFrom('a', 'b', 'c'), withSource: fc.boolean() }),
    fc.record({ kind: fc.constant('host' as const), host: fc.integer({ min: 0, max: N - 1 }), tag: fc.constantFrom('a', 'b', 'x'), remove: fc.boolean() }),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(change, { minLength: 1, maxLength: 6 }), async (changes) => {
      const cache = new SnapshotCache(compiler);
      cache.setPolicies([globalPolicy('a', true), ...Array.from({ length: N }, (_, i) => hostPolicy(i, 'a'))]);
      for (let i = 0; i < N; i++) cache.watch(`host-${i}`, () => {});
      cache.watch('bystander', () => {});
      for (const c of changes) {
        const { sets, builder } = counting(pool.build);
        const before = new Set(Array.from({ length: N }, (_, i) => cache.groupForNode(`host-${i}`)).concat(cache.groupForNode('bystander')));
        const changes =
          c.kind === 'global'
            ? new Map([['global', globalPolicy(c.tag, c.withSource)]])
            : new Map([[`host-${c.host}`, c.remove ? undefined : hostPolicy(c.host, c.tag)]]);
        await cache.applyChanges(changes, builder);
        assert.equal(new Set(sets).size, sets.length, 'no group compiled twice');
        const after = new Set(Array.from({ length: N }, (_, i) => cache.groupForNode(`host-${i}`)).concat(cache.groupForNode('bystander')));
        const fresh = [...after].filter((g) => !before.has(g));
        assert.equal(sets.length, fresh.length, 'each new group compiled once; nothing else compiled');
      }
      for (let i = 0; i < N; i++) assertSameAsCold(cache, `host-${i}`);
      assertSameAsCold(cache, 'bystander');
    }),
    { numRuns: 15 },
  );
});

test('nodes move slice by slice as their groups compile: told early, never given a group before it is built', async () => {
  const N = APPLY_SLICE * 2 + 5;
  const cache = new SnapshotCache(compiler);
  cache.setPolicies([globalPolicy('a', true), ...Array.from({ length: N }, (_, i) => hostPolicy(i, 'a'))]);
  const told = new Set<string>();
  for (let i = 0; i < N; i++) cache.watch(`host-${i}`, () => told.add(`host-${i}`));
  const previous = new Map(Array.from({ length: N }, (_, i) => [`host-${i}`, cache.snapshotFor(`host-${i}`)]));
  // A builder whose slices complete one at a time, when the test says so.
  const gates: (() => void)[] = [];
  const slices: number[] = [];
  const builder: GroupBuilder = async (sets) => {
    slices.push(sets.length);
    await new Promise<void>((resolve) => gates.push(resolve));
    return sets.map((set) => compiler(set).resources.map((r) => encodeResource(r.typeUrl, r.name, r.json)));
  };
  /** Turns of the event loop until the condition holds (the cache plans, hands slices over and tells in turns of their own), at most 1,000. */
  const turnsUntil = async (what: string, condition: () => boolean) => {
    for (let turn = 0; !condition(); turn++) {
      assert.ok(turn < 1000, `${what}: not within 1,000 turns`);
      await new Promise((r) => setImmediate(r));
    }
  };
  const applying = cache.applyChanges(new Map([['global', globalPolicy('b', true)]]), builder);
  await turnsUntil('every slice handed to the builder', () => slices.length === 3);
  assert.deepEqual(slices, [APPLY_SLICE, APPLY_SLICE, 5], 'every slice handed to the builder before any is built');
  assert.equal(told.size, 0);
  gates[0]!();
  await turnsUntil('the first slice told', () => told.size >= APPLY_SLICE);
  assert.equal(told.size, APPLY_SLICE, 'the first slice\'s nodes are told before the others compile');
  for (let i = 0; i < N; i++) {
    const id = `host-${i}`;
    if (!told.has(id)) assert.equal(cache.snapshotFor(id), previous.get(id), `${id} keeps its previous state until its group is built`);
    else assert.notEqual(cache.snapshotFor(id).version(TypeUrl.Listener), previous.get(id)!.version(TypeUrl.Listener));
  }
  gates[2]!();
  gates[1]!();
  await applying;
  assert.equal(told.size, N);
  assert.equal(cache.groupCount(), N);
});
