// policiesBySource remembers its last answer so that an edit hands out the same list
// objects for the sources it did not touch (later steps find their memo by identity).
// Whatever the sequence of calls, the answer must be the one a fresh computation gives.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { policiesBySource, resetSourcePlanCache } from '../../src/compile/sourcePlans.js';
import type { Policy } from '../../src/policy/model.js';
import { policySet, sniPattern, SOURCE_POOL } from './arbitraries.js';

const SEED = Number(process.env['PROPERTY_SEED'] ?? 20241201);

const fresh = (policies: readonly Policy[]) => {
  resetSourcePlanCache();
  return policiesBySource(policies);
};
const plain = (map: Map<string, Policy[]>) => [...map].map(([key, list]) => [key, list.map((p) => JSON.stringify(p))]);

/** An edit of one policy: a new name, other sources, or a new object (same name and sources). */
const edit = fc.record({ which: fc.nat(), kind: fc.constantFrom('names', 'sources', 'drop', 'same'), name: sniPattern, source: fc.constantFrom(...SOURCE_POOL) });

describe('policiesBySource', () => {
  it('gives, after any sequence of edits, the answer of a fresh computation', () => {
    fc.assert(
      fc.property(policySet, fc.array(edit, { maxLength: 6 }), (start, edits) => {
        let policies = start;
        policiesBySource(policies);
        for (const e of edits) {
          if (policies.length === 0) break;
          const i = e.which % policies.length;
          const p = policies[i]!;
          const changed: Policy | undefined =
            e.kind === 'names' ? { ...p, allow: { ...p.allow, sni: [...new Set([...p.allow.sni, e.name])].sort() } }
            : e.kind === 'sources' ? { ...p, sources: [e.source] }
            : e.kind === 'same' ? { ...p }
            : undefined;
          policies = changed ? policies.map((q, k) => (k === i ? changed : q)) : policies.filter((_, k) => k !== i);
          const incremental = policiesBySource(policies);
          assert.deepEqual(plain(incremental), plain(fresh(policies)));
          // The memo is now the fresh answer: the next round checks the path from it too.
        }
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('hands out the same list objects for the sources an edit did not touch, and new ones for those it did', () => {
    const policies: Policy[] = [
      { name: 'shared', allow: { sni: ['a.example'] } },
      ...Array.from({ length: 20 }, (_, i): Policy => ({ name: `vm-${String(i).padStart(2, '0')}`, sources: [`10.0.${i}.0/30`], allow: { sni: [`vm${i}.example`] } })),
    ];
    const before = fresh(policies);
    const edited = policies.map((p) => (p.name === 'vm-07' ? { ...p, allow: { sni: ['vm7.example', 'more.example'] } } : p));
    const after = policiesBySource(edited);
    assert.deepEqual([...after.keys()], [...before.keys()]);
    for (const [key, list] of after) {
      if (key === '10.0.7.0/30') assert.notEqual(list, before.get(key), 'the edited source gets a new list');
      else assert.equal(list, before.get(key), `${key || 'any source'} keeps its list`);
    }
    // A shared policy's edit reaches every named source (and the source-less list).
    const shared = edited.map((p) => (p.name === 'shared' ? { ...p, allow: { sni: ['b.example'] } } : p));
    const afterShared = policiesBySource(shared);
    for (const [key, list] of afterShared) assert.notEqual(list, after.get(key), `${key || 'any source'} gets a new list`);
  });
});
