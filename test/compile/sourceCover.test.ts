// Source covers against their plain definitions: the outermost ranges of a key set, and
// "a larger key set allows more" exactly when the text of those ranges changes (what
// the compiler compared before covers replaced rebuilt texts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ANY_SOURCE } from '../../src/compile/cidrKeys.js';
import { addsSources, beyond, coverForm, coverHolds, coverOf, unionCovers } from '../../src/compile/sourceCover.js';
import { cidrContains, compareCidrs, formatCidr, mustParseCidr } from '../../src/net/ip.js';

const SEED = Number(process.env['PROPERTY_SEED'] ?? 20240607);
const RUNS = Number(process.env['PROPERTY_RUNS'] ?? 600);

const KEYS = [
  ANY_SOURCE, '0.0.0.0/1', '128.0.0.0/1', '10.0.0.0/8', '10.0.0.0/16', '10.0.0.0/24', '10.0.0.0/25', '10.0.0.128/25',
  '10.0.0.4/30', '10.0.0.5/32', '10.1.0.0/16', '192.168.0.0/16', '::/1', 'fd00::/8', 'fd00::/64', 'fd00::4/126',
] as const;

/** The definition: ANY_SOURCE absorbs all; otherwise the keys no other key holds, sorted. */
function referenceForm(keys: readonly string[]): string {
  const unique = [...new Set(keys)];
  if (unique.includes(ANY_SOURCE)) return '*';
  const cidrs = unique.map(mustParseCidr).sort(compareCidrs);
  return cidrs.filter((c, i) => !cidrs.some((o, j) => j !== i && cidrContains(o, c))).map(formatCidr).join(',');
}

const keySet = fc.uniqueArray(fc.constantFrom(...KEYS), { maxLength: 6 });
const nested = fc.tuple(keySet, keySet).map(([a, b]) => [a, [...a, ...b]] as const);

describe('sourceCover', () => {
  it('coverForm is the outermost ranges of the keys', () => {
    fc.assert(fc.property(keySet, (keys) => assert.equal(coverForm(coverOf(keys)), referenceForm(keys))), { seed: SEED, numRuns: RUNS });
  });

  it('addsSources on nested key sets is "the forms differ"', () => {
    fc.assert(
      fc.property(nested, ([smaller, larger]) => {
        assert.equal(addsSources(coverOf(larger), coverOf(smaller)), referenceForm(larger) !== referenceForm(smaller));
      }),
      { seed: SEED + 1, numRuns: RUNS },
    );
  });

  it('coverHolds is "some key holds it"; unionCovers is the cover of both key sets', () => {
    fc.assert(
      fc.property(keySet, keySet, fc.constantFrom(...KEYS.filter((k) => k !== ANY_SOURCE)), (a, b, key) => {
        const cidr = mustParseCidr(key);
        const expected = a.includes(ANY_SOURCE) || a.some((k) => k !== ANY_SOURCE && cidrContains(mustParseCidr(k), cidr));
        assert.equal(coverHolds(coverOf(a), cidr), expected);
        assert.equal(coverForm(unionCovers(coverOf(a), coverOf(b))), referenceForm([...a, ...b]));
      }),
      { seed: SEED + 2, numRuns: RUNS },
    );
  });

  it('what a cover adds beyond a fallback is what it adds to any base holding the fallback', () => {
    // The compiler's row test: cell (base ∪ name) vs fallback (base ∪ parent), parent ⊆ name.
    fc.assert(
      fc.property(nested, keySet, ([parent, name], base) => {
        const differs = referenceForm([...base, ...name]) !== referenceForm([...base, ...parent]);
        assert.equal(addsSources(beyond(coverOf(name), coverOf(parent)), coverOf(base)), differs);
      }),
      { seed: SEED + 3, numRuns: RUNS },
    );
  });
});
